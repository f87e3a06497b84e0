"""The speed-limit rule: System 1's plan is slowed in time for a lower speed limit on the route ahead.

Why a rule: the navigation gives the speed limit at each route target (``route_speed_limit_mps``, as an SD map
does), but the network reads only the limit where the car is, through the speed probe
(:mod:`dualdrive.agents.e2e.probe`), and the probe asks it to hold that limit. On urban 5004 the car came to the
roundabout at 16 m/s (the approach road's limit is 13.9 m/s, the ring's 7 m/s), could not follow the ring and drove
across its island into the traffic on it. The modular pipeline and the expert slow down for a limit ahead; this rule
does the same for System 1.

What it does: the cap is the lowest, over the route's targets, of the speed from which the car still gets down to that
target's limit braking at ``decel_mps2`` (the modular pipeline's rule: a target ``d`` m ahead with limit ``v_k`` allows
``sqrt(v_k² + 2 a max(d - spacing, 0))``), and the limit where the car is, both plus ``tolerance_mps``. A plan faster
than the cap is re-timed to it (:func:`dualdrive.planning.retime.retime_plan`: its path kept, from above at a
comfortable deceleration). The rule only ever slows a plan.

Off with ``--no-speed-limits`` (``drive``, ``eval``), ``$DUALDRIVE_E2E_SPEED_LIMITS=0`` or
``E2EAgent(speed_limits=False)``, and in :func:`dualdrive.agents.e2e.agent.network_alone`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

TARGET_SPACING_M = 8.0  # the navigation's targets lie this far apart along the route


@dataclass(frozen=True)
class SpeedLimitConfig:
    enabled: bool = True
    decel_mps2: float = 1.5  # the car gets down to a lower limit ahead braking at this (the modular pipeline's)
    tolerance_mps: float = 0.5  # the cap lies this much above the limits (a plan is not re-timed for a rounding)

    def __post_init__(self) -> None:
        if self.decel_mps2 <= 0 or self.tolerance_mps < 0:
            raise ValueError("speed-limit rule: decel_mps2 must be > 0 and tolerance_mps >= 0")


def speed_cap(obs: dict[str, Any], cfg: SpeedLimitConfig = SpeedLimitConfig()) -> float | None:
    """The highest speed the plan may have now, for the limits here and on the route ahead; None where the
    observation gives none (a stock env without limits) or the rule is off."""
    if not cfg.enabled:
        return None
    caps = []
    here = _floats(obs.get("speed_limit_mps"))
    if here.size and np.isfinite(here[0]) and here[0] > 0:
        caps.append(float(here[0]))
    ahead = _floats(obs.get("route_speed_limit_mps"))
    if ahead.size:
        d = TARGET_SPACING_M * np.arange(1, ahead.size + 1)
        ok = np.isfinite(ahead) & (ahead > 0)
        if ok.any():
            reach = np.sqrt(ahead[ok] ** 2 + 2.0 * cfg.decel_mps2 * np.maximum(d[ok] - TARGET_SPACING_M, 0.0))
            caps.append(float(reach.min()))
    return min(caps) + cfg.tolerance_mps if caps else None


def _floats(value: Any) -> np.ndarray:
    if value is None:
        return np.zeros(0)
    try:
        return np.asarray(value, float).reshape(-1)
    except (TypeError, ValueError):
        return np.zeros(0)
