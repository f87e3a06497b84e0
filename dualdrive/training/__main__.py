"""``python -m dualdrive.training --data DIR --out RUN`` (or under ``torchrun --nproc-per-node N -m ...``).

A thin command line over :func:`dualdrive.training.loop.run_training`: every TrainConfig field is a
flag (``--batch-size 16``) that overrides ``--train-config FILE``; the model config comes from
``--model-config FILE`` (JSON or YAML); re-running the same command resumes the run in ``--out``.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields
from pathlib import Path

import yaml

from dualdrive.agents.e2e.config import E2EConfig, E2EConfigError
from dualdrive.data.format import DatasetError
from dualdrive.training import data
from dualdrive.training.config import TrainConfig, TrainConfigError
from dualdrive.training.loop import TrainingError, run_training

DATASET_CARD = "card.json"  # written by `dualdrive collect` beside the episodes


def build_parser(prog: str = "python -m dualdrive.training") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, type=Path, nargs="+", help="demonstration dataset directory (or several)")
    p.add_argument("--out", required=True, type=Path, help="run directory (checkpoints, metrics.csv, val.json)")
    p.add_argument("--val-fraction", type=float, default=0.1, help="share of episodes held out for validation")
    p.add_argument("--model-config", type=Path, default=None, help="JSON/YAML file of E2EConfig fields")
    p.add_argument("--train-config", type=Path, default=None, help="JSON/YAML file of TrainConfig fields")
    p.add_argument("--no-resume", action="store_true", help="start afresh even if --out holds a run")
    p.add_argument("--init-checkpoint", type=Path, default=None,
                   help="fine-tune: start from these weights (same model config) instead of a random init")
    defaults = TrainConfig()
    for f in fields(TrainConfig):
        default = getattr(defaults, f.name)
        p.add_argument(f"--{f.name.replace('_', '-')}", dest=f"train_{f.name}", type=type(default), default=None,
                       metavar=f.name.upper(), help=f"(default: {default})")
    return p


def read_config_file(path: Path) -> dict:
    """A config mapping from JSON (``.json``) or YAML (anything else)."""
    text = path.read_text()
    d = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    if not isinstance(d, dict):
        raise ValueError(f"{path} must hold a mapping of config keys, got {type(d).__name__}")
    return d


def run_metadata(data_dir: Path | list[Path], val_fraction: float) -> dict:
    """What each checkpoint records about its data: the directory (or directories) and dataset card(s)
    (dualdrive.data.card)."""
    dirs = [Path(d) for d in data_dir] if isinstance(data_dir, (list, tuple)) else [Path(data_dir)]
    cards = [d.resolve() / DATASET_CARD for d in dirs]
    cards_s = [str(c) if c.is_file() else None for c in cards]
    if len(dirs) == 1:
        return {"data_dir": str(dirs[0].resolve()), "dataset_card": cards_s[0], "val_fraction": val_fraction}
    return {"data_dir": [str(d.resolve()) for d in dirs], "dataset_card": cards_s, "val_fraction": val_fraction}


def main(argv: list[str] | None = None, prog: str = "python -m dualdrive.training") -> int:
    args = build_parser(prog).parse_args(argv)
    try:
        train_dict = read_config_file(args.train_config) if args.train_config else {}
        train_dict.update({f.name: getattr(args, f"train_{f.name}") for f in fields(TrainConfig)
                           if getattr(args, f"train_{f.name}") is not None})
        train_cfg = TrainConfig.from_dict(train_dict)
        model_cfg = E2EConfig.from_dict(read_config_file(args.model_config)) if args.model_config else E2EConfig()
    except (TrainConfigError, E2EConfigError, OSError, ValueError, yaml.YAMLError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    data_arg = args.data[0] if len(args.data) == 1 else list(args.data)
    try:
        train_set, val_set = data.load_datasets(data_arg, args.val_fraction, train_cfg.seed)
    except DatasetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if model_cfg.history and not data.history_share(train_set):
        print(f"error: the model reads the frame a second ago (e2e.history) but no training frame in {args.data} has "
              "one: its frames do not fall 1 s apart (record with a frame stride whose interval divides 1 s, e.g. "
              "`dualdrive collect --frame-stride 2` at 10 Hz, `export-human --frame-stride 5`) or lack t_s",
              file=sys.stderr)
        return 2
    try:
        result = run_training(train_set, val_set, args.out, model_cfg, train_cfg, resume=not args.no_resume,
                              metadata=run_metadata(data_arg, args.val_fraction), init_checkpoint=args.init_checkpoint)
    except TrainingError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"trained {result.epochs_done} epochs: {result.last_checkpoint} (best: {result.best_checkpoint}, "
          f"val L2 {result.best_l2_m:.3f} m)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
