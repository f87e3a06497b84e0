"""The turn-keeping rule: through a junction turn, System 1's plan is held within the route's lane.

Why a rule: the shipped network cuts its turns. On P2P 5003 and 5001 it turns left on a path up to 5 m inside
the route's connector, ends in the opposite lanes of the road it turns into, facing their queue, and is hit by
the first car that moves off (the plan guard stops it there, too late). The route the navigation gives is the
lane to take (its targets 8 m apart along the lanes' centre lines), so the plan can be kept to it: lane keeping,
as driver assistance does it, limited to the turns where the network leaves the lane.

What it does: from ``watch_m`` before the entry of a junction where the route turns left until the car
has driven ``after_m`` past where the rule took over, every pose of a forward plan further than ``max_offset_m``
from the route's centre line is moved across to that distance, and the plan's headings are taken from the moved
path. The plan's progress along its path (its speed) is the network's.

Off with ``--no-turn-keeping`` (``drive``, ``eval``), ``$DUALDRIVE_E2E_TURN_KEEPING=0`` or
``E2EAgent(turn_keeping=False)``, and in :func:`dualdrive.agents.e2e.agent.network_alone`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from dualdrive.agents.base import Plan
from dualdrive.agents.e2e.lights import junction_distance
from dualdrive.agents.e2e.yielding import turn_ahead
from dualdrive.agents.modular.planning import project
from dualdrive.world.commands import Command

DT_S = 0.1  # one decision per tick of the drive loop
STANDING_MPS = 0.05  # slower than this the car stands (its time does not count towards max_hold_s; a creep does)
TARGET_SPACING_M = 8.0  # the navigation's targets lie this far apart along the route

# left turns only: the network cuts those into the opposite lanes; right turns are tight (a 8 m target spacing on
# a 10 m radius), where the route's chords themselves run a metre inside the lane
TURNS = (Command.TURN_LEFT,)


@dataclass(frozen=True)
class TurnKeepingConfig:
    enabled: bool = True
    # the rule takes over this close to the entry of a junction the route turns at: on the approach too, where a
    # left-turn pocket opens beside the through lanes (from 15 m, urban 5001 had drifted on into the through lane,
    # 4.5 m off the route at the stop line, and was hit turning from there). Urban 5000:5012 82.5 -> 90.3, P2P
    # 5000:5016 DS the same (88.5), successes 14 -> 12 (README, System 1)
    watch_m: float = 50.0
    # a lane change going on keeps the plan until this close to the junction (E2EAgent): watching from 50 m with
    # priority over a change all the way, the rule dropped changes into a left-turn lane (P2P 5002 crawled on in the
    # lane beside it and entered on red); nearer, the turn is the rule's (a change laid straight across the turn
    # drove P2P 5002 into the wrong connector, tenth session)
    over_change_m: float = 15.0
    after_m: float = 40.0  # ... and lets go after this much driving past that point (a connector is < 30 m)
    max_offset_m: float = 1.0  # a plan pose is kept this close to the route's centre line (a lane is 3.5 m)
    # a car already further off comes back at most this much across per metre along the plan (a lane change's
    # 3.5 m over 15 m): a plan is never asked to jump sideways, and a standing car's plan is left where it is
    converge_per_m: float = 0.25
    # a car this far off the route is lost, not cutting the turn: its plan is left alone (P2P 5003, lost after a
    # junction, was steered back across the lanes between)
    lost_m: float = 3.0
    # ... and the rule lets go after this long on the move, however little the car has driven (a lost car is let go
    # by lost_m). 20 s let go of urban 5007 half way round a left turn it crept through at 0.5-0.8 m/s, and the car
    # cut the rest of the turn into the opposite lanes
    max_hold_s: float = 60.0

    def __post_init__(self) -> None:
        if min(self.watch_m, self.after_m, self.max_offset_m, self.converge_per_m, self.lost_m, self.max_hold_s,
               self.over_change_m) <= 0:
            raise ValueError("turn keeping: watch_m, after_m, max_offset_m, converge_per_m, lost_m, max_hold_s and "
                             "over_change_m must be > 0")


def route_line(route_xy: np.ndarray) -> np.ndarray | None:
    """The route's centre line (ego frame) from where the ego is on it: its distinct targets with a point put in
    front one target spacing straight behind the first, along the car's heading (the car's foot on the route where
    the car runs along its lane; continued from the first two targets instead, the line swung across the lanes where
    those already curve); None for fewer than two distinct targets.
    Targets repeat where the route's polyline has a long segment (a lane change is one 30 m segment, and every
    target along it is given as its end): the line runs straight to that end."""
    r = np.asarray(route_xy, float).reshape(-1, 2)
    r = r[np.all(np.isfinite(r), axis=1)]
    if len(r):
        r = r[np.concatenate([[True], np.linalg.norm(np.diff(r, axis=0), axis=1) > 0.5])]
    if len(r) < 2:
        return None
    return np.vstack([r[0] - [TARGET_SPACING_M, 0.0], r])


def keep_within(points: np.ndarray, line: np.ndarray, max_offset_m: float | np.ndarray) -> np.ndarray:
    """Each point further than its ``max_offset_m`` from the polyline moved straight towards it, to that distance."""
    s, d = project(line, points)  # the modular planner's projection: arc length of the nearest point, offset
    s_pts = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(line, axis=0), axis=1))])
    nearest = np.column_stack([np.interp(s, s_pts, line[:, 0]), np.interp(s, s_pts, line[:, 1])])
    d = np.abs(d)
    scale = np.where(d > max_offset_m, np.asarray(max_offset_m) / np.maximum(d, 1e-9), 1.0)
    return nearest + (points - nearest) * scale[:, None]


def headings_along(xy: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """Headings of a path of poses from the ego's origin: the direction of travel into each pose (the pose's own
    heading where it does not move)."""
    prev = np.vstack([[0.0, 0.0], xy[:-1]])
    step = xy - prev
    moving = np.linalg.norm(step, axis=1) > 0.05
    return np.where(moving, np.arctan2(step[:, 1], step[:, 0]), fallback)


def keep_on_route(plan: Plan, obs: dict[str, Any], max_offset_m: float, converge_per_m: float,
                  lost_m: float = np.inf) -> Plan | None:
    """The plan with every pose further than ``max_offset_m`` from the route's centre line moved across towards
    it, no faster than ``converge_per_m`` across per metre along the plan from where the ego is (a plan is never
    asked to jump sideways, and a standing car's plan stays where it is), its headings taken from the moved path;
    None where nothing moves, the observation has no route, or the ego is ``lost_m`` or further off it (lost, not
    cutting a corner: pulled back, it would be steered across whatever lies between)."""
    line = route_line(obs.get("route_xy_ego_m", np.zeros((0, 2))))
    if line is None:
        return None
    xy = plan.poses[:, :2]
    ego_off = float(np.linalg.norm(keep_within(np.zeros((1, 2)), line, 0.0)))
    if ego_off >= lost_m:
        return None
    along = np.cumsum(np.linalg.norm(np.diff(np.vstack([[0.0, 0.0], xy]), axis=0), axis=1))
    kept = keep_within(xy, line, np.maximum(max_offset_m, ego_off - converge_per_m * along))
    if np.allclose(kept, xy, atol=1e-6):
        return None
    return Plan(np.column_stack([kept, headings_along(kept, plan.poses[:, 2])]), plan.gear)


class TurnKeeping:
    """Call :meth:`update` once a decision, then :meth:`apply` to a forward plan."""

    def __init__(self, config: TurnKeepingConfig | None = None) -> None:
        self.cfg = config or TurnKeepingConfig()
        self.reset()

    def reset(self) -> None:
        self.left_m: float | None = None  # metres until the rule lets go; None: not holding
        self.held_s = 0.0
        self.kept = 0  # decisions whose plan it moved, for the episode's record

    def update(self, obs: dict[str, Any], speed_mps: float) -> bool:
        """Whether the rule holds the plan this decision."""
        if not self.cfg.enabled:
            return False
        if self.left_m is not None:
            self.left_m -= abs(speed_mps) * DT_S if np.isfinite(speed_mps) else 0.0
            # the time limit counts driving, not waiting: a car held at the entry by the left-turn yield for 10 s
            # lost turn keeping half way round the turn and cut it into the opposite lanes (urban 5001)
            self.held_s += DT_S if np.isfinite(speed_mps) and abs(speed_mps) > STANDING_MPS else 0.0
            if self.left_m <= 0 or self.held_s > self.cfg.max_hold_s:
                self.left_m = None
        dist = junction_distance(obs)
        if self.left_m is None and turn_ahead(obs) in TURNS and dist is not None and dist <= self.cfg.watch_m:
            self.left_m, self.held_s = dist + self.cfg.after_m, 0.0
        return self.left_m is not None

    def yields_to_a_change(self, obs: dict[str, Any]) -> bool:
        """Whether a lane change going on keeps the plan here: further than ``over_change_m`` from the junction."""
        dist = junction_distance(obs)
        return dist is None or dist > self.cfg.over_change_m

    def apply(self, plan: Plan, obs: dict[str, Any]) -> Plan:
        kept = keep_on_route(plan, obs, self.cfg.max_offset_m, self.cfg.converge_per_m, self.cfg.lost_m)
        if kept is None:
            return plan
        self.kept += 1
        return kept
