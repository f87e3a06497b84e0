"""System 1 on the command line: train on a collected dataset, --checkpoint errors, the registry,
several dataset directories, fine-tuning from a checkpoint, the pipeline's config checks."""
import json
import subprocess
import sys

import pytest
import torch
from tiny_model import TINY
from e2e_datasets import RandomDemoDataset

from dualdrive.agents.e2e import agent as e2e_agent
from dualdrive.agents.e2e.checkpoint import load_checkpoint, save_checkpoint
from dualdrive.agents.e2e.model import E2EModel
from dualdrive.agents.registry import load_agent
from dualdrive.training.config import TrainConfig
from dualdrive.training.data import load_datasets
from dualdrive.training.loop import TrainingError, run_training
from dualdrive.training.pipeline import PipelineConfig, PipelineError
from dualdrive.world.scenarios import ConfigError


def _cli(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dualdrive.cli", *args], capture_output=True, text=True, timeout=timeout)


def test_cli_train_on_a_collected_dataset_then_resume(tiny_demos, tmp_path):
    (tmp_path / "model.json").write_text(json.dumps(TINY.to_dict()))
    args = ["train", "--data", str(tiny_demos), "--out", str(tmp_path / "run"), "--model-config",
            str(tmp_path / "model.json"), "--epochs", "1", "--batch-size", "4", "--num-workers", "0",
            "--device", "cpu", "--val-fraction", "0.5"]
    r = _cli(*args)
    assert r.returncode == 0, r.stderr
    assert "trained 1 epochs" in r.stdout
    model, info = load_checkpoint(tmp_path / "run" / "best.safetensors")
    assert info.config == TINY and info.metadata["data_dir"] == str(tiny_demos.resolve())
    assert info.metadata["dataset_card"].endswith("card.json")
    r = _cli(*["2" if a == "1" else a for a in args])  # --epochs 2
    assert r.returncode == 0 and "trained 2 epochs" in r.stdout  # resumed, one more epoch


@pytest.mark.parametrize("args, needle", [
    (["train", "--data", "/nonexistent/demos", "--out", "RUN"], "dataset directory '/nonexistent/demos' does not exist"),
    (["train", "--data", ".", "--out", "RUN", "--device", "tpu"], "train.device='tpu' must be one of"),
    (["eval", "--agent", "e2e", "--suite", "highway", "--checkpoint", "/nonexistent/m.safetensors"],
     "--checkpoint: checkpoint /nonexistent/m.safetensors does not exist"),
    (["drive", "--agent", "e2e", "--checkpoint", "/nonexistent/m.safetensors"], "/nonexistent/m.safetensors"),
])
def test_user_mistakes_are_one_line_errors(args, needle):
    r = _cli(*args, timeout=120)
    assert r.returncode == 2, r.stdout
    assert needle in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_a_corrupt_checkpoint_is_one_line_naming_the_file(tiny_checkpoint, tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file at all")
    (tmp_path / "bad.json").write_text(tiny_checkpoint.with_suffix(".json").read_text())
    r = _cli("eval", "--agent", "e2e", "--suite", "highway", "--seeds", "0:1", "--checkpoint", str(bad), timeout=120)
    assert r.returncode == 2 and str(bad) in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_registry_loads_e2e_from_the_env_and_explains_a_missing_model(tiny_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setenv(e2e_agent.CHECKPOINT_ENV, str(tiny_checkpoint))
    agent = load_agent("e2e")
    assert isinstance(agent, e2e_agent.E2EAgent) and agent.checkpoint == tiny_checkpoint
    monkeypatch.delenv(e2e_agent.CHECKPOINT_ENV)
    monkeypatch.setattr(e2e_agent, "DEFAULT_CHECKPOINT", tmp_path / "none.safetensors")
    with pytest.raises(ConfigError, match="cannot create agent 'e2e'.*make model"):
        load_agent("e2e")


def test_checkpoint_env_is_scoped(tiny_checkpoint, monkeypatch):
    monkeypatch.delenv(e2e_agent.CHECKPOINT_ENV, raising=False)
    with e2e_agent.checkpoint_env(tiny_checkpoint):
        assert load_agent("e2e").checkpoint == tiny_checkpoint.resolve()
    import os
    assert e2e_agent.CHECKPOINT_ENV not in os.environ


def test_load_datasets_takes_several_directories(tiny_demos):
    one, _ = load_datasets(tiny_demos, val_fraction=0.0)
    both, val = load_datasets([tiny_demos, tiny_demos], val_fraction=0.0)
    assert len(both) == 2 * len(one) and val is None
    train, val = load_datasets([tiny_demos, tiny_demos], val_fraction=0.5)
    assert len(train) + len(val) == 2 * len(one) and len(val) > 0


def test_fine_tuning_starts_from_the_checkpoint(tiny_checkpoint, tmp_path):
    cfg = TrainConfig(epochs=1, batch_size=4, num_workers=0, warmup_steps=0, device="cpu", lr=1e-9,
                      sensor_dropout_prob=0.0, seed=5)
    res = run_training(RandomDemoDataset(4), None, tmp_path / "ft", TINY, cfg, init_checkpoint=tiny_checkpoint)
    start, _ = load_checkpoint(tiny_checkpoint)
    for (name, a), b in zip(start.state_dict().items(), res.model.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-5), name  # lr 1e-9: still the initial weights
    scratch = run_training(RandomDemoDataset(4), None, tmp_path / "scratch", TINY, cfg)
    assert not torch.allclose(start.pos_embedding, scratch.model.pos_embedding, atol=1e-5)
    other = E2EModel(type(TINY)(**{**TINY.__dict__, "d_model": 16, "n_heads": 2}))
    save_checkpoint(tmp_path / "other.safetensors", other)
    with pytest.raises(TrainingError, match="different model config"):
        run_training(RandomDemoDataset(4), None, tmp_path / "bad", TINY, cfg, init_checkpoint=tmp_path / "other.safetensors")


def test_fine_tuning_can_add_the_acceleration_input_and_the_route_prior(tiny_checkpoint, tmp_path, capsys):
    cfg = TrainConfig(epochs=1, batch_size=4, num_workers=0, warmup_steps=0, device="cpu", lr=1e-9,
                      sensor_dropout_prob=0.0, seed=5)
    grown = type(TINY)(**{**TINY.to_dict(), "accel_input": True, "plan_prior": "route"})
    res = run_training(RandomDemoDataset(4), None, tmp_path / "ft", grown, cfg, init_checkpoint=tiny_checkpoint)
    assert "added parts: accel_embed.weight (new)" in capsys.readouterr().out
    start, _ = load_checkpoint(tiny_checkpoint)
    assert torch.allclose(start.pos_embedding, res.model.pos_embedding, atol=1e-5)
    assert res.model.cfg.plan_prior == "route" and load_checkpoint(res.last_checkpoint)[0].cfg.accel_input


@pytest.mark.parametrize("override, needle", [
    ({"val_seeds": "30:34"}, "overlap"),
    ({"closed_loop_seeds": "10:12"}, "evaluation seeds"),
    ({"train_seeds": "4990:5010"}, "development seeds"),
    ({"epoch": 3}, "unknown pipeline config key"),
    ({"dagger_rounds": -1}, "dagger_rounds"),
    ({"dagger_choice": "best"}, "dagger_choice"),
])
def test_pipeline_config_rejects_bad_values(override, needle):
    with pytest.raises(PipelineError, match=needle):
        PipelineConfig.from_dict(override)


@pytest.mark.parametrize("choice, shipped", [("last", 2), ("best-ds", 1)])
def test_pipeline_ships_the_dagger_round_its_choice_names(tmp_path, choice, shipped):
    from dualdrive.training.pipeline import PipelineRun
    run = PipelineRun(PipelineConfig(dagger_rounds=2, dagger_choice=choice), tmp_path, log=lambda m: None)
    (tmp_path / "train").mkdir()
    rounds = []
    for r, ds in enumerate((3.0, 9.0, 5.0)):  # round 1 scores best on its few development episodes
        ckpt = tmp_path / f"round_{r}.safetensors"
        ckpt.write_bytes(b"weights")
        rounds.append({"round": r, "checkpoint": str(ckpt), "val_l2_m": 1.0, "closed_loop": {"driving_score": ds}})
    (tmp_path / "train" / "dagger.json").write_text(json.dumps({"rounds": rounds}))
    assert run.chosen_checkpoint() == tmp_path / f"round_{shipped}.safetensors"


def test_pipeline_defaults_keep_training_and_validation_seeds_apart():
    from dualdrive.bench.evaluate import parse_seeds
    c = PipelineConfig()
    assert not set(parse_seeds(c.train_seeds)) & set(parse_seeds(c.val_seeds))
    assert parse_seeds(c.closed_loop_seeds).start >= 5000


def test_the_shipped_default_checkpoint_loads_within_budget():
    from dualdrive.agents.e2e.agent import DEFAULT_CHECKPOINT, E2EAgent
    from dualdrive.agents.e2e.bench import synthetic_observation
    assert DEFAULT_CHECKPOINT.stat().st_size <= 20e6
    agent = E2EAgent(DEFAULT_CHECKPOINT)
    meta = agent.info.metadata
    assert meta["epoch"] >= 1 and meta["val_metrics"]["l2_mean_m"] > 0  # a trained run's checkpoint, not an init
    plan = agent.act(synthetic_observation(agent.info.config))
    assert plan.poses.shape == (8, 3)
    card = (DEFAULT_CHECKPOINT.parent / "MODEL_CARD.md").read_text()
    assert "Open loop" in card and "ms per decision" in card


def test_the_model_cards_eval_command_reproduces_the_aids_a_run_had():
    from dualdrive.training.model_card import eval_command
    shipped = {"seeds": "5000:5002", "e2e_guard": "on", "e2e_probe": "on", "e2e_leaving": "on", "e2e_lights": "on",
               "e2e_park_assist": "on", "e2e_yield": "on", "e2e_turn_keeping": "on", "e2e_lane_change": "on"}
    assert eval_command("p2p", shipped) == \
        "dualdrive eval --agent e2e --suite p2p --seeds 5000:5002 --out runs/eval/e2e_p2p.json"
    alone = {**shipped, **{f"e2e_{k}": "off" for k in ("guard", "probe", "leaving", "lights", "park_assist", "yield",
                                                          "turn_keeping", "lane_change")}}
    assert eval_command("urban", alone) == (  # DAgger's scoring
        "DUALDRIVE_E2E_LEAVING=0 dualdrive eval --agent e2e --no-guard --no-probe --no-lights --no-park-assist "
        "--no-yield --no-turn-keeping --no-lane-change --suite urban --seeds 5000:5002 --out runs/eval/e2e_urban.json")
    assert eval_command("p2p", {**shipped, "e2e_park_assist": "off"}).startswith(
        "dualdrive eval --agent e2e --no-park-assist --suite p2p")
    assert eval_command("urban", {**shipped, "e2e_guard": "lidar"}).startswith("DUALDRIVE_E2E_GUARD_RADAR=0 dualdrive")
