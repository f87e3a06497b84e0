"""Scoring the driving VLM on held-out episodes: ask, record, score, as separate steps.

:func:`predict` runs a backend over a dataset's frames and returns one record per frame (the raw
text, the parsed answer or the parse error, the latency); :func:`score` is a pure function of those
records and the ground truth, so it can be re-run on a saved ``predictions.jsonl``.

Metrics: meta-action accuracy (first action, also averaged over the actions so rare ones count; whole
sequence exact), critical-object recall (the
subjects of the ground-truth analysis that the prediction mentions in its analysis or objects), text
scores (sacreBLEU's corpus BLEU and chrF over whole answers, chrF over decisions), waypoint L2 at
each horizon, the share of answers that parse, and latency: wall time per answer, and the CPU time
the answer took (what it costs one free core; on a shared machine the wall time also counts waiting). Two reference points come with them:
the most frequent first action of the held-out set, and constant-velocity waypoints from the
prompt's speed (straight ahead at that speed), which any useful model must beat.
"""
from __future__ import annotations

import json
import re
import time
from collections import Counter
from pathlib import Path
from typing import Callable

import numpy as np

from dualdrive.vlm.answer import WAYPOINT_HORIZONS_S, VLMAnswer
from dualdrive.vlm.backend import VLMBackend
from dualdrive.vlm.data import load_frames

_SPEED_RE = re.compile(r"speed (\d+) m/s")


def predict(backend: VLMBackend, data_dir: str | Path, max_frames: int | None = None,
            on_frame: Callable[[int, int], None] | None = None) -> list[dict]:
    frames = load_frames(Path(data_dir))
    n = len(frames) if max_frames is None else min(max_frames, len(frames))
    # an even spread over the episodes when only some frames are asked for
    idx = np.linspace(0, len(frames) - 1, n).round().astype(int) if n < len(frames) else np.arange(n)
    out = []
    for k, i in enumerate(idx):
        r = frames.records[i]
        c0 = time.process_time()
        reply = backend.ask(frames.images[i], r["prompt"])
        cpu_s = time.process_time() - c0  # what the answer costs a core of its own, whatever else the machine runs
        out.append({"scenario": r["scenario"], "seed": r["seed"], "frame": r["frame"], "prompt": r["prompt"],
                    "truth": r["answer"], "truth_text": r["text"], "text": reply.text,
                    "answer": reply.answer.to_dict() if reply.answer else None, "error": reply.error,
                    "latency_s": reply.latency_s, "cpu_s": cpu_s, "confidence": reply.confidence})
        if on_frame:
            on_frame(k + 1, n)
    return out


def score(records: list[dict]) -> dict:
    """Every metric of the module docstring from prediction records (see :func:`predict`)."""
    import sacrebleu
    if not records:
        raise ValueError("no prediction records to score")
    truths = [VLMAnswer.from_dict(r["truth"]) for r in records]
    preds = [VLMAnswer.from_dict(r["answer"]) if r["answer"] else None for r in records]
    n = len(records)
    first = sum(p is not None and p.meta_actions[0] == t.meta_actions[0] for t, p in zip(truths, preds)) / n
    exact = sum(p is not None and p.meta_actions == t.meta_actions for t, p in zip(truths, preds)) / n
    majority, majority_n = Counter(t.meta_actions[0] for t in truths).most_common(1)[0]
    per_action = _per_action(truths, preds)
    lat = np.array([r["latency_s"] for r in records]) * 1000.0
    cpu = np.array([r.get("cpu_s", np.nan) for r in records]) * 1000.0
    return {
        "frames": n, "parsed": sum(p is not None for p in preds) / n,
        "meta_first_accuracy": first, "meta_sequence_exact": exact,
        "meta_first_macro_accuracy": float(np.mean([d["accuracy"] for d in per_action.values()])),
        "meta_first_by_action": per_action,
        "majority_first_action": {"action": majority, "accuracy": majority_n / n},
        **_recall(truths, preds),
        "bleu": sacrebleu.corpus_bleu([r["text"] for r in records], [[r["truth_text"] for r in records]]).score,
        "chrf": sacrebleu.corpus_chrf([r["text"] for r in records], [[r["truth_text"] for r in records]]).score,
        "decision_chrf": sacrebleu.corpus_chrf([p.decision if p else "" for p in preds],
                                               [[t.decision for t in truths]]).score,
        **_waypoints(truths, preds, [r["prompt"] for r in records]),
        "latency_ms": {"mean": float(lat.mean()), "p50": float(np.percentile(lat, 50)),
                       "p95": float(np.percentile(lat, 95)), "max": float(lat.max())},
        "cpu_ms": {"mean": float(np.mean(cpu)), "p95": float(np.percentile(cpu, 95)), "max": float(np.max(cpu))},
        "answer_words_mean": float(np.mean([len(r["text"].split()) for r in records])),
        **_calibration(truths, preds, [r.get("confidence") for r in records]),
    }


CONFIDENCE_BINS = (0.0, 0.5, 0.7, 0.9, 1.0 + 1e-9)
CONFIDENCE_THRESHOLDS = (0.0, 0.5, 0.7, 0.9)


def _calibration(truths: list[VLMAnswer], preds: list[VLMAnswer | None], conf: list[float | None]) -> dict:
    """How far the model's confidence in its first meta-action can be trusted (backends that give one):
    first-action accuracy per confidence bin, and for each predicted first action, precision and recall
    when only answers at or above a threshold count (what a dual agent that gates on confidence acts on)."""
    rows = [(t.meta_actions[0], p.meta_actions[0], c) for t, p, c in zip(truths, preds, conf)
            if p is not None and c is not None]
    if not rows:
        return {}
    bins = []
    for lo, hi in zip(CONFIDENCE_BINS[:-1], CONFIDENCE_BINS[1:]):
        sel = [t == p for t, p, c in rows if lo <= c < hi]
        bins.append({"from": lo, "to": min(hi, 1.0), "frames": len(sel),
                     "accuracy": float(np.mean(sel)) if sel else float("nan")})
    by_action: dict[str, dict] = {}
    for a in sorted({p for _, p, _ in rows} | {t for t, _, _ in rows}):
        support = sum(t == a for t, _, _ in rows)
        by_action[a] = {"support": support}
        for th in CONFIDENCE_THRESHOLDS:
            said = [t == a for t, p, c in rows if p == a and c >= th]
            by_action[a][f"p>={th:g}"] = {"said": len(said), "precision": float(np.mean(said)) if said else float("nan"),
                                          "recall": sum(said) / support if support else float("nan")}
    return {"confidence_bins": bins, "confidence_by_action": by_action}


def _per_action(truths: list[VLMAnswer], preds: list[VLMAnswer | None]) -> dict:
    out: dict[str, dict] = {}
    for t, p in zip(truths, preds):
        a = t.meta_actions[0]
        d = out.setdefault(a, {"frames": 0, "correct": 0})
        d["frames"] += 1
        d["correct"] += int(p is not None and p.meta_actions[0] == a)
    return {a: {**d, "accuracy": d["correct"] / d["frames"]} for a, d in sorted(out.items())}


def _recall(truths: list[VLMAnswer], preds: list[VLMAnswer | None]) -> dict:
    """Critical-object recall: of the ground truth's critical subjects, the share the prediction names
    (in its analysis or its objects; the light counts when the predicted light state matches)."""
    hit, total, exact_hit, exact_total = 0, 0, 0, 0
    by: dict[str, list[int]] = {}
    for t, p in zip(truths, preds):
        named = set() if p is None else (p.critical_subjects | {o.kind for o in p.objects})
        for f in t.analysis:
            ok = p is not None and (p.light == f.state if f.subject == "light" else f.subject in named)
            hit += ok
            total += 1
            exact_hit += p is not None and f in p.analysis
            exact_total += 1
            by.setdefault(f.subject, [0, 0])
            by[f.subject][0] += ok
            by[f.subject][1] += 1
    return {"critical_recall": hit / total if total else float("nan"), "critical_total": total,
            "finding_exact_recall": exact_hit / exact_total if exact_total else float("nan"),
            "critical_recall_by_subject": {s: {"recall": h / n, "count": n} for s, (h, n) in sorted(by.items())}}


def _waypoints(truths: list[VLMAnswer], preds: list[VLMAnswer | None], prompts: list[str]) -> dict:
    l2: dict[int, list[float]] = {h: [] for h in WAYPOINT_HORIZONS_S}
    cv: dict[int, list[float]] = {h: [] for h in WAYPOINT_HORIZONS_S}
    missing = 0
    for t, p, prompt in zip(truths, preds, prompts):
        m = _SPEED_RE.search(prompt)
        v = float(m.group(1)) if m else 0.0
        for k, h in enumerate(WAYPOINT_HORIZONS_S):
            if k >= len(t.waypoints_m):
                continue
            tx, ty = t.waypoints_m[k]
            cv[h].append(float(np.hypot(tx - v * h, ty)))
            if p is None or k >= len(p.waypoints_m):
                missing += 1
                continue
            px, py = p.waypoints_m[k]
            l2[h].append(float(np.hypot(px - tx, py - ty)))
    return {"waypoint_l2_m": {f"{h}s": float(np.mean(v)) if v else float("nan") for h, v in l2.items()},
            "waypoint_missing": missing,
            "constant_velocity_l2_m": {f"{h}s": float(np.mean(v)) if v else float("nan") for h, v in cv.items()}}


def evaluate_vlm(checkpoint: str | Path | None, data_dir: str | Path, out_dir: str | Path | None = None,
                 max_frames: int | None = None, threads: int = 1,
                 on_frame: Callable[[int, int], None] | None = None) -> dict:
    """Predict with the builtin backend and score; with ``out_dir``, write predictions.jsonl and scores.json."""
    from dualdrive.vlm.backend import BuiltinBackend
    backend = BuiltinBackend(checkpoint, threads=threads)
    records = predict(backend, data_dir, max_frames, on_frame)
    scores = score(records)
    scores["checkpoint"] = str(checkpoint) if checkpoint else "shipped default"
    scores["data_dir"] = str(data_dir)
    scores["threads"] = threads
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
        (out / "scores.json").write_text(json.dumps(scores, indent=2))
    return scores
