"""Summaries with bootstrap confidence intervals, and paired comparisons of two runs."""
from __future__ import annotations

import numpy as np
from scipy import stats

CI_RESAMPLES = 2000
CI_SEED = 0  # fixed: the same episodes always give the same interval
SUMMARY_METRICS = ("driving_score", "route_completion", "infraction_score", "success_rate", "pdms", "nc", "dac",
                   "ttc", "ep", "comfort", "parking_position_error_m", "parking_heading_error_deg", "gear_changes",
                   "time_to_park_s", "instruction_honoured", "duration_s")  # wall time varies run to run: it goes in meta, not here


def mean_ci(values: list[float] | np.ndarray) -> dict[str, float | int | list[float]]:
    """Mean, standard deviation and a percentile-bootstrap 95% interval of the mean."""
    x = np.asarray([v for v in values if v is not None], float)
    if len(x) == 0:
        return {"mean": None, "std": None, "ci95": [None, None], "n": 0}
    if len(x) == 1 or np.all(x == x[0]):
        lo = hi = float(x.mean())
    else:
        r = stats.bootstrap((x,), np.mean, n_resamples=CI_RESAMPLES, confidence_level=0.95, method="percentile",
                            rng=np.random.default_rng(CI_SEED))
        lo, hi = float(r.confidence_interval.low), float(r.confidence_interval.high)
    return {"mean": float(x.mean()), "std": float(x.std(ddof=1)) if len(x) > 1 else 0.0, "ci95": [lo, hi], "n": int(len(x))}


def summarize(episodes: list[dict]) -> dict:
    out = {}
    for k in SUMMARY_METRICS:
        vals = [e.get(k) for e in episodes if e.get(k) is not None]
        if vals:
            out[k] = mean_ci(vals)
    out["episodes"] = len(episodes)
    out["failed_episodes"] = sum(e.get("status") != "ok" for e in episodes)
    counts: dict[str, int] = {}
    for e in episodes:
        for k, n in (e.get("infractions") or {}).items():
            counts[k] = counts.get(k, 0) + n
    out["infraction_counts"] = counts
    return out


def compare_metric(a: list[dict], b: list[dict], metric: str) -> dict | None:
    """Difference b - a of a metric's mean with a 95% bootstrap interval. When the runs share
    episodes (same scenario and seed) only those are compared, pairwise, which removes the
    scenario-to-scenario variance; otherwise the two means are compared unpaired. With fewer than
    two values on a side there is no interval, and nothing is called significant."""
    ka = {(e["scenario"], e["seed"]): e.get(metric) for e in a if e.get(metric) is not None}
    kb = {(e["scenario"], e["seed"]): e.get(metric) for e in b if e.get(metric) is not None}
    if not ka or not kb:
        return None
    common = sorted(set(ka) & set(kb))
    rng = np.random.default_rng(CI_SEED)
    if common:
        xa, xb = np.array([ka[k] for k in common], float), np.array([kb[k] for k in common], float)
        d = xb - xa
        n = len(d)
        if n < 2:
            lo = hi = None
        elif np.all(d == d[0]):
            lo = hi = float(d[0])
        else:
            r = stats.bootstrap((d,), np.mean, n_resamples=CI_RESAMPLES, method="percentile", rng=rng)
            lo, hi = float(r.confidence_interval.low), float(r.confidence_interval.high)
        paired = True
    else:
        xa, xb = np.array(list(ka.values()), float), np.array(list(kb.values()), float)
        n = min(len(xa), len(xb))
        if n < 2:
            lo = hi = None
        elif np.all(xa == xa[0]) and np.all(xb == xb[0]):
            lo = hi = float(xb.mean() - xa.mean())
        else:
            r = stats.bootstrap((xa, xb), lambda p, q, axis=-1: np.mean(q, axis=axis) - np.mean(p, axis=axis),
                                n_resamples=CI_RESAMPLES, method="percentile", rng=rng)
            lo, hi = float(r.confidence_interval.low), float(r.confidence_interval.high)
        paired = False
    significant = lo is not None and n >= 2 and (lo > 0 or hi < 0)
    return {"a": float(xa.mean()), "b": float(xb.mean()), "diff": float(xb.mean() - xa.mean()), "ci95": [lo, hi],
            "paired": paired, "n": n, "significant": bool(significant),
            "unshared": len(ka) + len(kb) - 2 * len(common) if paired else None}
