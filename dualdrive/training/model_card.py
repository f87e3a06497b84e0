"""MODEL_CARD.md of a shipped E2E checkpoint, written from the pipeline's files (nothing typed in by hand):
the dataset card, metrics.csv, openloop.json, closed_loop/*.json, latency.json, stage_times.json."""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from dualdrive.agents.e2e.checkpoint import read_info, sidecar_path

BYTES_PER_MB = 1e6


def _read(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None


def _f(v: Any, nd: int = 3) -> str:
    return "—" if v is None else f"{v:.{nd}f}"


def _run_name(out: Path, ckpt: Path) -> str:
    """Which training run the shipped weights come from: the base run, or a DAgger round's fine-tune."""
    try:
        rel = Path(ckpt).resolve().parent.relative_to(Path(out).resolve())
    except ValueError:
        return "the run"
    parts = rel.parts
    if "dagger" in parts and len(parts) > parts.index("dagger") + 1:
        return f"the fine-tune of DAgger {parts[parts.index('dagger') + 1].replace('_', ' ')} (`{out}/{rel}`)"
    return f"the run `{out}/{rel}`"


def eval_command(suite: str, meta: dict) -> str:
    """The `dualdrive eval` command line that reproduces a closed-loop result of System 1 with its ``meta``
    (seeds, and the aids it ran with: e2e_guard on / lidar / off; e2e_probe, e2e_leaving, e2e_lights and
    e2e_park_assist, e2e_yield, e2e_turn_keeping and e2e_lane_change on / off)."""
    off = "".join(f" --no-{k.replace('_', '-')}" for k in ("guard", "probe", "lights", "park_assist", "yield",
                                                            "turn_keeping", "lane_change")
                  if meta.get(f"e2e_{k}") == "off")
    env = ("DUALDRIVE_E2E_GUARD_RADAR=0 " if meta.get("e2e_guard") == "lidar" else "") + \
        ("DUALDRIVE_E2E_LEAVING=0 " if meta.get("e2e_leaving") == "off" else "")
    return f"{env}dualdrive eval --agent e2e{off} --suite {suite} --seeds {meta['seeds']} --out runs/eval/e2e_{suite}.json"


def training_curve(run_dir: Path) -> list[dict[str, str]]:
    """Per-epoch rows of metrics.csv: train loss, plan loss and the validation L2 of that epoch."""
    path = run_dir / "metrics.csv"
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    epochs = {r["epoch"]: r for r in rows if r["kind"] == "epoch"}
    vals = {r["epoch"]: r for r in rows if r["kind"] == "val"}
    return [{"epoch": e, "loss": epochs[e]["loss"], "plan_loss": epochs[e]["plan_loss"],
             "val_l2_m": vals.get(e, {}).get("l2_mean_m", ""), "val_l2_3s_m": vals.get(e, {}).get("l2_3s_m", "")}
            for e in sorted(epochs, key=int)]


def write_model_card(out: Path, ship: Path, cfg, ckpt: Path) -> Path:
    """Write ``ship/MODEL_CARD.md`` from the files of the pipeline run in ``out``."""
    info = read_info(ckpt)
    card = _read(out / "demos" / "card.json") or {}
    val_card = _read(out / "val" / "card.json") or {}
    ol = _read(out / "openloop.json")
    lat = _read(out / "latency.json")
    times = _read(out / "stage_times.json") or {}
    dagger = _read(out / "train" / "dagger.json")
    size_mb = (ship / "model.safetensors").stat().st_size / BYTES_PER_MB
    side_mb = sidecar_path(ship / "model.safetensors").stat().st_size / BYTES_PER_MB
    L = ["# E2E model (System 1): the shipped default checkpoint", "",
         "Written by `dualdrive model-pipeline` (`make model`) from the files of its run; every number below",
         "is read from those files. Reproduce with `make model` (or the commands below).", "",
         "## Data", ""]
    if card:
        L += [f"- training demonstrations: {card['episodes']} episodes, {card['frames']} frames, "
              f"{card['hours_of_driving']:.2f} h of driving; driver {card['driver']} with DART sigma "
              f"{card['dart_sigma_mps2']} m/s^2, labels by the expert; frame stride {card['frame_stride']} "
              f"(one frame per {card['frame_stride'] / 10:.1f} s), {card.get('sampling', 'uniform')} sampling, episodes capped at {card['max_duration_s']:.0f} s; "
              f"seeds {cfg.train_seeds} (development)",
              "- scenario mix: " + ", ".join(f"{k} {v['episodes']} episodes / {v['frames']} frames "
                                            f"(expert success within the cap {100 * v['success_rate']:.0f} %)"
                                            for k, v in card["scenarios"].items())]
    if val_card:
        L += [f"- held-out validation: {val_card['episodes']} clean expert episodes, {val_card['frames']} frames, "
              f"seeds {cfg.val_seeds} (development range, disjoint from the training seeds)"]
    L += ["", "## Commands", "", "```",
          f"dualdrive collect --agent expert --suite driving --seeds {cfg.train_seeds} --workers {cfg.workers} "
          f"--dart-noise {cfg.dart_noise} --frame-stride {cfg.frame_stride} --sampling {cfg.sampling} "
          f"--max-duration-s {cfg.max_duration_s:g} --out {out}/demos",
          f"dualdrive collect --agent expert --suite driving --seeds {cfg.val_seeds} --workers {cfg.workers} "
          f"--frame-stride {cfg.frame_stride} --max-duration-s {cfg.max_duration_s:g} --out {out}/val",
          f"# training, validated on the held-out set (dualdrive.training.pipeline, stage train):",
          f"#   epochs {cfg.epochs}, batch {cfg.batch_size}, AdamW lr {cfg.lr:g} (warmup {cfg.warmup_steps} steps, "
          f"cosine), seed {cfg.seed}",
          *([f"# DAgger (stage dagger): {cfg.dagger_rounds} round(s) of {cfg.dagger_episodes} learner episodes from seed "
             f"{cfg.dagger_seed_start}, labelled by the expert, {cfg.dagger_epochs} fine-tuning epoch(s) on all data"]
            if cfg.dagger_rounds else []),
          f"dualdrive model-pipeline --out {out}   # all of the above, then the stages below", "```", ""]
    L += ["## Model", "",
          f"- `E2EModel` ({_architecture(ckpt)}), {lat['params'] if lat else '?'} parameters; "
          f"config in `model.json`",
          f"- checkpoint: `model.safetensors` {size_mb:.2f} MB + `model.json` {side_mb * 1000:.1f} KB "
          f"(from epoch {info.metadata.get('epoch')} of {_run_name(out, ckpt)})", ""]
    curve = training_curve(out / "train")
    if curve:
        L += ["## Training curve", "", "| epoch | train loss | plan L1 loss | held-out val L2 mean (m) | val L2 @3 s (m) |",
              "|---|---|---|---|---|"]
        L += [f"| {r['epoch']} | {r['loss']} | {r['plan_loss']} | {r['val_l2_m']} | {r['val_l2_3s_m']} |" for r in curve]
        L += [""]
    if dagger:
        L += ["## DAgger", "", "| round | dataset frames | held-out L2 (m) | closed-loop DS | success |", "|---|---|---|---|---|"]
        L += [f"| {r['round']} | {r['dataset_frames']} | {_f(r['val_l2_m'])} | {_f(r['closed_loop']['driving_score'], 1)} | "
              f"{_f(r['closed_loop']['success_rate'], 0)} % |" for r in dagger["rounds"]]
        shipped = next((r["round"] for r in dagger["rounds"] if Path(r["checkpoint"]).resolve() == Path(ckpt).resolve()), None)
        L += ["", f"Closed loop on the `driving` suite, development seeds {cfg.dagger_val_seeds}. Shipped: "
              + (f"round {shipped}" if shipped is not None else "the base model")
              + f" (`dagger_choice` = {cfg.dagger_choice}).", ""]
    if ol:
        L += ["## Open loop (held-out episodes)", "",
              f"`dualdrive eval-openloop --agent e2e --checkpoint dualdrive/agents/e2e/default/model.safetensors "
              f"--data {out}/val --out {out}/openloop.json` — {ol['episodes']} episodes, {ol['frames']} frames.", "",
              "| | 1 s | 2 s | 3 s | avg |", "|---|---|---|---|---|",
              f"| L2 of the plan vs the expert's (m) | {_f(ol['l2_1s_m'], 2)} | {_f(ol['l2_2s_m'], 2)} | "
              f"{_f(ol['l2_3s_m'], 2)} | {_f(ol['l2_avg_m'], 2)} |",
              "| plan collision rate (model) | " + " | ".join(_pct(ol[f'collision_{h}s']) for h in (1, 2, 3))
              + f" | {_pct(ol['collision_avg'])} |",
              "| plan collision rate (the expert's own plan) | "
              + " | ".join(_pct(ol[f'expert_plan_collision_{h}s']) for h in (1, 2, 3)) + " | |", "",
              "These are ours, on our simulator's held-out episodes. DriveVLM-Dual reports 0.15/0.29/0.48 m "
              "on nuScenes — a different data set, sensor rig and horizon convention: not comparable.", ""]
    cl = [(p.stem, _read(p)) for p in sorted((out / "closed_loop").glob("*.json")) if not p.name.endswith("jsonl")]
    if cl:
        L += ["## Closed loop (evaluation seeds)", "", "| suite | seeds | DS | RC | success | command |", "|---|---|---|---|---|---|"]
        for suite, r in cl:
            s = r["summary"]
            L += [f"| {suite} | {r['meta']['seeds']} | {s['driving_score']['mean']:.1f} | {s['route_completion']['mean']:.1f} | "
                  f"{s['success_rate']['mean']:.0f} % | `{eval_command(suite, r['meta'])}` |"]
        L += ["", "The agent as shipped: the network's plan, sped up where the network asked at the speed limit would hold "
              "it (the speed probe, `dualdrive/agents/e2e/probe.py`), through the plan guard "
              "(`dualdrive/agents/guard.py`: the LiDAR, and the radar at speed), backing out of its start spot to the "
              "end (`dualdrive/agents/e2e/leaving.py`), stopped short of a junction whose light the camera shows red "
              "(`dualdrive/agents/e2e/lights.py`: a rule, the network does not read the lamp's colour), kept within "
              "the route's lane through left turns (`dualdrive/agents/e2e/turn_keeping.py`: the network cuts "
              "them into the opposite lanes), held 3 m into a junction it turns left at while oncoming traffic would "
              "reach the turn (`dualdrive/agents/e2e/yielding.py`), laid across to the next lane where the "
              "navigation asks for a lane change and the LiDAR shows a gap (`dualdrive/agents/e2e/lane_change.py`: "
              "the network keeps its lane), and in car "
              "parks driven by the modular pipeline's parking function (`dualdrive/agents/e2e/park_assist.py`: the "
              "network does not park); `DUALDRIVE_E2E_LEAVING=0 ... --no-guard --no-probe --no-lights "
              "--no-park-assist --no-yield --no-turn-keeping --no-lane-change` drives the network alone. DAgger's rounds above drove and were scored without them.", ""]
    if lat:
        L += ["## Speed", "", f"- {lat['ms_mean']:.1f} ms per decision (mean; p95 {lat['ms_p95']:.1f} ms; CPU "
              f"{lat['cpu_ms_mean']:.1f} ms; network alone {lat['model_ms_mean']:.1f} ms) at {lat['threads']} thread, "
              "observation -> Plan (`dualdrive bench` reports it too)", ""]
    times = {**_collection_times(out), **times}
    if times:
        from dualdrive.training.pipeline import STAGES
        ordered = {k: times[k] for k in STAGES if k in times}
        L += ["## Pipeline wall time (this machine)", "", ", ".join(f"{k} {v:.0f} s" for k, v in ordered.items())
              + f"; total {sum(ordered.values()) / 60:.1f} min", ""]
    path = ship / "MODEL_CARD.md"
    path.write_text("\n".join(L))
    return path


def _architecture(ckpt: Path) -> str:
    """In words, from the checkpoint's sidecar: which sensors are fused and how the plan is read out."""
    from dualdrive.agents.e2e.checkpoint import sidecar_path
    from dualdrive.agents.e2e.config import E2EConfig
    meta = _read(sidecar_path(ckpt)) or {}
    try:
        cfg = E2EConfig.from_dict(meta.get("config", {}))
    except ValueError:
        return "TransFuser-like fusion"
    sensors = "camera + LiDAR BEV" + (f" + radar ({cfg.radar_returns} returns)" if cfg.radar_returns else "")
    plans = "one 8-pose plan per gear, the gear head choosing" if cfg.plan_per_gear else "one 8-pose plan and a gear"
    extras = [x for on, x in ((cfg.accel_input, "the odometry's acceleration as an input"),
                              (cfg.plan_prior == "route", "the forward plan a departure from the route at the current speed"),
                              (cfg.lead_head, "an auxiliary head for the car ahead"),
                              (cfg.radar_route_frame, "each radar return also placed on the route"),
                              (cfg.history, "the speed and radar returns of a second ago as inputs")) if on]
    return f"TransFuser-like {sensors} fusion; {plans}" + "".join(f"; {x}" for x in extras)


def _collection_times(out: Path) -> dict[str, float]:
    """Wall seconds of the collections, from their own record (a collection run outside the pipeline counts too)."""
    res = {}
    for stage, d in (("collect", "demos"), ("collect-val", "val")):
        meta = _read(out / d / "dataset.json")
        if meta:
            res[stage] = sum(r.get("wall_s", 0.0) for r in meta.get("runs", []) if r.get("collected", 0) > 0)
    return res


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.1f} %"
