"""DAgger for the E2E model: the learner drives, the expert labels the states it visits, the data set
grows, the learner is fine-tuned, and each round is scored closed loop.

Round r (1..K), all under ``RUN/dagger/round_<r>/``:

1. ``demos/``  ``collect`` with ``--agent e2e`` on the previous round's checkpoint (round 1: the run's
   ``best.safetensors``); dualdrive.data.episode has the expert ride along and label every tick.
   Seeds ``seed_start + (r-1) * episodes ...`` (development seeds, disjoint per round).
2. ``train/``  fine-tune from the previous checkpoint for ``epochs`` on the initial datasets plus every
   round's ``demos/`` so far (the aggregation step of DAgger).
3. ``closed_loop.json``  ``dualdrive eval --agent e2e`` of the new checkpoint on ``val_seeds``.

``RUN/dagger.json`` lists per round: dataset size, validation L2 (on ``val_data`` when given, else on
the training split's validation episodes) and closed-loop DS / success. Round 0 is the starting
checkpoint, scored the same way. A round is appended when it is complete, so a re-run resumes at
the first missing round (and inside it: collection and training resume themselves).
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from dualdrive.agents.e2e.checkpoint import write_json
from dualdrive.training.config import TrainConfig
from dualdrive.world.scenarios import ConfigError

DAGGER_JSON = "dagger.json"


@dataclass(frozen=True)
class DaggerConfig:
    data_dirs: tuple[Path, ...]  # the demonstrations the starting checkpoint was trained on
    run: Path  # a training run directory: round 1 starts from its best.safetensors
    rounds: int = 1
    episodes: int = 8  # learner episodes collected per round
    suite: str = "driving"
    epochs: int = 1  # fine-tuning epochs per round
    seed_start: int = 1000
    val_seeds: str = "4900:4902"  # closed-loop seeds (one episode per scenario of the suite each)
    val_data: Path | None = None  # held-out episodes for the validation L2 (else the training split's)
    val_fraction: float = 0.1  # of the training split, when there is no val_data
    frame_stride: int = 10
    max_duration_s: float = 120.0
    workers: int = 1
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=1))

    def validate(self) -> None:
        from dualdrive.bench.evaluate import parse_seeds
        from dualdrive.world.scenarios import DEV_SEED_LIMIT
        if self.rounds < 1 or self.episodes < 1 or self.epochs < 1:
            raise ConfigError(f"--rounds {self.rounds}, --episodes {self.episodes} and --epochs {self.epochs} must be >= 1")
        if self.seed_start + self.rounds * self.episodes > DEV_SEED_LIMIT:
            raise ConfigError(f"DAgger seeds {self.seed_start}:{self.seed_start + self.rounds * self.episodes} reach "
                              f"into the evaluation seeds (>= {DEV_SEED_LIMIT}); lower --seed-start")
        parse_seeds(self.val_seeds)
        if not (self.run / "best.safetensors").is_file():
            raise ConfigError(f"no starting checkpoint {self.run / 'best.safetensors'}: train a model into --run first "
                              "(dualdrive train --data DIR --out RUN)")


def round_dir(cfg: DaggerConfig, r: int) -> Path:
    return cfg.run / "dagger" / f"round_{r}"


def run_dagger(cfg: DaggerConfig, log: Callable[[str], None] = print) -> dict:
    """Run (or resume) the rounds; returns the contents of ``RUN/dagger.json``."""
    cfg.validate()
    path = cfg.run / DAGGER_JSON
    state = json.loads(path.read_text()) if path.is_file() else {"rounds": []}
    done = {r["round"] for r in state["rounds"]}
    start = cfg.run / "best.safetensors"
    if 0 not in done:
        log("DAgger round 0: the starting checkpoint")
        state["rounds"].append(_score(cfg, 0, start.resolve(), list(cfg.data_dirs), None, log))
        write_json(path, state)
    for r in range(1, cfg.rounds + 1):
        if r in done:
            continue
        prev = _checkpoint_of(state, r - 1)
        log(f"DAgger round {r}: learner {prev}")
        demos = _collect_round(cfg, r, prev, log)
        dirs = [*cfg.data_dirs, *(round_dir(cfg, k) / "demos" for k in range(1, r)), demos]
        ckpt, train_val = _finetune(cfg, r, prev, dirs)
        state["rounds"].append(_score(cfg, r, ckpt, dirs, train_val, log))
        write_json(path, state)
    return state


def _checkpoint_of(state: dict, r: int) -> Path:
    return Path(next(x["checkpoint"] for x in state["rounds"] if x["round"] == r))


def _collect_round(cfg: DaggerConfig, r: int, learner: Path, log: Callable[[str], None]) -> Path:
    from dualdrive.agents.e2e.agent import checkpoint_env, network_alone
    from dualdrive.data.collect import CollectConfig, collect
    out = round_dir(cfg, r) / "demos"
    seeds = range(cfg.seed_start + (r - 1) * cfg.episodes, cfg.seed_start + r * cfg.episodes)
    # the network drives alone: DAgger is to label the states its own mistakes lead to, which the plan
    # guard (dualdrive.agents.guard) and the speed probe (dualdrive.agents.e2e.probe) would hide; and
    # without the leaving latch (dualdrive.agents.e2e.leaving), as the shipped weights were made
    with checkpoint_env(learner), network_alone():
        res = collect(CollectConfig(out, cfg.suite, "e2e", None, seeds, cfg.workers, 0.0, cfg.frame_stride,
                                    cfg.max_duration_s, meta_extra={"learner_checkpoint": str(learner),
                                                                 "learner_guard": "off", "learner_probe": "off"}),
                      on_done=lambda row, k, n: log(f"  collect {k}/{n} {row['key']}: {row['frames']} frames, "
                                                    f"{'ok' if row['status'] == 'ok' else row['error']}"))
    if res["card"]["episodes"] == 0:
        raise ConfigError(f"DAgger round {r} collected no episode into {out}: {res['run']['failed']}")
    return out


def _finetune(cfg: DaggerConfig, r: int, prev: Path, dirs: list[Path]) -> tuple[Path, float | None]:
    from dataclasses import replace

    from dualdrive.agents.e2e.checkpoint import read_info
    from dualdrive.data.dataset import DemoDataset
    from dualdrive.training.__main__ import run_metadata
    from dualdrive.training.data import load_datasets
    from dualdrive.training.loop import run_training
    if cfg.val_data is not None:
        train_set, _ = load_datasets(dirs, 0.0, cfg.train.seed)
        val_set = DemoDataset(cfg.val_data)
    else:
        train_set, val_set = load_datasets(dirs, cfg.val_fraction, cfg.train.seed)
    out = round_dir(cfg, r) / "train"
    res = run_training(train_set, val_set, out, read_info(prev).config, replace(cfg.train, epochs=cfg.epochs),
                       metadata={**run_metadata([Path(d) for d in dirs], cfg.val_fraction), "dagger_round": r,
                                 "init_checkpoint": str(prev)},
                       init_checkpoint=prev)
    ckpt = res.best_checkpoint or res.last_checkpoint
    return ckpt.resolve(), res.best_l2_m if res.best_l2_m != float("inf") else None


def _score(cfg: DaggerConfig, r: int, ckpt: Path, dirs: list[Path], train_val_l2: float | None,
           log: Callable[[str], None]) -> dict:
    from dualdrive.data.dataset import DemoDataset
    from dualdrive.training.pipeline import evaluate_checkpoint
    val_l2 = train_val_l2
    if cfg.val_data is not None:
        from dualdrive.training.openloop import evaluate_openloop
        val_l2 = evaluate_openloop(ckpt, [cfg.val_data])["l2_avg_m"]
    # the network alone, as it drove the round's episodes (the agent as shipped, guard and probe, is scored in
    # the pipeline)
    res = evaluate_checkpoint(ckpt, cfg.suite, cfg.val_seeds, round_dir(cfg, r) / "closed_loop.json", cfg.workers,
                              aids=False)
    s = res["summary"]
    row = {"round": r, "checkpoint": str(ckpt), "datasets": [str(d) for d in dirs],
           "dataset_episodes": sum(len(DemoDataset(d).episodes) for d in dirs),
           "dataset_frames": sum(len(DemoDataset(d)) for d in dirs), "val_l2_m": val_l2,
           "val_l2_on": str(cfg.val_data) if cfg.val_data is not None else "training split",
           "closed_loop": {"seeds": cfg.val_seeds, "suite": cfg.suite, "episodes": s["episodes"],
                           "driving_score": s["driving_score"]["mean"], "route_completion": s["route_completion"]["mean"],
                           "success_rate": s["success_rate"]["mean"]}}
    log(f"  round {r}: {row['dataset_frames']} frames, val L2 {val_l2 if val_l2 is None else round(val_l2, 3)} m, "
        f"DS {row['closed_loop']['driving_score']:.1f}, success {row['closed_loop']['success_rate']:.0f}%")
    return row
