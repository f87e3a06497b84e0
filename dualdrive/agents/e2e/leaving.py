"""Whether the car is still leaving its parking spot, though the navigation already says "follow the lane".

The world hands out LEAVE_SPOT until the car's centre is a few metres from the spot's centre
(``World.left_spot``); backing out of a perpendicular bay, that is when the car is half out, still
crosswise in the aisle. The expert goes on backing up for a few more seconds under FOLLOW_LANE, swings
its nose round and only then drives off forwards, and the network learned to do the same. But off the
car-park commands the agent does not drive a reverse plan (no reversing on a carriageway into the
traffic behind), so the car stopped crosswise, half out of its bay, and crept forward across the
aisle: the drives that lost their way just after the start car park (P2P 5007: off the road 25 s in).

This latch remembers that the car is mid-manoeuvre: from a LEAVE_SPOT command until the car drives
forwards along its route (the route's next target within ``aligned_deg`` of the nose) or at road speed,
or, at the latest, ``max_decisions`` after the command changed. While it holds, the plan guard checks at
walking pace, as in the car park, and a reverse plan may be driven as long as the car still stands
across its way (the route's next target more than ``reverse_deg`` off the nose): that is where the
expert stops backing up and drives off (P2P 5007: at 60°). Unbounded, the network backed up for 20 m
through the rows of the car park (P2P 5000, 5004): past where any demonstration ever went on reversing,
it had nothing to tell it when to stop.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dualdrive.world.commands import Command

# commands under which the car is in the car park whatever the latch says
CAR_PARK_COMMANDS = (int(Command.LEAVE_SPOT), int(Command.PARK), int(Command.ENTER_LOT))


@dataclass(frozen=True)
class LeavingConfig:
    enabled: bool = True
    aligned_deg: float = 30.0  # the route's next target this close to the nose: the car faces its way
    min_target_m: float = 4.0  # route targets nearer than this say little about the direction
    moving_mps: float = 0.3  # forwards at least this fast (a car standing still faces no way yet)
    road_speed_mps: float = 3.0  # this fast, the car is on its way whatever it faces
    max_decisions: int = 200  # 20 s at 10 Hz: a manoeuvre that has not ended by then is not this one
    reverse_deg: float = 60.0  # reversing on while the route's next target is further than this off the nose

    def __post_init__(self) -> None:
        if not 0 < self.aligned_deg < 90 or not 0 < self.reverse_deg < 180 or self.max_decisions < 0 \
                or self.road_speed_mps <= 0:
            raise ValueError("leaving.aligned_deg must be in (0, 90), reverse_deg in (0, 180), max_decisions >= 0 "
                             "and road_speed_mps > 0")


class LeavingLatch:
    """Call :meth:`update` once a decision; :attr:`active` says whether the car is still leaving its spot, and
    :attr:`may_reverse` whether a reverse plan may be driven under a road command now."""

    def __init__(self, config: LeavingConfig | None = None) -> None:
        self.cfg = config or LeavingConfig()
        self.active = self.may_reverse = False
        self._after = 0  # decisions since the command stopped being LEAVE_SPOT

    def reset(self) -> None:
        self.active = self.may_reverse = False
        self._after = 0

    def update(self, command: int, speed_mps: float, route_xy_ego_m: np.ndarray) -> bool:
        """The latch after this decision's command, odometry speed (negative reversing) and route targets."""
        cfg = self.cfg
        if not cfg.enabled:
            self.active = False
        elif int(command) == int(Command.LEAVE_SPOT):
            self.active, self._after = True, 0
        elif self.active and int(command) not in CAR_PARK_COMMANDS:
            self._after += 1
            on_its_way = speed_mps >= cfg.road_speed_mps or (
                speed_mps >= cfg.moving_mps and facing_route(route_xy_ego_m, cfg.aligned_deg, cfg.min_target_m))
            if on_its_way or self._after > cfg.max_decisions:
                self.active = False
        self.may_reverse = self.active and not facing_route(route_xy_ego_m, cfg.reverse_deg, cfg.min_target_m)
        return self.active


def facing_route(route_xy_ego_m: np.ndarray, aligned_deg: float, min_target_m: float) -> bool:
    """Whether the first route target at least ``min_target_m`` away lies within ``aligned_deg`` of the car's
    heading (False when there is none, or the targets are not finite)."""
    pts = np.asarray(route_xy_ego_m, dtype=float).reshape(-1, 2)
    pts = pts[np.all(np.isfinite(pts), axis=1)]
    far = pts[np.hypot(pts[:, 0], pts[:, 1]) >= min_target_m]
    if len(far) == 0:
        return False
    x, y = far[0]
    return bool(abs(np.degrees(np.arctan2(y, x))) <= aligned_deg)
