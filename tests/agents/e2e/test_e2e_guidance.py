"""System 1's guidance input: the expert's labels, the model input, training with it, and the dual
agent handing System 2's meta-action to a System 1 that takes it."""
import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from dualdrive.agents.base import Plan
from dualdrive.agents.e2e.config import E2EConfig, E2EConfigError
from dualdrive.agents.e2e.guidance import GUIDANCE, NONE, from_meta_action, label_from_plan
from dualdrive.agents.e2e.model import MODEL_INPUT_KEYS, E2EModel
from dualdrive.world.commands import Command

T = 0.5 * np.arange(1, 9)
TINY = dict(camera_channels=(8, 16, 16, 16), lidar_channels=(8, 16, 16, 16), d_model=32, n_layers=1, ff_dim=64,
            bev_decoder_channels=8)


def _plan(x, y=None, yaw=None):
    return np.column_stack([x, np.zeros(8) if y is None else y, np.zeros(8) if yaw is None else yaw])


@pytest.mark.parametrize("plan, speed, command, reverse, expected", [
    (_plan(10.0 * T), 10.0, Command.FOLLOW_LANE, False, "keep lane"),
    (_plan(np.where(T < 3.2, 10.0 * T - 1.5625 * T**2, 16.0)), 10.0, Command.FOLLOW_LANE, False, "stop"),  # rests at 3.2 s
    (_plan(np.zeros(8)), 0.0, Command.FOLLOW_LANE, False, "stop"),  # standing still
    (_plan(10.0 * T - 0.6 * T**2), 10.0, Command.FOLLOW_LANE, False, "slow down"),
    (_plan(5.0 * T + 1.0 * T**2), 5.0, Command.FOLLOW_LANE, False, "accelerate"),
    (_plan(10.0 * T, 3.5 * T / 4.0, 0.02 * np.ones(8)), 10.0, Command.CHANGE_LANE_LEFT, False, "change lane left"),
    (_plan(10.0 * T, -3.5 * T / 4.0), 10.0, Command.FOLLOW_LANE, False, "change lane right"),
    (_plan(6.0 * T, 8.0 * T / 4.0, 1.4 * T / 4.0), 6.0, Command.TURN_LEFT, False, "keep lane"),  # a turn ends across
    (_plan(-1.0 * T), -1.0, Command.FOLLOW_LANE, True, "park"),
    (_plan(2.0 * T), 2.0, Command.PARK, False, "park"),
])
def test_the_expert_plan_says_its_meta_action(plan, speed, command, reverse, expected):
    assert GUIDANCE[label_from_plan(plan, speed, int(command), reverse)] == expected


def test_system_2_actions_map_onto_the_guidance():
    assert [GUIDANCE[from_meta_action(a)] for a in ("stop", "yield", "wait", "pull over", "change lane left", "park")] == \
        ["stop", "stop", "stop", "slow down", "change lane left", "park"]
    assert from_meta_action(None) == from_meta_action("") == from_meta_action("dance") == NONE


def test_the_guidance_input_is_configured_and_validated():
    assert E2EConfig().guidance_classes == 0  # older checkpoints have none
    with pytest.raises(E2EConfigError, match="guidance_classes=3 must be 0 .* or 8"):
        E2EConfig(guidance_classes=3)


def _inputs(n):
    g = torch.Generator().manual_seed(0)
    return {"camera": torch.randint(0, 255, (n, 3, 96, 192), dtype=torch.uint8, generator=g),
            "lidar_bev": torch.rand(n, 2, 128, 128, generator=g), "speed": torch.full((n, 1), 8.0),
            "command": torch.zeros(n, dtype=torch.long), "route": torch.zeros(n, 10, 2),
            "valid_camera": torch.ones(n), "valid_lidar": torch.ones(n)}


def test_the_model_reads_its_guidance():
    torch.manual_seed(0)
    model = E2EModel(E2EConfig(guidance_classes=len(GUIDANCE), dropout=0.0, **TINY)).eval()
    x = _inputs(2)
    with torch.no_grad():
        none = model(**x)["gear_logits"]  # the plan head starts at zero: read the gear head
        zeros = model(**x, guidance=torch.zeros(2, dtype=torch.long))["gear_logits"]
        stop = model(**x, guidance=torch.full((2,), GUIDANCE.index("stop")))["gear_logits"]
    assert torch.equal(none, zeros) and not torch.allclose(none, stop)


class _GuidedSet(Dataset):
    """One scene, two plans: standing still under "stop", driving on under "keep lane"."""

    def __len__(self):
        return 16

    def __getitem__(self, i):
        x = {k: v[0] for k, v in _inputs(1).items()}
        stop = i % 2 == 0
        t = torch.tensor(T, dtype=torch.float32)
        plan = torch.zeros(8, 3) if stop else torch.stack([8.0 * t, torch.zeros(8), torch.zeros(8)], 1)
        return {**x, "plan": plan, "gear": torch.tensor(0), "bev_semantic": torch.full((64, 64), -1),
                "light": torch.tensor(-1), "guidance": torch.tensor(GUIDANCE.index("stop" if stop else "keep lane"))}


def test_training_teaches_the_model_to_follow_its_guidance(tmp_path):
    from dualdrive.training.config import TrainConfig
    from dualdrive.training.loop import run_training
    cfg = E2EConfig(guidance_classes=len(GUIDANCE), dropout=0.0, **TINY)
    tc = TrainConfig(epochs=60, batch_size=16, lr=3e-3, min_lr_ratio=1.0, warmup_steps=5, num_workers=0, device="cpu",
                     sensor_dropout_prob=0.0, camera_brightness_jitter=0.0, guidance_dropout=0.0, val_every_epochs=60,
                     checkpoint_every_epochs=60, log_every_steps=100)
    res = run_training(_GuidedSet(), None, tmp_path, cfg, tc)
    from dualdrive.agents.e2e.checkpoint import load_checkpoint
    model, _ = load_checkpoint(res.last_checkpoint)
    x = _inputs(1)
    with torch.no_grad():
        go = model(**x, guidance=torch.tensor([GUIDANCE.index("keep lane")]), with_aux=False)["plan"][0, -1, 0]
        halt = model(**x, guidance=torch.tensor([GUIDANCE.index("stop")]), with_aux=False)["plan"][0, -1, 0]
    assert go > 20.0 and abs(halt) < 5.0  # 32 m and 0 m at 4 s in the data


class _GuidedS1:
    """A System 1 that records the guidance it is given and plans a stop under "stop"."""
    uses_sensors, privileged, name = True, False, "guided"

    def __init__(self, stop_path_m):
        self.info = type("Info", (), {"config": E2EConfig(guidance_classes=len(GUIDANCE))})()
        self.seen, self.stop_path_m = [], stop_path_m

    def reset(self, info):
        pass

    def act(self, obs):
        g = int(obs["guidance"][0]) if "guidance" in obs else None
        self.seen.append(g)
        end = self.stop_path_m if g == GUIDANCE.index("stop") else 40.0
        return Plan(np.column_stack([np.linspace(end / 8, end, 8), np.zeros(8), np.zeros(8)]), 1)


@pytest.mark.parametrize("stop_path_m, asked_again", [(30.0, False), (2.0, True)])
def test_the_dual_agent_hands_system_2s_action_to_system_1(stop_path_m, asked_again):
    from dualdrive.agents.dual.agent import DualAgent, DualConfig
    s1 = _GuidedS1(stop_path_m)
    dual = DualAgent(DualConfig(), system1=s1, backend=object())
    assert dual.s1_takes_guidance
    obs = {"speed_mps": np.array([12.0]), "command": np.array([0]), "command_distance_m": np.array([0.0])}
    dual.act(obs)
    assert s1.seen == [NONE]  # nothing from System 2 yet
    dual.guidance = (dual.t_s, ("yield", "stop"), "yield to the pedestrian")
    s1.seen.clear()
    plan = dual.act(obs)
    # at 12 m/s a comfortable stop needs 18 m: a plan that stops in 2 m is not taken, System 1 is asked again
    assert s1.seen == ([GUIDANCE.index("stop"), None] if asked_again else [GUIDANCE.index("stop")])
    assert plan.poses[-1, 0] == pytest.approx(40.0 if asked_again else stop_path_m)
    dual.guidance = (dual.t_s - 10.0, ("stop",), "old news")  # older than max_guidance_age_s
    s1.seen.clear()
    dual.act(obs)
    assert s1.seen == [NONE]
    dual.guidance = (dual.t_s, ("change lane left",), "overtake")  # not among DualConfig.guidance_actions
    s1.seen.clear()
    dual.act(obs)
    assert s1.seen == [NONE]
