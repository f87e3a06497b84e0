"""`import dualdrive` registers the scenario envs by name, without importing the simulator."""
import subprocess
import sys


def test_training_code_does_not_import_the_simulator():
    code = ("import sys, dualdrive, dualdrive.training.loop, dualdrive.data.dataset, dualdrive.agents.e2e.agent; "
            "import gymnasium as gym; "
            "assert 'dualdrive/Urban-v0' in gym.registry; "
            "print(sorted(m for m in ('highway_env', 'pygame', 'dualdrive.world.world') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_making_an_env_imports_the_world():
    code = ("import sys, dualdrive, gymnasium as gym; env = gym.make('dualdrive/Highway-v0', disable_env_checker=True); "
            "print(type(env.unwrapped).__name__, 'highway_env' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "DualDriveEnv True"
