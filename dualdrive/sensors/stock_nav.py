"""Navigation for a stock highway-env environment: the route a car's navigation would give.

dualdrive's own worlds give every mapless driver a sparse route (``route_xy_ego_m``: 10 points 8 m
apart along the lane-level route, in the ego frame) and the next high-level command. A stock env
(``highway-v0``, ``merge-v0``, ``roundabout-v0``, ...) has no route of that kind, so a driver that
plans along one (System 1, the modular pipeline, the dual agent) could not drive there. This module
derives the same keys from the env's road network: the centre line of the ego's lane ahead, lane
after lane as the env's own routing continues it (``RoadNetwork.next_lane`` with the ego's planned
route where the env gives it one, as ``intersection-v0`` does; at a fork without a route, the first
branch), with the command ``FOLLOW_LANE`` throughout: a stock env asks the ego to drive on, not to
turn or leave. Coordinates are highway-env's (the same frame as :func:`scene_from_highway_env`).
"""
from __future__ import annotations

import numpy as np

from dualdrive.world.commands import Command
from dualdrive.world.geometry import world_to_ego
from dualdrive.world.world import ROUTE_TARGET_SPACING_M, ROUTE_TARGETS

NO_COMMAND_AHEAD_M = 1000.0  # command_distance_m when no other command is ahead: "follow the road"
DEFAULT_SPEED_LIMIT_MPS = 20.0  # highway-env's own default lane speed limit, for a lane that has none
_MAX_LANE_HOPS = 50  # a network of zero-length lanes (malformed) must not loop forever


def stock_navigation(env) -> dict[str, np.ndarray]:
    """``route_xy_ego_m``, ``route_command``, ``command``, ``command_distance_m``, ``speed_limit_mps``
    and ``route_speed_limit_mps`` for the controlled vehicle of a highway-env env (as dualdrive's world
    gives them; see :meth:`dualdrive.world.world.World.observation`)."""
    u = env.unwrapped
    ego, network = u.vehicle, u.road.network
    index = ego.lane_index
    lane = network.get_lane(index)
    s0, _ = lane.local_coordinates(np.asarray(ego.position, float))
    targets = s0 + ROUTE_TARGET_SPACING_M * np.arange(1, ROUTE_TARGETS + 1)
    rng = np.random.RandomState(0)  # next_lane draws only at a fork the ego has no route through
    xy, limits = [], []
    start, hops = 0.0, 0  # arc length of the current lane's start, counted from the ego's lane's start
    # next_lane consumes the route as it goes (it pops each road it has reached): one copy for the whole walk
    route = list(ego.route) if getattr(ego, "route", None) else None
    for t in targets:
        while t - start > lane.length and hops < _MAX_LANE_HOPS:
            try:
                nxt = network.next_lane(index, route=route, position=np.asarray(ego.position, float), np_random=rng)
            except (KeyError, IndexError, ValueError):  # the network ends here
                break
            if nxt == index or nxt is None:
                break
            start += lane.length
            index, lane, hops = nxt, network.get_lane(nxt), hops + 1
        # past the end of the network the last lane goes on (highway-env's lanes extrapolate)
        xy.append(lane.position(t - start, 0.0))
        limits.append(_speed_limit(lane))
    here = _speed_limit(network.get_lane(ego.lane_index))
    route = world_to_ego(np.array(xy, float), np.asarray(ego.position, float), float(ego.heading))
    return {"route_xy_ego_m": route.astype(np.float32),
            "route_command": np.full(ROUTE_TARGETS, int(Command.FOLLOW_LANE), np.int8),
            "command": np.array([int(Command.FOLLOW_LANE)], np.int8),
            "command_distance_m": np.array([NO_COMMAND_AHEAD_M], np.float32),
            "speed_limit_mps": np.array([here], np.float32),
            "route_speed_limit_mps": np.array(limits, np.float32)}


def _speed_limit(lane) -> float:
    return float(getattr(lane, "speed_limit", None) or DEFAULT_SPEED_LIMIT_MPS)
