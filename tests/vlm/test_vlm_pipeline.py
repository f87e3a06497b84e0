"""End to end on two short episodes: generate -> train a few steps -> evaluate, through the library and the
command-line functions; resume and the errors a user meets."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from dualdrive.agents.e2e.checkpoint import CheckpointError
from dualdrive.vlm.__main__ import app
from dualdrive.vlm.answer import VLMAnswer, parse_answer
from dualdrive.vlm.backend import BuiltinBackend, VLMBackend
from dualdrive.vlm.config import TrainConfig, VLMConfig
from dualdrive.vlm.data import GenConfig, VLMDataError, generate_dataset, load_frames
from dualdrive.vlm.evaluate import evaluate_vlm
from dualdrive.vlm.train import train_vlm

SUITE = """name: tiny-vlm
version: 1
scenarios:
  - {name: hw, family: highway}
  - {name: jay, family: urban, config: {events: {jaywalker: true}}}
"""
TINY = VLMConfig(image_channels=(8, 8, 16, 16), d_model=32, n_heads=2, n_layers=1, ff_dim=64, max_answer_tokens=96)
FAST = TrainConfig(epochs=2, batch_size=8, warmup_steps=2, val_fraction=0.0, log_every_steps=1)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> tuple[Path, GenConfig]:
    root = tmp_path_factory.mktemp("vlm")
    suite = root / "tiny.yaml"
    suite.write_text(SUITE)
    cfg = GenConfig(root / "data", suite=str(suite), episodes=2, max_duration_s=10.0)
    generate_dataset(cfg)
    return cfg.out, cfg


def test_generated_frames_carry_an_image_a_prompt_and_a_parseable_answer(dataset):
    root, cfg = dataset
    frames = load_frames(root)
    assert frames.images.shape[1:] == (96, 192, 3) and frames.images.dtype == np.uint8
    # 10 s episodes, a frame a second from t = 1 s up to 6 s: later frames have no 4 s of known future
    assert len(frames) == 2 * 6
    for r in frames.records:
        assert r["prompt"].startswith("speed ") and parse_answer(r["text"], strict=True) == VLMAnswer.from_dict(r["answer"])
    meta = json.loads((root / "vlm_data.json").read_text())
    assert meta["stats"]["frames"] == 12 and set(meta["stats"]["by_family"]) == {"highway", "urban"}
    # a re-run skips the finished episodes; other settings into the same directory are refused
    mtime = (root / "episodes" / "hw_0.npz").stat().st_mtime
    generate_dataset(cfg)
    assert (root / "episodes" / "hw_0.npz").stat().st_mtime == mtime
    with pytest.raises(VLMDataError, match="other settings"):
        generate_dataset(GenConfig(root, suite=cfg.suite, episodes=2, max_duration_s=12.0))


def test_train_resume_and_evaluate(dataset, tmp_path):
    root, _ = dataset
    out = tmp_path / "run"
    first = train_vlm(root, out, TINY, FAST)
    assert first["epochs_done"] == 2 and (out / "model.safetensors").is_file() and (out / "model.vocab.json").is_file()
    rows = (out / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("kind,epoch,step") and sum(r.startswith("val,") for r in rows) == 2
    more = train_vlm(root, out, TINY, TrainConfig(**{**FAST.to_dict(), "epochs": 3}))  # resumes at epoch 3
    assert more["epochs_done"] == 3 and more["steps"] == 3 * first["steps"] // 2
    with pytest.raises(CheckpointError, match="train_state.json: it was trained with other settings .*lr"):
        train_vlm(root, out, TINY, TrainConfig(**{**FAST.to_dict(), "lr": 1e-4}))
    backend = BuiltinBackend(out / "model.safetensors")
    assert isinstance(backend, VLMBackend)
    with pytest.raises(ValueError, match="camera frame"):
        backend.ask(np.zeros((10, 10, 3), np.uint8), "speed 3 m/s.")
    scores = evaluate_vlm(out / "model.safetensors", root, tmp_path / "eval", max_frames=3)
    assert scores["frames"] == 3 and 0.0 <= scores["parsed"] <= 1.0 and scores["latency_ms"]["mean"] > 0
    assert {"bleu", "chrf", "meta_first_accuracy", "critical_recall", "waypoint_l2_m"} <= set(scores)
    assert len((tmp_path / "eval" / "predictions.jsonl").read_text().splitlines()) == 3


def test_the_command_line_functions(dataset, tmp_path):
    root, _ = dataset
    run = CliRunner()
    res = run.invoke(app, ["train-vlm", "--data", str(root), "--out", str(tmp_path / "m"), "--epochs", "1",
                           "--d-model", "32", "--n-layers", "1", "--batch-size", "16"])
    assert res.exit_code == 0, res.output
    res = run.invoke(app, ["eval-vlm", "--data", str(root), "--checkpoint", str(tmp_path / "m" / "model.safetensors"),
                           "--max-frames", "2"])
    assert res.exit_code == 0 and '"frames": 2' in res.output, res.output
    res = run.invoke(app, ["eval-vlm", "--data", str(root), "--checkpoint", str(tmp_path / "none.safetensors")])
    assert res.exit_code == 2 and "none.safetensors does not exist" in res.output
    res = run.invoke(app, ["gen-vlm-data", "--out", str(tmp_path / "g"), "--first-seed", "4999", "--episodes", "2"])
    assert res.exit_code == 2 and "development range" in res.output
    res = run.invoke(app, ["gen-vlm-data", "--out", str(tmp_path / "g"), "--scenario", "nowhere"])
    assert res.exit_code == 2 and "'nowhere' is not in suite 'vlm'" in res.output


def test_the_shipped_checkpoint_answers_a_camera_frame():
    """The committed model (``make vlm-model``) reads a highway frame it never saw as a highway scene."""
    from dualdrive.sensors.camera import Camera
    from dualdrive.sensors.scene import scene_from_world
    from dualdrive.vlm.prompt import make_prompt
    from dualdrive.world.scenarios import ScenarioConfig
    from dualdrive.world.world import World
    w = World(ScenarioConfig(family="highway"), 4321)
    reply = BuiltinBackend().ask(Camera().render(scene_from_world(w)), make_prompt(w.ego_speed, 0, 50.0))
    assert reply.answer is not None, reply.error
    assert reply.answer.road == "highway" and len(reply.answer.waypoints_m) == 4
