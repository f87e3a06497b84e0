"""The instruction parser on a held-out set of phrasings with their expected readings.

A phrasing is right when the status matches and, for `ok`, every slot matches (none missing, none
extra); for `refused` and `clarify` only the status is scored. Refusal recall (of the phrasings
that must be refused, the share refused) is reported on its own: it is the number that matters
for safety. The threshold sweep re-combines the same clause readings, so it costs nothing; the
headline figure is at the parser's default threshold, which was fixed before the held-out set
was read.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import yaml

from dualdrive.instructions.intent import SLOTS, ClauseReading, Status
from dualdrive.instructions.parser import InstructionError, InstructionParser, combine

HELDOUT = Path(__file__).resolve().parents[2] / "data" / "instructions" / "heldout.yaml"
SWEEP = (0.2, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.7)


def load_heldout(path: Path) -> list[dict]:
    """[{text, expect: {status, <slot>: value...}}]; a malformed entry is an error naming it."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as e:
        raise InstructionError(f"cannot read the instruction set {path}: {e}") from None
    if not isinstance(data, list) or not data:
        raise InstructionError(f"{path}: expected a non-empty list of {{text, expect}} entries")
    statuses = {s.value for s in Status}
    for i, e in enumerate(data):
        where = f"{path} entry {i + 1}"
        if not isinstance(e, dict) or not isinstance(e.get("text"), str) or not isinstance(e.get("expect"), dict):
            raise InstructionError(f"{where}: needs `text` (a string) and `expect` (a mapping)")
        exp = e["expect"]
        if exp.get("status") not in statuses:
            raise InstructionError(f"{where}: expect.status must be one of {sorted(statuses)}")
        for k, v in exp.items():
            if k != "status" and (k not in SLOTS or v not in SLOTS[k]):
                raise InstructionError(f"{where}: {k}: {v} is not a slot value ({SLOTS})")
    return data


def _correct(status: Status, slots: dict, expect: dict) -> bool:
    if status.value != expect["status"]:
        return False
    return status != Status.OK or slots == {k: v for k, v in expect.items() if k != "status"}


def _scores(rows: list[dict]) -> dict:
    n = len(rows)
    by_status = {}
    for s in Status:
        sub = [r for r in rows if r["expect"]["status"] == s.value]
        if sub:
            by_status[s.value] = {"n": len(sub), "accuracy": float(np.mean([r["correct"] for r in sub])),
                                  "predicted": {t.value: sum(r["status"] == t.value for r in sub) for t in Status}}
    ok = [r for r in rows if r["expect"]["status"] == "ok"]
    per_slot = {}
    for slot in SLOTS:
        sub = [r for r in ok if slot in r["expect"]]
        if sub:
            per_slot[slot] = float(np.mean([r["intent"].get(slot) == r["expect"][slot] for r in sub]))
    must_refuse = [r for r in rows if r["expect"]["status"] == "refused"]
    wrongly_refused = [r for r in rows if r["expect"]["status"] != "refused" and r["status"] == "refused"]
    return {
        "n": n,
        "accuracy": float(np.mean([r["correct"] for r in rows])),
        "status_accuracy": float(np.mean([r["status"] == r["expect"]["status"] for r in rows])),
        "by_status": by_status,
        "slot_recall_on_ok": per_slot,
        "refusal_recall": float(np.mean([r["status"] == "refused" for r in must_refuse])) if must_refuse else None,
        "false_refusals": len(wrongly_refused),
    }


def evaluate_instructions(parser: InstructionParser, entries: list[dict]) -> dict:
    rows, latencies = [], []
    for e in entries:
        t = time.perf_counter()
        u = parser.understand(e["text"])
        latencies.append(time.perf_counter() - t)
        rows.append({"text": e["text"], "expect": e["expect"], "status": u.status.value, "intent": u.intent.slots(),
                     "confidence": u.confidence, "reply": u.reply, "correct": _correct(u.status, u.intent.slots(), e["expect"]),
                     "clauses": [(c.text, c.label, c.confidence) for c in u.clauses]})
    summary = _scores(rows)
    summary["threshold"] = parser.config.threshold
    summary["latency_ms_mean"] = 1000 * float(np.mean(latencies))
    sweep = {}
    for th in SWEEP:  # the same clause readings, combined at another threshold
        swept = []
        for r in rows:
            u = combine(r["text"], [ClauseReading(*c) for c in r["clauses"]], th)
            swept.append({**r, "status": u.status.value, "intent": u.intent.slots(),
                          "correct": _correct(u.status, u.intent.slots(), r["expect"])})
        s = _scores(swept)
        sweep[str(th)] = {"accuracy": s["accuracy"], "refusal_recall": s["refusal_recall"], "false_refusals": s["false_refusals"]}
    summary["threshold_sweep"] = sweep
    return {"summary": summary, "rows": [{k: v for k, v in r.items() if k != "clauses"} | {"clauses": [list(c) for c in r["clauses"]]}
                                         for r in rows]}
