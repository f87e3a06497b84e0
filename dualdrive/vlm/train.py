"""Training the driving VLM: next-word cross-entropy on the answers, teacher forced, on the CPU by default.

``train_vlm(data_dir, out_dir, config)`` writes into ``out_dir``:

- ``model.safetensors`` (+ ``model.json``, ``model.vocab.json``): the best epoch by validation loss;
- ``last.safetensors`` (+ sidecars): the latest epoch;
- ``metrics.csv``: one row per logged step (``train``) and per epoch (``val``);
- ``train_state.json`` + ``train_state.safetensors``: what a resume needs (weights, optimizer, epoch).

Resume: re-running the same call continues after the last finished epoch. The learning-rate
schedule is a function of the step, and the shuffle of epoch ``e`` is drawn from ``(seed, e)``, so
a resumed run sees the same batches and learning rates as an uninterrupted one (only its dropout
masks differ). A larger ``epochs`` extends a finished run (the cosine schedule then stretches).
"""
from __future__ import annotations

import csv
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from dualdrive.agents.e2e.checkpoint import CheckpointError, load_tensors, save_tensors, write_json
from dualdrive.vlm.checkpoint import save_checkpoint, state_dict_cpu, with_vocab
from dualdrive.vlm.config import TrainConfig, VLMConfig
from dualdrive.vlm.data import Frames, episode_keys, load_frames
from dualdrive.vlm.model import IGNORE_INDEX, DrivingVLM, count_parameters
from dualdrive.vlm.tokenizer import WordTokenizer

STATE_JSON, STATE_TENSORS = "train_state.json", "train_state.safetensors"
CSV_COLUMNS = ("kind", "epoch", "step", "lr", "loss", "val_loss", "val_token_acc", "elapsed_s")
# a resumed run may change these (how long and where it runs), not what it learns
RESUMABLE_CHANGES = {"epochs", "max_minutes", "threads", "device", "log_every_steps"}


@dataclass
class Encoded:
    """Frames as model inputs: images (N, H, W, 3) uint8, input tokens and targets (N, T) long, and each
    frame's first meta-action (for balanced sampling)."""

    images: torch.Tensor
    tokens: torch.Tensor
    targets: torch.Tensor
    first_actions: list[str]

    def __len__(self) -> int:
        return len(self.tokens)


def encode_frames(frames: Frames, tok: WordTokenizer, cfg: VLMConfig) -> Encoded:
    """Per frame: ``prompt <bos> answer <eos>``, inputs all but the last token, targets shifted by one and
    ``IGNORE_INDEX`` over the prompt and the padding."""
    rows, n_target = [], []
    for r in frames.records:
        prompt = tok.encode(r["prompt"])
        if len(prompt) > cfg.max_prompt_tokens:
            raise ValueError(f"prompt {r['prompt']!r} has {len(prompt)} tokens; the model takes {cfg.max_prompt_tokens}")
        answer = (tok.encode(r["text"]) + [tok.eos_id])[:cfg.max_answer_tokens]
        rows.append(prompt + [tok.bos_id] + answer)
        n_target.append(len(answer))
    width = max(len(s) for s in rows) - 1
    tokens = torch.full((len(rows), width), tok.pad_id, dtype=torch.long)
    targets = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    for i, (seq, n) in enumerate(zip(rows, n_target)):
        s = torch.tensor(seq)
        tokens[i, :len(seq) - 1] = s[:-1]
        targets[i, len(seq) - 1 - n:len(seq) - 1] = s[-n:]
    return Encoded(torch.from_numpy(np.ascontiguousarray(frames.images)), tokens, targets,
                   [r["answer"]["meta_actions"][0] for r in frames.records])


def epoch_order(data: Encoded, seed: int, epoch: int, balance: float) -> torch.Tensor:
    """The frames of one epoch, drawn from (seed, epoch): a permutation, or with ``balance`` > 0 a draw with
    replacement that favours frames whose first meta-action is rare."""
    rng = np.random.default_rng([seed, epoch])
    if balance == 0.0:
        return torch.from_numpy(rng.permutation(len(data)))
    counts = {a: data.first_actions.count(a) for a in set(data.first_actions)}
    w = np.array([counts[a] ** -balance for a in data.first_actions])
    return torch.from_numpy(rng.choice(len(data), size=len(data), replace=True, p=w / w.sum()))


def split_keys(keys: list[str], val_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Episodes for training and validation (whole episodes: neighbouring frames are near duplicates)."""
    if val_fraction == 0 or len(keys) < 2:
        return list(keys), []
    order = np.random.default_rng(seed).permutation(len(keys))
    n_val = max(1, int(round(val_fraction * len(keys))))
    val = sorted(keys[i] for i in order[:n_val])
    return [k for k in keys if k not in set(val)], val


def lr_at(step: int, total: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to 5 % of the peak."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    frac = min(1.0, (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps))
    return cfg.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * frac)))


@torch.no_grad()
def validate(model: DrivingVLM, data: Encoded, batch_size: int, device: str) -> tuple[float, float]:
    """Mean answer-token loss and teacher-forced token accuracy."""
    model.eval()
    total, correct, count = 0.0, 0, 0
    for i in range(0, len(data), batch_size):
        img, tok, tgt = (t[i:i + batch_size].to(device) for t in (data.images, data.tokens, data.targets))
        logits = model(img, tok)
        mask = tgt != IGNORE_INDEX
        total += float(torch.nn.functional.cross_entropy(logits[mask], tgt[mask], reduction="sum"))
        correct += int((logits[mask].argmax(-1) == tgt[mask]).sum())
        count += int(mask.sum())
    model.train()
    return total / max(count, 1), correct / max(count, 1)


@dataclass
class _Run:
    """Everything one training run holds between epochs."""

    model: DrivingVLM
    opt: torch.optim.Optimizer
    tok: WordTokenizer
    data: Encoded
    val: Encoded | None
    log: "_CsvLog"
    epoch0: int
    step: int
    best_val_loss: float
    meta: dict


def train_vlm(data_dir: str | Path, out_dir: str | Path, config: VLMConfig = VLMConfig(),
              train: TrainConfig = TrainConfig(), on_log: Callable[[dict], None] | None = None) -> dict:
    """Train (or resume) a driving VLM on a dataset from ``gen-vlm-data``; returns a summary."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(train.threads)
    run = _prepare(Path(data_dir), out, config, train)
    t0 = time.perf_counter()
    emit = on_log or (lambda row: None)
    total_steps = math.ceil(len(run.data) / train.batch_size) * train.epochs
    run.model.train()
    for epoch in range(run.epoch0, train.epochs):
        loss = _train_epoch(run, epoch, total_steps, train, t0, emit)
        _end_epoch(out, run, epoch, loss, train, t0, emit)
        if train.max_minutes is not None and time.perf_counter() - t0 > 60.0 * train.max_minutes:
            break
    return {"out_dir": str(out), "epochs_done": run.meta.get("epoch", run.epoch0), "steps": run.step,
            "best_val_loss": run.best_val_loss, "parameters": count_parameters(run.model),
            "train_frames": len(run.data), "wall_s": time.perf_counter() - t0}


def _prepare(data_dir: Path, out: Path, config: VLMConfig, train: TrainConfig) -> _Run:
    """Data, tokenizer (built, or the saved one on resume), model, optimizer and the resume point."""
    resume = (out / STATE_JSON).is_file()
    train_keys, val_keys = split_keys(episode_keys(data_dir), train.val_fraction, train.seed)
    frames = load_frames(data_dir, train_keys)
    tok = WordTokenizer.load(out / "vocab.json") if resume else \
        WordTokenizer.build([r["text"] for r in frames.records] + [r["prompt"] for r in frames.records])
    cfg = with_vocab(config, tok)
    state = _check_resume(out, cfg, train) if resume else None
    if not resume:
        tok.save(out / "vocab.json")
    torch.manual_seed(train.seed)
    model = DrivingVLM(cfg).to(train.device)
    opt = torch.optim.AdamW(model.parameters(), lr=train.lr, weight_decay=train.weight_decay)
    data = encode_frames(frames, tok, cfg)
    val = encode_frames(load_frames(data_dir, val_keys), tok, cfg) if val_keys else None
    epoch0, step, best = _load_state(out, model, opt, state) if state is not None else (0, 0, float("inf"))
    meta = {"data_dir": str(data_dir), "train_episodes": len(train_keys), "val_episodes": len(val_keys),
            "train_frames": len(data), "parameters": count_parameters(model), "train_config": train.to_dict()}
    return _Run(model, opt, tok, data, val, _CsvLog(out / "metrics.csv", keep_epochs_up_to=epoch0), epoch0, step,
                best, meta)


def _train_epoch(run: _Run, epoch: int, total_steps: int, train: TrainConfig, t0: float,
                 emit: Callable[[dict], None]) -> float:
    """One pass over the training frames in the order drawn from (seed, epoch); returns the last loss."""
    data, steps = run.data, math.ceil(len(run.data) / train.batch_size)
    perm = epoch_order(data, train.seed, epoch, train.balance)
    loss = torch.tensor(float("nan"))
    for b in range(steps):
        idx = perm[b * train.batch_size:(b + 1) * train.batch_size]
        lr = lr_at(run.step, total_steps, train)
        for g in run.opt.param_groups:
            g["lr"] = lr
        loss = run.model.loss(*(t[idx].to(train.device) for t in (data.images, data.tokens, data.targets)))
        run.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), 1.0)
        run.opt.step()
        run.step += 1
        if run.step % train.log_every_steps == 0:
            row = {"kind": "train", "epoch": epoch + 1, "step": run.step, "lr": lr, "loss": loss.item(),
                   "elapsed_s": time.perf_counter() - t0}
            run.log.append(row)
            emit(row)
    return loss.item()


def _end_epoch(out: Path, run: _Run, epoch: int, last_loss: float, train: TrainConfig, t0: float,
               emit: Callable[[dict], None]) -> None:
    """Validate, log, write ``last`` and (if better) ``model`` checkpoints and the resume state."""
    val_loss, val_acc = validate(run.model, run.val, train.batch_size, train.device) if run.val else \
        (last_loss, float("nan"))
    row = {"kind": "val", "epoch": epoch + 1, "step": run.step, "val_loss": val_loss, "val_token_acc": val_acc,
           "elapsed_s": time.perf_counter() - t0}
    run.log.append(row)
    emit(row)
    run.meta.update(epoch=epoch + 1, step=run.step, val_loss=val_loss, val_token_acc=val_acc)
    save_checkpoint(out / "last.safetensors", run.model, run.tok, run.meta)
    if val_loss < run.best_val_loss:
        run.best_val_loss = val_loss
        save_checkpoint(out / "model.safetensors", run.model, run.tok, {**run.meta, "best_epoch": epoch + 1})
    _save_state(out, run.model, run.opt, epoch + 1, run.step, run.best_val_loss, run.model.cfg, train)


# -- resume state ----------------------------------------------------------------------------------
def _save_state(out: Path, model: DrivingVLM, opt: torch.optim.Optimizer, epochs_done: int, step: int,
                best_val_loss: float, cfg: VLMConfig, train: TrainConfig) -> None:
    sd = opt.state_dict()
    tensors = {f"model.{k}": v for k, v in state_dict_cpu(model).items()}
    scalars = {}
    for pid, entries in sd["state"].items():
        for name, value in entries.items():
            if torch.is_tensor(value):
                tensors[f"optim.{pid}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{pid}.{name}"] = value
    save_tensors(out / STATE_TENSORS, tensors)
    write_json(out / STATE_JSON, {"epochs_done": epochs_done, "step": step, "best_val_loss": best_val_loss,
                                  "model_config": cfg.to_dict(), "train_config": train.to_dict(),
                                  "param_groups": sd["param_groups"], "optim_scalars": scalars})


def _check_resume(out: Path, cfg: VLMConfig, train: TrainConfig) -> dict:
    path = out / STATE_JSON
    try:
        state = json.loads(path.read_text())
        saved_model, saved_train = state["model_config"], state["train_config"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise CheckpointError(f"cannot resume from {path}: {type(e).__name__}: {e}") from None
    # a key the saved run does not have (an option added since) had its default value there
    model_defaults, train_defaults = VLMConfig(vocab_size=cfg.vocab_size).to_dict(), TrainConfig().to_dict()
    diff = [k for k, v in cfg.to_dict().items() if saved_model.get(k, model_defaults[k]) != v]
    diff += [k for k, v in train.to_dict().items()
             if k not in RESUMABLE_CHANGES and saved_train.get(k, train_defaults[k]) != v]
    if diff:
        raise CheckpointError(f"cannot resume from {path}: it was trained with other settings ({', '.join(diff)}); "
                              "use the same settings or another --out")
    return state


def _load_state(out: Path, model: DrivingVLM, opt: torch.optim.Optimizer, state: dict) -> tuple[int, int, float]:
    tensors = load_tensors(out / STATE_TENSORS)
    try:
        model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, strict=True)
        per_param: dict[int, dict] = {}
        for k, v in tensors.items():
            if k.startswith("optim."):
                pid, name = k[6:].split(".", 1)
                per_param.setdefault(int(pid), {})[name] = v
        for k, v in state["optim_scalars"].items():
            pid, name = k.split(".", 1)
            per_param.setdefault(int(pid), {})[name] = v
        groups = [{k: tuple(v) if isinstance(v, list) and k != "params" else v for k, v in g.items()}
                  for g in state["param_groups"]]
        opt.load_state_dict({"state": per_param, "param_groups": groups})
    except (KeyError, RuntimeError, ValueError) as e:
        raise CheckpointError(f"cannot resume from {out / STATE_TENSORS}: {type(e).__name__}: {e}") from None
    return int(state["epochs_done"]), int(state["step"]), float(state["best_val_loss"])


class _CsvLog:
    def __init__(self, path: Path, keep_epochs_up_to: int) -> None:
        self.path = path
        rows = []
        if path.is_file() and keep_epochs_up_to > 0:  # a resumed run redoes the unfinished epoch
            with path.open(newline="") as f:
                rows = [r for r in csv.DictReader(f) if r.get("epoch") and int(r["epoch"]) <= keep_epochs_up_to]
        with path.open("w", newline="") as f:
            w = csv.DictWriter(f, CSV_COLUMNS)
            w.writeheader()
            w.writerows(rows)

    def append(self, row: dict) -> None:
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, CSV_COLUMNS).writerow({k: f"{v:.6g}" if isinstance(v, float) else v for k, v in row.items()})
