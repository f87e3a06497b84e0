"""Traffic-light controllers: fixed-time plans with amber and all-red clearance.

Each signalised intersection owns four signal groups (NS straight+right, NS left, EW
straight+right, EW left). With a protected-left plan the left groups get an arrow phase of
their own before the through phase; otherwise lefts are permissive and must yield.
"""
from __future__ import annotations

from enum import IntEnum

import numpy as np

GREEN_S, LEFT_ARROW_S, AMBER_S, ALL_RED_S = 18.0, 7.0, 3.0, 2.0


class Light(IntEnum):
    RED = 0
    AMBER = 1
    GREEN = 2


def _phases(groups: list[int], protected: bool) -> list[tuple[float, dict[int, Light]]]:
    ns_sr, ns_l, ew_sr, ew_l = groups
    out: list[tuple[float, dict[int, Light]]] = []
    for sr, left in ((ns_sr, ns_l), (ew_sr, ew_l)):
        if protected:
            out.append((LEFT_ARROW_S, {left: Light.GREEN}))
        out.append((GREEN_S, {sr: Light.GREEN, left: Light.GREEN}))
        out.append((AMBER_S, {sr: Light.AMBER, left: Light.AMBER}))
        out.append((ALL_RED_S, {}))
    return out


class SignalController:
    """Deterministic light states at time ``t`` from the plans and per-intersection offsets."""

    def __init__(self, n_groups: int, plans: list[dict], offsets_s: np.ndarray) -> None:
        self.n_groups = n_groups
        self._tables = []
        for plan, off in zip(plans, offsets_s):
            phases = _phases(plan["groups"], plan["protected_left"])
            ends = np.cumsum([d for d, _ in phases])
            self._tables.append((plan["groups"], phases, ends, float(off)))

    def states(self, t_s: float) -> np.ndarray:
        out = np.full(max(self.n_groups, 1), int(Light.RED), dtype=np.int8)  # never empty: kernels index it
        for groups, phases, ends, off in self._tables:
            tc = (t_s + off) % ends[-1]
            k = int(np.searchsorted(ends, tc, side="right"))
            for g, state in phases[k][1].items():
                out[g] = int(state)
        return out

    def time_in_state(self, t_s: float, group: int) -> float:
        """Seconds since ``group`` last changed state (used by pedestrians to start crossing early in green)."""
        now = self.states(t_s)[group]
        back = 0.0
        while back < 120.0 and self.states(t_s - back - 0.5)[group] == now:
            back += 0.5
        return back
