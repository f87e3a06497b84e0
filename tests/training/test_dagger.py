"""DAgger at toy size: a real round (learner collects, expert labels, fine-tune, closed-loop score)."""
import json
import subprocess
import sys

import pytest
from tiny_model import TINY


@pytest.mark.slow
def test_one_dagger_round_end_to_end_and_resume(tiny_demos, tiny_suite, tmp_path):
    run = tmp_path / "run"
    (tmp_path / "model.json").write_text(json.dumps(TINY.to_dict()))
    r = subprocess.run([sys.executable, "-m", "dualdrive.cli", "train", "--data", str(tiny_demos), "--out", str(run),
                        "--model-config", str(tmp_path / "model.json"), "--epochs", "1", "--batch-size", "4",
                        "--num-workers", "0", "--device", "cpu", "--val-fraction", "0.5"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    args = [sys.executable, "-m", "dualdrive.cli", "dagger", "--data", str(tiny_demos), "--run", str(run), "--rounds", "1",
            "--episodes", "2", "--suite", str(tiny_suite), "--val-seeds", "4900:4901", "--frame-stride", "2",
            "--batch-size", "4", "--device", "cpu", "--seed-start", "100"]
    r = subprocess.run(args, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr
    d = json.loads((run / "dagger.json").read_text())
    assert [x["round"] for x in d["rounds"]] == [0, 1]
    r0, r1 = d["rounds"]
    assert r1["dataset_episodes"] == r0["dataset_episodes"] + 2 and r1["dataset_frames"] > r0["dataset_frames"]
    assert r1["closed_loop"]["episodes"] == 2 and 0 <= r1["closed_loop"]["driving_score"] <= 100
    assert r1["val_l2_m"] is not None
    # the network drove and was scored alone: the plan guard and the speed probe would hide the states DAgger is there to label
    scored = json.loads((run / "dagger" / "round_1" / "closed_loop.json").read_text())["meta"]
    assert all(scored[f"e2e_{k}"] == "off" for k in ("guard", "probe", "leaving", "lights", "park_assist"))
    from dualdrive.data.format import META_NAME
    collected = json.loads((run / "dagger" / "round_1" / "demos" / META_NAME).read_text())["runs"][-1]
    assert collected["learner_guard"] == collected["learner_probe"] == "off"
    card = json.loads((run / "dagger" / "round_1" / "demos" / "card.json").read_text())
    assert card["driver"] == "e2e" and card["labeller"] == "expert"
    meta = json.loads((run / "dagger" / "round_1" / "train" / "best.json").read_text())["metadata"]
    assert meta["init_checkpoint"] == r0["checkpoint"] and meta["dagger_round"] == 1
    r = subprocess.run(args, capture_output=True, text=True, timeout=300)  # done: nothing is redone
    assert r.returncode == 0 and json.loads((run / "dagger.json").read_text()) == d
