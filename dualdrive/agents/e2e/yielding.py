"""The left-turn yield rule: System 1 waits at the junction's entry while oncoming traffic would reach its turn.

Why a rule: on a green without a turn arrow (a permissive left) the driver turning left must let the oncoming
traffic through. The shipped network does not: on P2P 5003 it turns at 6 m/s in front of a car setting off from
the opposite stop line (the radar had it 23 m ahead, closing at 4 m/s) and is hit 2 s later. Its plan guard
cannot help there: its radar check reads a target's velocity along the ego's heading, which is not the road's
through a turn, so it is off on turning plans (``GuardConfig.radar_max_turn_deg``). Production stacks keep
such checks beside the learned planner; this is gap acceptance as traffic engineering describes it (a driver
turns left into a gap of at least a critical gap, about 4 to 5 s, HCM 2010 ch. 19).

What it does: while the route's next junction is a left turn and the car has not yet begun to turn (its yaw since
the approach began, from the odometry's yaw rate, under ``committed_deg``), every radar return ahead on the left
that approaches (its ground speed along the ego's heading below ``-min_closing_mps``; the heading is still the
road's there) is given the time it needs to reach the turn's conflict zone, ``conflict_m`` past the junction's
entry. Any that arrives within ``gap_s`` holds the car: the plan is re-timed
(:func:`dualdrive.planning.retime.retime_plan`) to stand ``wait_in_m`` into the junction (entered on the green, as a
driver waits in the box to turn), where a stop is still possible at ``max_decel_mps2``; otherwise the car is left to
go on. A red light ahead is the red-light rule's: it stops the car before the junction first. A car already
turning is never held back: it clears the oncoming lanes fastest by going on.

The rule only ever slows a forward plan; the network's path is kept. Off with ``--no-yield`` (``drive``,
``eval``), ``$DUALDRIVE_E2E_YIELD=0`` or ``E2EAgent(yielding=False)``, and in
:func:`dualdrive.agents.e2e.agent.network_alone`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from dualdrive.agents.e2e.lights import junction_distance
from dualdrive.agents.guard import radar_along_heading
from dualdrive.world.commands import JUNCTION_COMMANDS, Command

DT_S = 0.1  # one decision per tick of the drive loop
ENTRY_M = 0.5  # the navigation's distance this short: the car is at the junction's entry
REACHED_M = 4.0  # ... this short the last time the turn was in view: the car went on into the junction


@dataclass(frozen=True)
class YieldRuleConfig:
    enabled: bool = True
    watch_m: float = 30.0  # the rule looks out this close to the junction's entry
    gap_s: float = 5.0  # oncoming traffic arriving at the conflict zone sooner than this is not let pass
    conflict_m: float = 10.0  # the turn crosses the oncoming lanes about this far past the entry
    min_closing_mps: float = 0.5  # a return closing slower than this is standing (a queue, a parked car)
    passed_m: float = 3.0  # a return this far past the conflict zone has gone by
    # an oncoming car is taken to speed up at this rate up to ``max_speed_mps``: at a green both queues set off
    # together, and a car leaving the opposite stop line at 1 m/s is at the conflict zone 20 m on in 4 s, not 20
    assumed_accel_mps2: float = 1.5
    max_speed_mps: float = 15.0
    max_lateral_m: float = 15.0  # oncoming lanes: left of the ego up to this far (right-hand traffic)
    min_lateral_m: float = 1.0  # ... and not in the ego's own lane
    max_azimuth_deg: float = 40.0  # wider, a return's velocity along the heading is not read reliably
    # where the car waits: its centre this far into the junction. Entered on a green, the crossing is the light it
    # entered on, as a driver waits in the box to turn; waiting before the entry, a light turning red meanwhile (the
    # camera no longer sees it there) made the turn a red-light run (P2P 5002, 5005, 5006)
    wait_in_m: float = 3.0
    max_decel_mps2: float = 6.0  # a stop needing more than this is not made: the car goes on
    committed_deg: float = 20.0  # turned this far since the approach began: the car is turning, let it go

    def __post_init__(self) -> None:
        positive = (self.watch_m, self.gap_s, self.assumed_accel_mps2, self.max_speed_mps, self.max_decel_mps2,
                    self.committed_deg)
        non_negative = (self.conflict_m, self.min_closing_mps, self.passed_m, self.wait_in_m)
        if min(positive) <= 0 or min(non_negative) < 0 or not 0 <= self.min_lateral_m < self.max_lateral_m or \
                not 0 < self.max_azimuth_deg < 90:
            raise ValueError("yield rule: watch_m, gap_s, assumed_accel_mps2, max_speed_mps, max_decel_mps2 and "
                             "committed_deg must be > 0; conflict_m, min_closing_mps, passed_m and wait_in_m >= 0; "
                             "0 <= min_lateral_m < max_lateral_m; 0 < max_azimuth_deg < 90")


def turn_ahead(obs: dict[str, Any]) -> int | None:
    """The turn of the route's next junction (a :data:`JUNCTION_COMMANDS` member), or None where none is in view."""
    command = int(np.asarray(obs.get("command", [-1])).reshape(-1)[0])
    if command in JUNCTION_COMMANDS:
        return command
    cmds = [int(c) for c in np.asarray(obs.get("route_command", []), int).reshape(-1)]
    return next((c for c in cmds if c in JUNCTION_COMMANDS), None)


def oncoming(returns: np.ndarray | None, speed_mps: float, cfg: YieldRuleConfig) -> np.ndarray:
    """(M, 3) ego-frame x, y and ground speed along the ego's heading (negative: closing) of the radar returns
    that approach in the lanes to the left, ahead (read as the plan guard reads the radar,
    :func:`dualdrive.agents.guard.radar_along_heading`)."""
    r = np.asarray(returns, float).reshape(-1, 4) if returns is not None and np.asarray(returns).size \
        else np.zeros((0, 4))
    r = r[np.all(np.isfinite(r), axis=1) & (np.abs(r[:, 1]) <= np.radians(cfg.max_azimuth_deg))]
    xy, v_along = radar_along_heading(r, speed_mps)
    x, y = xy[:, 0], xy[:, 1]
    keep = (x > 0) & (y >= cfg.min_lateral_m) & (y <= cfg.max_lateral_m) & (v_along < -cfg.min_closing_mps)
    return np.column_stack([x, y, v_along])[keep]


def arrival_time(distance_m: np.ndarray, speed_mps: np.ndarray, cfg: YieldRuleConfig) -> np.ndarray:
    """Seconds for cars ``distance_m`` away, now at ``speed_mps``, speeding up at ``cfg.assumed_accel_mps2`` to
    ``cfg.max_speed_mps``, to cover that distance."""
    d, v0, a = np.asarray(distance_m, float), np.minimum(np.asarray(speed_mps, float), cfg.max_speed_mps), \
        cfg.assumed_accel_mps2
    t_acc = (cfg.max_speed_mps - v0) / a
    d_acc = v0 * t_acc + 0.5 * a * t_acc ** 2
    accelerating = (-v0 + np.sqrt(v0 * v0 + 2 * a * d)) / a
    return np.where(d <= d_acc, accelerating, t_acc + (d - d_acc) / cfg.max_speed_mps)


class LeftTurnYield:
    """Call :meth:`stop_distance` once a decision: metres the plan may run (None: nothing to yield to)."""

    def __init__(self, config: YieldRuleConfig | None = None) -> None:
        self.cfg = config or YieldRuleConfig()
        self.reset()

    def reset(self) -> None:
        self.turned_rad = 0.0  # yaw since the approach to the left turn began
        self.inside_m = 0.0  # driven since the car reached the junction's entry
        self.approaching = False
        self.at_entry = False  # the car was at (or past) the junction's entry when the turn was last in view
        self.yielded = 0  # decisions held back, for the episode's record

    def stop_distance(self, obs: dict[str, Any], speed_mps: float, radar: np.ndarray | None) -> float | None:
        if not self.cfg.enabled:
            return None
        dist = junction_distance(obs)
        if turn_ahead(obs) != Command.TURN_LEFT or dist is None or dist > self.cfg.watch_m:
            # once the car is past the entry, the navigation's progress runs into the turn's connector and its
            # command is already the next manoeuvre's (urban 5001: the rule let go 0.4 s after the entry, at 3 m/s,
            # and the car turned into the oncoming lanes): the turn is still the car's until it has turned or
            # driven past the conflict zone, and how far in it is, the odometry says
            if not (self.approaching and self.at_entry and self.inside_m < self.cfg.conflict_m
                    and abs(self.turned_rad) <= np.radians(self.cfg.committed_deg)):
                self.approaching, self.turned_rad, self.inside_m, self.at_entry = False, 0.0, 0.0, False
                return None
            dist = 0.0
        yaw_rate = float(np.asarray(obs.get("yaw_rate_rps", [0.0])).reshape(-1)[0])
        self.turned_rad = self.turned_rad + yaw_rate * DT_S if self.approaching and np.isfinite(yaw_rate) else 0.0
        self.approaching = True
        if abs(self.turned_rad) > np.radians(self.cfg.committed_deg):
            return None
        v = max(0.0, speed_mps) if np.isfinite(speed_mps) else 0.0
        # the navigation's distance reaches 0 at the entry and stays there: past it, the odometry says how far in
        self.inside_m = self.inside_m + v * DT_S if dist <= ENTRY_M else 0.0
        self.at_entry = dist <= REACHED_M
        to_entry = dist if dist > ENTRY_M else -self.inside_m
        targets = oncoming(radar, v, self.cfg)
        if not len(targets):
            return None
        to_conflict = targets[:, 0] - (to_entry + self.cfg.conflict_m)
        arrival_s = arrival_time(np.maximum(to_conflict, 0.0), -targets[:, 2], self.cfg)
        if not np.any((to_conflict > -self.cfg.passed_m) & (arrival_s < self.cfg.gap_s)):
            return None
        stop = max(0.0, to_entry + self.cfg.wait_in_m)
        if v * v / (2 * self.cfg.max_decel_mps2) > stop + 0.5:
            return None  # too late to stop where the car would wait: on through
        self.yielded += 1
        return stop
