"""Training loop of the E2E model: seeded, resumable, data-parallel under torchrun, logged to CSV.

``run_training(train_set, val_set, out_dir, model_cfg, train_cfg)`` writes into ``out_dir``:
``metrics.csv`` (per-step and per-epoch losses, validation metrics), ``val.json`` (latest and best
validation), ``last.safetensors`` / ``best.safetensors`` (+ JSON sidecars, see
dualdrive.agents.e2e.checkpoint) and the resume state (dualdrive.training.state). Running it again
on the same ``out_dir`` resumes after the last checkpointed epoch and ends where an uninterrupted
run would: data order, augmentation and dropout are re-seeded from (seed, epoch) every epoch.
"""
from __future__ import annotations

import json
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from dualdrive.agents.e2e.checkpoint import (CheckpointError, load_grown_into, load_weights_into, read_info, save_checkpoint, sidecar_path,
                                             write_json)
from dualdrive.agents.e2e.config import E2EConfig
from dualdrive.agents.e2e.model import MODEL_INPUT_KEYS, E2EModel
from dualdrive.training import distributed as ddp
from dualdrive.training.augment import augment_batch
from dualdrive.training.config import TrainConfig
from dualdrive.training.csvlog import CsvLog
from dualdrive.training.losses import compute_losses
from dualdrive.training.metrics import ValAccumulator
from dualdrive.training.state import (STATE_JSON, STATE_TENSORS_GLOB, ResumeState, has_train_state,
                                      load_train_state, read_train_state, save_train_state)

LAST, BEST = "last.safetensors", "best.safetensors"
EPOCH_SEED_STRIDE = 1_000_003  # separates the per-epoch seeds of different base seeds
RANK_SEED_STRIDE = 7919  # each rank draws its own augmentation and dropout
LOSS_KEYS = ("loss", "plan_loss", "gear_loss", "bev_loss", "light_loss", "lead_loss")
NO_DECAY_NAMES = ("pos_embedding", "missing_", "embedding", "norm")


class TrainingError(RuntimeError):
    """A training run that cannot start or resume; the message says why."""


@dataclass
class TrainResult:
    out_dir: Path
    epochs_done: int
    last_checkpoint: Path
    best_checkpoint: Path | None
    val_metrics: dict[str, float] = field(default_factory=dict)
    best_l2_m: float = float("inf")
    model: E2EModel | None = None  # the trained model of this process (not wrapped in DDP), in eval mode


def run_training(train_set: Dataset, val_set: Dataset | None, out_dir: str | Path,
                 model_cfg: E2EConfig = E2EConfig(), train_cfg: TrainConfig = TrainConfig(), resume: bool = True,
                 metadata: dict[str, Any] | None = None,
                 on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
                 init_checkpoint: str | Path | None = None) -> TrainResult:
    """Train the E2E model; under torchrun every rank calls this and rank 0 writes the files.

    ``metadata`` (e.g. the dataset card's path) is stored in every checkpoint's sidecar;
    ``on_epoch_end(epoch, epoch_metrics)`` runs after each epoch's checkpoint is written;
    ``init_checkpoint`` starts a fresh run from those weights (fine-tuning, e.g. a DAgger round) instead
    of a random initialisation; its model config must be ``model_cfg``. A resumed run ignores it.
    """
    info = ddp.setup(train_cfg.device)
    try:
        return _Trainer(train_set, val_set, Path(out_dir), model_cfg, train_cfg, info, metadata or {}).run(
            resume, on_epoch_end, init_checkpoint)
    finally:
        ddp.teardown(info)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device


def _seed_worker(worker_id: int) -> None:
    """DataLoader workers: numpy and random follow the worker's torch seed (itself from the loader's generator)."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def lr_at(step: int, total_steps: int, cfg: TrainConfig) -> float:
    """Linear warmup to ``lr`` over ``warmup_steps``, then cosine decay to ``min_lr_ratio * lr``."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    span = max(1, total_steps - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / span)
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW; no weight decay on biases, norms, embeddings and learned tokens (decaying them only hurts)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim < 2 or any(s in name for s in NO_DECAY_NAMES) else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr)


class _Trainer:
    def __init__(self, train_set: Dataset, val_set: Dataset | None, out_dir: Path, model_cfg: E2EConfig,
                 train_cfg: TrainConfig, info: ddp.DistInfo, metadata: dict[str, Any]) -> None:
        self.train_set, self.val_set, self.out = train_set, val_set, out_dir
        self.mcfg, self.tcfg, self.info, self.metadata = model_cfg, train_cfg, info, metadata
        seed_everything(train_cfg.seed)  # the initial weights (DDP also broadcasts rank 0's)
        self.model = E2EModel(model_cfg).to(info.device)
        self.optimizer = make_optimizer(self.model, train_cfg)
        self.sampler = DistributedSampler(train_set, num_replicas=info.world_size, rank=info.rank, shuffle=True,
                                          seed=train_cfg.seed)
        self.loader_generator = torch.Generator()
        self.loader = self._loader(train_set, self.sampler, self.loader_generator)
        self.total_steps = train_cfg.epochs * len(self.loader)
        self.state = ResumeState(0, 0, float("inf"), -1, model_cfg.to_dict(), train_cfg.to_dict())
        self.log = CsvLog(out_dir / "metrics.csv") if info.is_main else None
        self.last_val: dict[str, float] = {}

    def _inputs(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The model's inputs of a training batch: with a guidance input, the expert's guidance, replaced
        by "none" in a ``guidance_dropout`` share of the samples so that the model also drives alone."""
        inputs = {k: batch[k] for k in MODEL_INPUT_KEYS if k in batch}
        if self.mcfg.guidance_classes:
            g = batch["guidance"]
            keep = torch.rand(g.shape, device=g.device) >= self.tcfg.guidance_dropout
            inputs["guidance"] = torch.where(keep, g, torch.zeros_like(g))
        return inputs

    def _loader(self, dataset: Dataset, sampler: Any, generator: torch.Generator | None) -> DataLoader:
        workers = self.tcfg.num_workers
        return DataLoader(dataset, batch_size=self.tcfg.batch_size, sampler=sampler, num_workers=workers,
                          generator=generator, worker_init_fn=_seed_worker if workers else None,
                          pin_memory=self.info.device.type == "cuda", drop_last=False)

    # -- the run ---------------------------------------------------------------------------------
    def run(self, resume: bool, on_epoch_end: Callable[[int, dict[str, float]], None] | None,
            init_checkpoint: str | Path | None = None) -> TrainResult:
        if self.info.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
        ddp.barrier(self.info)
        if resume and has_train_state(self.out):
            self._resume()
        else:
            if self.info.is_main:
                _remove_run_files(self.out)  # a fresh start: no best or resume state of an older run may survive
            if init_checkpoint is not None:
                self._init_from(Path(init_checkpoint))
        if self.log is not None:
            self.log.keep_epochs_up_to(self.state.epochs_done)  # rows after the last checkpoint are redone
        model = self.model
        if self.info.enabled:
            ids = [self.info.device.index] if self.info.device.type == "cuda" else None
            model = DistributedDataParallel(self.model, device_ids=ids)
        for epoch in range(self.state.epochs_done + 1, self.tcfg.epochs + 1):
            epoch_metrics = self._train_epoch(model, epoch)
            if epoch % self.tcfg.val_every_epochs == 0 or epoch == self.tcfg.epochs:
                epoch_metrics.update(self._validate(epoch))
            if epoch % self.tcfg.checkpoint_every_epochs == 0 or epoch == self.tcfg.epochs:
                self._checkpoint(epoch)
            if on_epoch_end is not None:
                on_epoch_end(epoch, epoch_metrics)
        ddp.barrier(self.info)
        best = self.out / BEST
        return TrainResult(self.out, self.state.epochs_done, self.out / LAST, best if best.is_file() else None,
                           self.last_val or self._saved_val(), self.state.best_l2_m, self.model.eval())

    def _init_from(self, path: Path) -> None:
        """Every rank loads the same weights (the optimizer starts afresh: a new schedule, new data)."""
        try:
            info = read_info(path)
            if info.config == self.mcfg:
                load_weights_into(self.model, path)
            else:  # this run's model adds parts to the saved one (or the error says what else differs)
                added = load_grown_into(self.model, path, info.config)
                if self.info.is_main:
                    print(f"fine-tuning from {path} with added parts: {'; '.join(added)}")
        except CheckpointError as e:
            raise TrainingError(f"cannot fine-tune from {path}: {e}") from None

    def _resume(self) -> None:
        hint = "use another output directory or start afresh (resume=False / --no-resume)"
        try:
            saved, _ = read_train_state(self.out)
            if saved.model_config != self.mcfg.to_dict():
                raise TrainingError(f"cannot resume the run in {self.out}: it trains a different model config; {hint}")
            state = load_train_state(self.out, self.model, self.optimizer)
        except CheckpointError as e:
            raise TrainingError(f"cannot resume the run in {self.out}: {e}; {hint}") from None
        if state.train_config != self.tcfg.to_dict() and self.info.is_main:
            changed = sorted(k for k, v in self.tcfg.to_dict().items() if state.train_config.get(k) != v)
            print(f"warning: resuming {self.out} with a changed training config ({', '.join(changed)})")
        self.state = ResumeState(state.epochs_done, state.global_step, state.best_l2_m, state.best_epoch,
                                 self.mcfg.to_dict(), self.tcfg.to_dict())

    def _train_epoch(self, model: torch.nn.Module, epoch: int) -> dict[str, float]:
        cfg, dev = self.tcfg, self.info.device
        seed_everything(cfg.seed + EPOCH_SEED_STRIDE * epoch + RANK_SEED_STRIDE * self.info.rank)
        self.sampler.set_epoch(epoch)
        self.loader_generator.manual_seed(cfg.seed + EPOCH_SEED_STRIDE * epoch)
        model.train()
        sums = torch.zeros(len(LOSS_KEYS), dtype=torch.float64, device=dev)
        step = self.state.global_step
        with _progress(self.info.is_main) as bar:
            task = bar.add_task(f"epoch {epoch}/{cfg.epochs}", total=len(self.loader))
            for batch in self.loader:
                batch = augment_batch(_to_device(batch, dev), cfg.sensor_dropout_prob, cfg.camera_brightness_jitter)
                lr = lr_at(step, self.total_steps, cfg)
                for group in self.optimizer.param_groups:
                    group["lr"] = lr
                losses = compute_losses(model(**self._inputs(batch)), batch, self.mcfg)
                self.optimizer.zero_grad(set_to_none=True)
                losses["loss"].backward()
                if cfg.grad_clip_norm > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip_norm)
                self.optimizer.step()
                values = torch.stack([losses[k].detach().double() for k in LOSS_KEYS])
                sums += values
                step += 1
                if self.log is not None and step % cfg.log_every_steps == 0:
                    self.log.append({"kind": "step", "epoch": epoch, "step": step, "lr": lr,
                                     **dict(zip(LOSS_KEYS, values.tolist()))})
                bar.update(task, advance=1, description=f"epoch {epoch}/{cfg.epochs} loss {values[0]:.3f}")
        means = ddp.all_reduce_mean(sums / max(1, len(self.loader)), self.info)
        self.state = ResumeState(epoch, step, self.state.best_l2_m, self.state.best_epoch,
                                 self.state.model_config, self.state.train_config)
        metrics = dict(zip(LOSS_KEYS, means.tolist()))
        if self.log is not None:
            self.log.append({"kind": "epoch", "epoch": epoch, "step": step, "lr": lr_at(step - 1, self.total_steps, cfg),
                             **metrics})
            print(f"epoch {epoch}/{cfg.epochs} step {step}: " + " ".join(f"{k} {v:.4f}" for k, v in metrics.items()),
                  flush=True)
        return metrics

    @torch.no_grad()
    def _validate(self, epoch: int) -> dict[str, float]:
        """Each rank scores its own share of the validation set (no padding duplicates), the sums are added."""
        if self.val_set is None or len(self.val_set) == 0:
            return {}
        indices = list(range(self.info.rank, len(self.val_set), self.info.world_size))
        loader = self._loader(torch.utils.data.Subset(self.val_set, indices), None, None)
        self.model.eval()
        acc = ValAccumulator(self.mcfg.plan_poses, self.mcfg.bev_classes, self.mcfg.light_classes, self.info.device)
        for batch in loader:
            batch = _to_device(batch, self.info.device)
            out = self.model(**{k: batch[k] for k in MODEL_INPUT_KEYS if k in batch})
            acc.update(out, batch, compute_losses(out, batch, self.mcfg)["loss"])
        acc.reduce()
        val = acc.result()
        if val["l2_mean_m"] < self.state.best_l2_m:
            self.state = ResumeState(self.state.epochs_done, self.state.global_step, val["l2_mean_m"], epoch,
                                     self.state.model_config, self.state.train_config)
            if self.info.is_main:
                save_checkpoint(self.out / BEST, self.model, self._metadata(epoch, val))
        self.last_val = val
        if self.info.is_main:
            self.log.append({"kind": "val", "epoch": epoch, "step": self.state.global_step, **val})
            print(f"val epoch {epoch}: L2 {val['l2_mean_m']:.3f} m (best {self.state.best_l2_m:.3f} m at epoch "
                  f"{self.state.best_epoch}), gear acc {val['gear_acc']:.3f}, BEV mIoU {val['bev_miou']:.3f}", flush=True)
            write_json(self.out / "val.json", _json_safe({"epoch": epoch, "metrics": val, "best_epoch":
                                                          self.state.best_epoch, "best_l2_mean_m": self.state.best_l2_m}))
        return {f"val_{k}" if not k.startswith("val_") else k: v for k, v in val.items()}

    def _checkpoint(self, epoch: int) -> None:
        if not self.info.is_main:
            return
        save_checkpoint(self.out / LAST, self.model, self._metadata(epoch, self.last_val))
        save_train_state(self.out, self.model, self.optimizer, self.state)  # resumes from this, not from last

    def _metadata(self, epoch: int, val: dict[str, float]) -> dict[str, Any]:
        return _json_safe({**self.metadata, "epoch": epoch, "global_step": self.state.global_step,
                           "val_metrics": val, "train_config": self.tcfg.to_dict()})

    def _saved_val(self) -> dict[str, float]:
        """A finished run re-run: the validation metrics it recorded."""
        path = self.out / "val.json"
        return json.loads(path.read_text()).get("metrics", {}) if path.is_file() else {}


def _remove_run_files(out_dir: Path) -> None:
    """Delete what a run writes (and nothing else) from ``out_dir``."""
    names = [LAST, BEST, sidecar_path(LAST).name, sidecar_path(BEST).name, STATE_JSON, "val.json"]
    for path in [*(out_dir / n for n in names), *out_dir.glob(STATE_TENSORS_GLOB)]:
        path.unlink(missing_ok=True)


def _to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def _json_safe(obj: Any) -> Any:
    """NaN/inf are not JSON: write them as null."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def _progress(enabled: bool) -> Progress:
    """A live bar on rank 0 in a terminal; in a log file (batch jobs) the per-epoch summary line only."""
    console = Console(stderr=True)
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=console, transient=True, disable=not (enabled and console.is_terminal))
