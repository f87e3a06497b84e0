"""Two open-loop runs on the same human clips compared: the paired difference of a planner's error, with a 95 %
bootstrap interval over recorded vehicles.

Overlapping NGSIM scenario files repeat the same cars (``USA_Lanker-1_1_T-1`` and ``USA_Lanker-1_15_T-1`` hold the
same vehicles at the same times), so the test split's 665 clips come from 131 vehicles: resampling clips would
count each repeat as new evidence and draw the interval too narrow. Clips are resampled a vehicle at a time.
"""
from __future__ import annotations

import numpy as np

from dualdrive.human.pack import HumanDataError

RESAMPLES = 3000
SEED = 0  # the same two runs always give the same interval
METRICS = ("l2_3s_m",)  # what eval-openloop keeps per clip


def vehicle_key(clip_name: str) -> str:
    """``<location>-<map>/<vehicle id>`` of a clip ``<scenario>/<vehicle id>@<step>``: the scenario's map, not its
    time-window configuration, so copies of one recording in several files are one vehicle."""
    scenario, _, rest = clip_name.partition("/")
    parts = scenario.split("_")
    road = parts[1] if len(parts) > 1 else scenario  # USA_<loc>-<map>_<config>_T-1
    return f"{road}/{rest.split('@')[0]}"


def compare_openloop(a: dict, b: dict, method: str = "e2e", metric: str = "l2_3s_m") -> dict:
    """``b - a`` of ``method``'s mean ``metric`` over the clips both ``eval-openloop`` results hold, with its 95 %
    interval (a vehicle-clustered percentile bootstrap) and whether it excludes 0."""
    if metric not in METRICS:
        raise HumanDataError(f"metric {metric!r}: one of {', '.join(METRICS)}")
    va, vb = _per_clip(a, method, metric, "A"), _per_clip(b, method, metric, "B")
    common = sorted(set(va) & set(vb))
    if not common:
        raise HumanDataError("the two runs share no clip: compare runs of the same split")
    d = np.array([vb[c] - va[c] for c in common])
    _, vehicle = np.unique([vehicle_key(c) for c in common], return_inverse=True)
    groups = [np.flatnonzero(vehicle == g) for g in range(vehicle.max() + 1)]
    rng = np.random.default_rng(SEED)
    means = [d[np.concatenate([groups[g] for g in rng.integers(0, len(groups), len(groups))])].mean()
             for _ in range(RESAMPLES)]
    lo, hi = (float(x) for x in np.percentile(means, [2.5, 97.5]))
    return {"method": method, "metric": metric, "a": float(np.mean([va[c] for c in common])),
            "b": float(np.mean([vb[c] for c in common])), "diff": float(d.mean()), "ci95": [lo, hi],
            "significant": bool(lo > 0 or hi < 0), "clips": len(common), "vehicles": len(groups),
            "only_in_one": len(set(va) ^ set(vb))}


def _per_clip(res: dict, method: str, metric: str, which: str) -> dict[str, float]:
    rows = res.get("per_clip") if isinstance(res, dict) else None
    if not rows:
        raise HumanDataError(f"run {which} has no per-clip scores: give a results file written by "
                             "`dualdrive eval-openloop --out`")
    if method not in rows[0]:
        have = sorted(k for k, v in rows[0].items() if isinstance(v, dict))
        raise HumanDataError(f"run {which} has no planner {method!r}; it has {', '.join(have)}")
    return {r["clip"]: float(r[method][metric]) for r in rows if r[method].get(metric) is not None}
