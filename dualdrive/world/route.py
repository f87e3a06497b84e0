"""The navigation route an agent is given: sparse target points with high-level commands.

This is what a production car's navigation provides in a mapless stack: where to go and
what to do next (turn, change lane, take the exit, enter the lot, park), never the lane graph.
The route polyline is also what the benchmark measures route completion along.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from dualdrive.world.commands import Command  # noqa: F401  (its home; re-exported here)
from dualdrive.world.map import LaneKind, LaneMap, Movement

ROUTE_STEP_M = 2.0  # resolution of the route polyline
COMMAND_LOOKAHEAD_M = 50.0  # a manoeuvre's command is announced this far before it
LANE_CHANGE_SPAN_M = 30.0  # a planned lane change in the nominal route takes this long


@dataclass
class RoutePolyline:
    xy: np.ndarray  # (N, 2) world frame
    progress_m: np.ndarray  # (N,) arc length along the route
    command: np.ndarray  # (N,) Command of the manoeuvre this point belongs to (FOLLOW_LANE elsewhere)
    lane: np.ndarray  # (N,) lane id of each point
    arrival_m: float  # progress at which the route counts as complete

    def commands_ahead(self, progress_m: float) -> tuple[int, float]:
        """Next non-trivial command within the announcement distance, and the distance to it."""
        ahead = (self.progress_m >= progress_m) & (self.progress_m <= progress_m + COMMAND_LOOKAHEAD_M)
        idx = np.where(ahead & (self.command != Command.FOLLOW_LANE))[0]
        if len(idx) == 0:
            return int(Command.FOLLOW_LANE), COMMAND_LOOKAHEAD_M
        # the distance is to where the manoeuvre happens (the end of the points announcing it: the
        # junction's entry, the lane switch), as a navigation's "turn left in 50 m" is
        k, c = int(idx[0]), self.command[idx[0]]
        while k + 1 < len(self.command) and self.command[k + 1] == c:
            k += 1
        return int(c), max(0.0, float(self.progress_m[k] - progress_m))


def _edge_command(m: LaneMap, a: int, b: int, after: list[int]) -> Command:
    """The command for driving from lane ``a`` into lane ``b`` (``after``: the route beyond ``b``)."""
    la, lb = m.lanes[a], m.lanes[b]
    if lb.roundabout >= 0:
        # entering a roundabout, navigation says where the exit goes (as "take the 2nd exit" does)
        return _roundabout_command(m, a, after) if la.roundabout < 0 else Command.FOLLOW_LANE
    if b == la.left:
        return Command.CHANGE_LANE_LEFT
    if b == la.right:
        return Command.CHANGE_LANE_RIGHT
    if lb.kind == LaneKind.CONNECTOR:
        return {Movement.STRAIGHT: Command.GO_STRAIGHT, Movement.LEFT: Command.TURN_LEFT,
                Movement.RIGHT: Command.TURN_RIGHT}[Movement(lb.movement)]
    if lb.kind == LaneKind.RAMP and la.kind == LaneKind.ROAD:
        return Command.TAKE_EXIT
    if lb.kind == LaneKind.ACCESS and la.kind != LaneKind.AISLE:
        return Command.ENTER_LOT
    return Command.FOLLOW_LANE


def _roundabout_command(m: LaneMap, approach: int, after: list[int]) -> Command:
    leave = next((x for x in after if m.lanes[x].roundabout < 0), None)
    if leave is None:
        return Command.GO_STRAIGHT
    h_in = m.heads[m.offset[approach] + m.count[approach] - 1]
    turn = float((m.heads[m.offset[leave]] - h_in + np.pi) % (2 * np.pi) - np.pi)
    if abs(turn) < np.pi / 4:
        return Command.GO_STRAIGHT
    return Command.TURN_LEFT if turn > 0 else Command.TURN_RIGHT


def build_route(m: LaneMap, lanes: list[int], arrival_index: int, start_s_m: float = 0.0) -> RoutePolyline:
    """Sample the lane-level route into a polyline; lane changes are spread over the shared section."""
    pts, cmds, lane_ids = [], [], []
    arrival_point = None
    i = 0
    while i < len(lanes):
        # a run of neighbour lanes (lane changes) shares one arc-length section
        run = [lanes[i]]
        while i + len(run) < len(lanes) and m.is_lane_change(run[-1], lanes[i + len(run)]):
            run.append(lanes[i + len(run)])
        length = m.length[run[0]]
        s_lo = start_s_m if i == 0 else 0.0
        bounds = np.linspace(s_lo, length, len(run) + 1)
        for k, lane in enumerate(run):
            a, b = bounds[k], bounds[k + 1]
            if len(run) > 1:  # shrink each piece so the switch has a visible span
                a = a + (LANE_CHANGE_SPAN_M / 2 if k > 0 else 0.0)
                b = b - (LANE_CHANGE_SPAN_M / 2 if k < len(run) - 1 else 0.0)
                b = max(b, a + ROUTE_STEP_M)
            n = max(2, int(np.ceil((b - a) / ROUTE_STEP_M)) + 1)
            xy, _ = m.pose(np.full(n, lane), np.linspace(a, b, n))
            pts.append(xy)
            nxt = lanes[i + k + 1] if i + k + 1 < len(lanes) else -1
            c = _edge_command(m, lane, nxt, lanes[i + k + 2:]) if nxt >= 0 else Command.FOLLOW_LANE
            cmd = np.full(n, int(Command.FOLLOW_LANE))
            cmd[-max(1, int(10 / ROUTE_STEP_M)):] = int(c)
            if m.lanes[lane].kind == LaneKind.AISLE and i + k >= arrival_index:
                cmd[:] = int(Command.PARK)
            cmds.append(cmd)
            lane_ids.append(np.full(n, lane))
            if i + k == arrival_index:
                arrival_point = sum(len(p) for p in pts) - 1
        i += len(run)
    xy = np.concatenate(pts)
    seg = np.linalg.norm(np.diff(xy, axis=0), axis=1)
    progress = np.concatenate([[0.0], np.cumsum(seg)])
    arrival = progress[arrival_point] if arrival_point is not None else progress[-1]
    return RoutePolyline(xy, progress, np.concatenate(cmds), np.concatenate(lane_ids), float(arrival))
