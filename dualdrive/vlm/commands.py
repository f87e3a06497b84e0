"""The driving VLM's command-line functions: thin typer-annotated wrappers over the library.

Registered in ``dualdrive/cli.py`` as ``dualdrive gen-vlm-data``, ``dualdrive train-vlm`` and
``dualdrive eval-vlm`` (and in ``python -m dualdrive.vlm`` under the same names). Each parses its
options, calls one library function and prints a short summary; a user mistake is one line on
stderr and exit status 2.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from dualdrive.vlm.config import VLMConfigError
from dualdrive.vlm.data import DEFAULT_MAX_DURATION_S, DEFAULT_SUITE, VLMDataError
from dualdrive.world.scenarios import ConfigError

_out = Console(emoji=False, markup=False, highlight=False, soft_wrap=True)
_err = Console(stderr=True, emoji=False, markup=False, highlight=False, soft_wrap=True)


def _user_errors() -> tuple[type[Exception], ...]:
    """The errors that are a user's mistake (one line, exit 2). The checkpoint error comes from the
    torch side, imported only when a command runs, so `dualdrive --help` stays quick."""
    from dualdrive.agents.e2e.checkpoint import CheckpointError
    return (ConfigError, VLMDataError, CheckpointError, VLMConfigError)


def _fail(e: Exception) -> None:
    _err.print(f"error: {e}")
    raise typer.Exit(2)


def gen_vlm_data(
        out: Path = typer.Option(..., help="dataset directory (resumable: re-run the same command to finish)"),
        suite: str = typer.Option(DEFAULT_SUITE, show_default="dualdrive/vlm/suite.yaml: every family and event",
                                  help="suite name or .yaml file"),
        scenario: Optional[str] = typer.Option(None, help="only this scenario of the suite, e.g. urban_jaywalker"),
        episodes: int = typer.Option(14, help="episodes; episode i drives scenario i mod N with seed first_seed + i"),
        first_seed: int = typer.Option(0, help="first seed (all seeds < 5000; keep train and held-out ranges apart)"),
        max_duration_s: float = typer.Option(DEFAULT_MAX_DURATION_S, help="episode time limit, s"),
        sample_period_s: float = typer.Option(1.0, help="a labelled frame every this many seconds"),
        workers: int = typer.Option(1, help="episodes driven in parallel (processes)")) -> None:
    """Drive the expert, store a camera frame and its ground-truth answer every ~1 s."""
    from dualdrive.vlm.data import GenConfig, generate_dataset
    cfg = GenConfig(out, suite, scenario, episodes, first_seed, max_duration_s, sample_period_s, workers)

    def done(row: dict, finished: int, total: int) -> None:
        extra = f" ({row.get('error')})" if row["status"] != "ok" else ""
        _err.print(f"[{finished}/{total}] {row['key']}: {row['status']}, {row['frames']} frames, {row['wall_s']} s{extra}")

    try:
        meta = generate_dataset(cfg, on_done=done)
    except _user_errors() as e:
        _fail(e)
    _out.print(json.dumps(meta["stats"], indent=1))


def train_vlm_cmd(
        data: Path = typer.Option(..., help="dataset directory from gen-vlm-data"),
        out: Path = typer.Option(Path("runs/vlm/model"), help="run directory (resumable: re-run to continue)"),
        epochs: int = typer.Option(30, help="epochs"),
        batch_size: int = typer.Option(32, help="frames per step"),
        lr: float = typer.Option(2e-3, help="peak learning rate"),
        max_minutes: Optional[float] = typer.Option(None, help="stop after the epoch that passes this wall time"),
        balance: float = typer.Option(0.0, help="draw frames with rare first meta-actions more often (0: plain "
                                      "shuffle, 1: every first action equally often)"),
        threads: int = typer.Option(1, help="torch CPU threads"),
        device: str = typer.Option("cpu", help="cpu or cuda"),
        d_model: int = typer.Option(128, help="transformer width"),
        n_layers: int = typer.Option(3, help="transformer blocks"),
        seed: int = typer.Option(0, help="random seed")) -> None:
    """Train the driving VLM; writes model.safetensors (+ .json, .vocab.json) and metrics.csv to --out."""
    from dualdrive.vlm.config import TrainConfig, VLMConfig
    from dualdrive.vlm.train import train_vlm
    try:
        model_cfg = VLMConfig(d_model=d_model, n_layers=n_layers, ff_dim=3 * d_model)
        train_cfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, max_minutes=max_minutes, threads=threads,
                                device=device, seed=seed, balance=balance)

        def log(row: dict) -> None:
            if row["kind"] == "val":
                _err.print(f"epoch {row['epoch']}: val loss {row['val_loss']:.4f}, token accuracy "
                           f"{row['val_token_acc']:.3f} ({row['elapsed_s']:.0f} s)")
            else:
                _err.print(f"  step {row['step']}: loss {row['loss']:.4f} lr {row['lr']:.2e}")

        summary = train_vlm(data, out, model_cfg, train_cfg, on_log=log)
    except _user_errors() as e:
        _fail(e)
    _out.print(json.dumps(summary, indent=1))


def eval_vlm_cmd(
        data: Path = typer.Option(..., help="held-out dataset directory from gen-vlm-data (other seeds than training)"),
        checkpoint: Optional[Path] = typer.Option(None, help="model .safetensors (default: the shipped one)"),
        out: Optional[Path] = typer.Option(None, help="write predictions.jsonl and scores.json here"),
        max_frames: Optional[int] = typer.Option(None, help="score this many frames, spread over the set"),
        threads: int = typer.Option(1, help="torch CPU threads (latency is reported for this many)")) -> None:
    """Score the driving VLM on held-out frames: meta-actions, critical objects, BLEU/chrF, waypoint L2, latency."""
    from dualdrive.vlm.evaluate import evaluate_vlm
    try:
        scores = evaluate_vlm(checkpoint, data, out, max_frames, threads)
    except _user_errors() as e:
        _fail(e)
    _out.print(json.dumps(scores, indent=1))
