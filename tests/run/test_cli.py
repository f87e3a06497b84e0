import json
import subprocess
import sys

import pytest


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dualdrive.cli", *args], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("args, needle", [
    (["drive", "--scenario", "moon"], "unknown scenario 'moon'; valid: highway"),
    (["drive", "--agent", "nobody"], "unknown agent 'nobody'; valid: expert"),
    (["drive", "--seed", "-1"], "seed -1 must be an integer"),
])
def test_bad_input_is_one_clear_line_and_exit_2(args, needle):
    r = _cli(*args)
    assert r.returncode == 2
    assert needle in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_bad_config_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("family: urban\ntraffic_densty: 2\n")
    r = _cli("drive", "--scenario", "urban", "--config", str(bad))
    assert r.returncode == 2 and "unknown scenario key(s) traffic_densty" in r.stderr
    bad.write_text("family: [urban\n")
    r = _cli("drive", "--scenario", "urban", "--config", str(bad))
    assert r.returncode == 2 and "not valid YAML" in r.stderr


def test_drive_writes_video_and_summary(tmp_path):
    cfg = tmp_path / "short.yaml"
    cfg.write_text("family: highway\nmax_duration_s: 4\ntraffic_density: 0.5\n")
    r = _cli("drive", "--scenario", "highway", "--seed", "3", "--config", str(cfg), "--out", str(tmp_path / "run"))
    assert r.returncode == 0, r.stderr
    s = json.loads((tmp_path / "run" / "summary.json").read_text())
    for key in ("success", "route_completion", "collisions", "infractions", "duration_s", "steps"):
        assert key in s
    assert s["steps"] == 40 and s["collisions"] == 0
    assert (tmp_path / "run" / "video.mp4").stat().st_size > 1000
