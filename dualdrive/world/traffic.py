"""Vectorised traffic: every NPC vehicle and pedestrian lives in flat arrays (structure of arrays).

Per tick: one sort of all road users by (lane, s) gives every leader; IDM is evaluated in batch
against the leader and against virtual stop points (red lights, yielding at conflicts,
pedestrians on crosswalks, lane ends); MOBIL lane changes (:mod:`dualdrive.world.mobil`) are
evaluated in batch every MOBIL_EVERY ticks, their leaders and followers found in the same sorted
order. No per-vehicle Python objects in the loop.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from dualdrive.world.geometry import world_to_ego
from dualdrive.world.map import LaneKind, LaneMap, Movement
from dualdrive.world.mobil import MobilInputs, MobilParams, mobil
from dualdrive.world.signals import Light

FREE_GAP_M = 1e4
KEY_STRIDE = 1e5  # lane * KEY_STRIDE + s orders everyone by lane, then position
LC_DURATION_S = 3.0
LC_MAX_YAW_RAD = 0.2  # the steepest a lane-changer's body points across (~11 deg)
LC_SLOW_HEADING = 0.6  # sin of the steepest angle a car takes across at crawling speed (~24 deg)
LC_MIN_RATE_MPS = 0.6  # sideways metres per second a car still edges across at walking pace
SIDE_LOOK_M = 15.0  # half-window searched for something beside a lane-changer in its new lane
SIDE_MARGIN_M = 0.5
SWING_OUT_GAP_M = 5.0
SWING_OUT_FREE_MPS = 8.0  # below this speed lane changes take longer
# MOBIL's thresholds are MobilParams' defaults (b_safe 4 m/s^2, gain 0.25 m/s^2)
ASSUMED_FOLLOWER_IDM = (30.0, 1.5, 1.5, 2.0, 2.0)  # v0, T, a, b, s0 a driver assumes of the car behind
MOBIL_EVERY = 5  # each vehicle reconsiders its lane every 5 ticks
YIELD_HORIZON_S = 4.5
STOP_APPROACH_M = 40.0
PED_SPEED_MPS = (1.1, 1.6)
PED_BAND_M = 3.5  # a pedestrian this close (along the crosswalk) to a lane's crossing blocks it


LC_MIN_REST_M = 25.0  # no lane change starts this close to the end of a lane (unless it ends)
MERGE_ZONE_M = 120.0  # a vehicle this close to the end of a lane that ends is merging
MERGE_LOOK_M = 60.0  # main-line drivers this far behind a merger make room for it
MERGE_GAP_M = 7.0  # the room they leave (bumper to bumper): a gap a merger will accept
MERGE_MIN_POLITE = 0.2
MERGE_PASS_M = 4.0  # closer than this behind a merger, a driver passes it instead
BLOCKED_LOOK_M = 120.0  # a static blocker this far ahead in one's lane means: change lanes  # the most aggressive drivers do not make room
SPAWN_CLEAR_M = 40.0  # never respawn an NPC this close to the ego
RB_SLOW_MPS2 = 1.5  # deceleration drivers plan for on the way into a roundabout
RB_GIVE_WAY_MPS = 3.0  # speed over the last RB_CREEP_M before a roundabout's give-way line
RB_CREEP_M = 5.0
RB_LOOK_S = 2.0  # circulating traffic this close (in time) to the arc at an entry's merge point has priority
RB_LINE_M = 0.5  # a front bumper this far past the give-way line is committed: it is merging
RB_NODE_M = 6.0  # the first metres of the lanes leaving a roundabout node overlap
RB_SIBLING_M = 2.0  # of two cars arriving at a leg's two entry lanes, the outer goes first unless this much further back
PED_LOOK_AHEAD_M = 0.8
PED_CLEAR_OF_CAR_M = 0.4
CAR_ON_CROSSWALK_M = 8.0  # a car centre this close to a crosswalk keeps waiting pedestrians on the kerb


class Kind(IntEnum):
    CAR = 0
    TRUCK = 1
    EMERGENCY = 2
    STALLED = 3
    WORKZONE = 4  # invisible lane blocker behind road-works cones
    CUTIN = 5


STATIC_KINDS = (Kind.STALLED, Kind.WORKZONE)


@dataclass
class Vehicles:
    lane: np.ndarray
    s: np.ndarray
    v: np.ndarray
    lat: np.ndarray
    lc_from: np.ndarray
    next_lane: np.ndarray
    v0: np.ndarray
    T: np.ndarray
    a_max: np.ndarray
    b_comf: np.ndarray
    s0: np.ndarray
    polite: np.ndarray
    length: np.ndarray
    width: np.ndarray
    kind: np.ndarray
    active: np.ndarray
    release_t: np.ndarray  # static until this time (blocked-aisle car, stalled cars use inf)
    forced_lane: np.ndarray  # an aggressive cut-in's target lane, -1 when none
    acc: np.ndarray

    @classmethod
    def empty(cls, n: int) -> "Vehicles":
        f = lambda v=0.0: np.full(n, v, dtype=float)  # noqa: E731
        i = lambda v=-1: np.full(n, v, dtype=np.int64)  # noqa: E731
        return cls(lane=i(0), s=f(), v=f(), lat=f(), lc_from=i(), next_lane=i(), v0=f(30), T=f(1.5),
                   a_max=f(1.5), b_comf=f(2.0), s0=f(2.0), polite=f(0.3), length=f(4.6), width=f(1.9),
                   kind=i(0), active=np.zeros(n, bool), release_t=f(0.0), forced_lane=i(), acc=f())

    def __len__(self) -> int:
        return len(self.lane)


@dataclass
class Pedestrians:
    xy: np.ndarray  # (P, 2)
    dir: np.ndarray  # (P, 2) unit walking direction
    speed: np.ndarray
    crosswalk: np.ndarray  # -1 for a jaywalker
    remaining_m: np.ndarray
    state: np.ndarray  # 0 waiting, 1 walking, 2 gone
    wait_s: np.ndarray
    trigger_xy: np.ndarray  # jaywalkers start when the ego comes within trigger_m of this point
    trigger_m: np.ndarray

    @classmethod
    def empty(cls) -> "Pedestrians":
        return cls(np.zeros((0, 2)), np.zeros((0, 2)), np.zeros(0), np.zeros(0, np.int64), np.zeros(0),
                   np.zeros(0, np.int64), np.zeros(0), np.zeros((0, 2)), np.zeros(0))


@dataclass
class SideOption:
    """A move onto a neighbouring lane as MOBIL sees it, for each deciding driver."""

    inputs: MobilInputs
    safe: np.ndarray
    incentive: np.ndarray
    gap_l: np.ndarray  # bumper gap to the new leader
    gap_f: np.ndarray  # bumper gap to the new follower
    has_f: np.ndarray
    follower: np.ndarray  # entity index of the new follower (-1: none)
    follower_v: np.ndarray


def idm(v: np.ndarray, v0: np.ndarray, gap: np.ndarray, dv: np.ndarray, T: np.ndarray, a: np.ndarray,
        b: np.ndarray, s0: np.ndarray) -> np.ndarray:
    """Intelligent Driver Model acceleration (Treiber et al. 2000), batch form, as highway-env's IDMVehicle."""
    v0 = np.maximum(v0, 0.1)
    s_star = s0 + np.maximum(0.0, v * T + v * dv / (2 * np.sqrt(a * b)))
    free = 1 - np.power(np.maximum(v, 0) / v0, 4)
    return a * (free - (s_star / np.maximum(gap, 0.1)) ** 2)


class Traffic:
    """NPC vehicles and pedestrians on a :class:`LaneMap`, advanced together by :meth:`step`."""

    def __init__(self, lane_map: LaneMap, vehicles: Vehicles, peds: Pedestrians, rng: np.random.Generator,
                 mobil: MobilParams = MobilParams()) -> None:
        self.map = lane_map
        self.mobil = mobil
        self.veh = vehicles
        self.ped = peds
        self.rng = rng
        self.tick = 0
        self.ped_halted = np.zeros(len(peds.state), bool)  # walking, but waiting for the ego to clear
        self.ego_pose: tuple | None = None  # (xy, heading, length, width), set by the world each tick
        self.ego_xy: np.ndarray | None = None  # set by the world each tick (jaywalkers start near it)
        self.ego_claims = np.zeros(0, np.int64)  # connectors the ego is about to enter (NPCs yield to it)
        m = lane_map
        n_lanes = len(m.lanes)
        # NPCs never drive into parking lots: lanes that only lead into a lot are exits for them
        self.npc_successors = [[x for x in ln.successors if m.lanes[x].kind not in (LaneKind.ACCESS, LaneKind.AISLE)]
                               for ln in m.lanes]
        self.is_sink = np.array([ln.is_sink or (not self.npc_successors[ln.id] and not ln.dead_end
                                                and ln.kind != LaneKind.AISLE) for ln in m.lanes])
        # the lane a vehicle on a lane that ends must merge into (-1: the lane does not end)
        self.merge_into = np.full(n_lanes + 1, -1, dtype=np.int64)
        for ln in m.lanes:
            if ln.dead_end and ln.kind in (LaneKind.ROAD, LaneKind.RAMP):
                self.merge_into[ln.id] = ln.left if ln.left >= 0 else ln.right
        # the one lane before / after each lane along the road (-1 where none or ambiguous)
        self.succ_of = np.full(n_lanes + 1, n_lanes, dtype=np.int64)
        self.pred_of = np.full(n_lanes + 1, n_lanes, dtype=np.int64)
        preds: dict[int, list[int]] = {}
        for ln in m.lanes:
            if len(ln.successors) == 1:
                self.succ_of[ln.id] = ln.successors[0]
            for x in ln.successors:
                preds.setdefault(x, []).append(ln.id)
        for x, p in preds.items():
            if len(p) == 1:
                self.pred_of[x] = p[0]
        self.sources = np.array([ln.id for ln in m.lanes if ln.is_source], dtype=np.int64)
        self.rb_lane = np.array([ln.roundabout >= 0 for ln in m.lanes] + [False])
        self.give_way_s = np.array([ln.give_way_s for ln in m.lanes] + [-1.0])
        self.rb_entry = self.give_way_s >= 0
        self.merge_arc = np.array([ln.merge_arc for ln in m.lanes] + [-1], dtype=np.int64)
        self.sibling = np.array([ln.sibling for ln in m.lanes] + [-1], dtype=np.int64)
        self.outer_entry = np.array([ln.movement == Movement.RIGHT for ln in m.lanes] + [False])
        # at a roundabout's nodes lanes diverge from one point: every lane leaving the node a car is
        # heading for is watched over its first metres, not only the one it will take
        k = max([len(ln.successors) for ln in m.lanes] + [1])
        self.node_succ = np.full((n_lanes + 1, k), n_lanes, dtype=np.int64)
        for ln in m.lanes:
            if any(m.lanes[x].roundabout >= 0 for x in ln.successors):
                self.node_succ[ln.id, : len(ln.successors)] = ln.successors
        self.movement_prio = np.array([_prio(ln.movement) if ln.kind == LaneKind.CONNECTOR else 9 for ln in m.lanes])
        k = max([len(ln.conflicts) for ln in m.lanes] + [1])
        self.conflicts = np.full((n_lanes, k), n_lanes, dtype=np.int64)  # padded with a sentinel lane
        for ln in m.lanes:
            self.conflicts[ln.id, : len(ln.conflicts)] = ln.conflicts
        self.cw_cross = [(ln.id, cw, s) for ln in m.lanes for cw, s in ln.crosswalks]
        self.cw_start = np.array([c.start_xy for c in m.crosswalks]).reshape(-1, 2)
        self.cw_end = np.array([c.end_xy for c in m.crosswalks]).reshape(-1, 2)
        self.cw_group = np.array([c.signal_group for c in m.crosswalks], dtype=np.int64)
        self.cross_along = {}
        for lane, cw, s in self.cw_cross:
            xy, _ = m.pose(np.array([lane]), np.array([s]))
            axis = self.cw_end[cw] - self.cw_start[cw]
            self.cross_along[(lane, cw)] = float((xy[0] - self.cw_start[cw]) @ axis / np.linalg.norm(axis))
        for i in np.where(self.veh.active)[0]:
            self.veh.next_lane[i] = self._pick_next(int(self.veh.lane[i]))
        act = np.where(self.veh.active)[0]
        # nobody starts the episode too fast to stop where it must (a give-way line just ahead)
        self.veh.v[act] = np.minimum(self.veh.v[act], self._desired_speed(act))

    # -- helpers ------------------------------------------------------------------------------
    def _pick_next(self, lane: int) -> int:
        succ = self.npc_successors[lane]
        if not succ:
            return -1
        return int(succ[self.rng.integers(len(succ))])

    def poses(self) -> tuple[np.ndarray, np.ndarray]:
        """World (xy, heading) of every vehicle (inactive ones too; mask with ``veh.active``)."""
        ve = self.veh
        xy, h = self.map.pose(ve.lane, ve.s, ve.lat)
        # while changing lanes the body points towards the new lane
        # (capped, and straightening over the last metre: a long truck crawling across must not
        # swing its nose into the lane beyond)
        yaw = np.minimum(np.arctan2(self._lateral_rate(ve.lane, ve.v), np.maximum(ve.v, 0.5)), LC_MAX_YAW_RAD)
        dlat = np.where(np.abs(ve.lat) > 0.05, -np.sign(ve.lat) * yaw * np.minimum(np.abs(ve.lat), 1.0), 0.0)
        return xy, h + dlat

    def _lateral_rate(self, lane: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Sideways speed of a lane change: a lane width in LC_DURATION_S at speed, slower when
        crawling (a car cannot move sideways faster than its heading allows; a stopped one still
        edges across, as in a zipper queue)."""
        return np.minimum(self.map.width[lane] / LC_DURATION_S, np.maximum(v * LC_SLOW_HEADING, LC_MIN_RATE_MPS))

    def _sort(self, act: np.ndarray, ego: np.ndarray | None):
        """Everyone on the road (NPCs, lane-changers on both lanes, the ego, jaywalkers) sorted by
        (lane, s), with the first road user on each lane."""
        m = self.map
        ent_lane, ent_s, ent_v, ent_len, ent_id = self._entities(act, ego)
        order = np.lexsort((ent_s, ent_lane))
        key = ent_lane[order] * KEY_STRIDE + ent_s[order]
        first_s = np.full(len(m.lanes) + 1, FREE_GAP_M)
        first_v = np.zeros(len(m.lanes) + 1)
        first_len = np.zeros(len(m.lanes) + 1)
        # first entity on each lane (entities are sorted, so the first occurrence of each lane)
        lanes_sorted = ent_lane[order]
        uniq, first_idx = np.unique(lanes_sorted, return_index=True)
        first_s[uniq] = ent_s[order][first_idx]
        first_v[uniq] = ent_v[order][first_idx]
        first_len[uniq] = ent_len[order][first_idx]
        occupied = np.zeros(len(m.lanes) + 1, bool)
        occupied[uniq] = True
        return ent_lane, ent_s, ent_v, ent_len, ent_id, order, key, first_s, first_v, first_len, occupied

    def neighbours(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per vehicle (NPCs only, no ego): the id of the road user ahead on its lane and the bumper gap
        to it, as the tick's IDM sees them, and the id of the one behind (-1: none)."""
        ve = self.veh
        act = np.where(ve.active)[0]
        lead = np.full(len(ve), -1)
        follow = np.full(len(ve), -1)
        gap_out = np.full(len(ve), FREE_GAP_M)
        if len(act) == 0:
            return lead, gap_out, follow
        ent_lane, ent_s, ent_v, ent_len, ent_id, order, key, first_s, first_v, first_len, _ = self._sort(act, None)
        gap, _, lead_ent = self._leaders(act, key, order, ent_s, ent_v, ent_len, first_s, first_v, first_len,
                                         with_ids=True)
        lead[act] = np.where(lead_ent >= 0, ent_id[np.maximum(lead_ent, 0)], -1)
        gap_out[act] = gap
        # the one behind: the entity before us in the sorted order, on the same lane (as MOBIL's follower)
        pos = np.searchsorted(key, ve.lane[act] * KEY_STRIDE + ve.s[act], side="left") - 1
        behind = (pos >= 0) & (np.floor(key[np.maximum(pos, 0)] / KEY_STRIDE) == ve.lane[act])
        follow[act] = np.where(behind, ent_id[order[np.maximum(pos, 0)]], -1)
        return lead, gap_out, follow

    # -- the tick -----------------------------------------------------------------------------
    def step(self, dt: float, t_s: float, lights: np.ndarray, ego: np.ndarray | None) -> None:
        """Advance one tick. ``ego``: rows (lane, s, speed, length) of the ego's lane projections."""
        ve, m = self.veh, self.map
        self._release_and_trigger(t_s, ego)
        act = np.where(ve.active)[0]
        ent_lane, ent_s, ent_v, ent_len, ent_id, order, key, first_s, first_v, first_len, occupied = self._sort(act, ego)

        moving = act[~np.isin(ve.kind[act], STATIC_KINDS) & (ve.release_t[act] <= t_s)]
        gap, dv = self._leaders(moving, key, order, ent_s, ent_v, ent_len, first_s, first_v, first_len)
        chg = np.where(ve.lc_from[moving] >= 0)[0]
        if len(chg):
            sub = moving[chg]
            frm = ve.lc_from[sub]
            nx = self.succ_of[frm]
            g_o, dv_o = self._leaders(sub, key, order, ent_s, ent_v, ent_len, first_s, first_v, first_len,
                                      lanes=frm, next_lanes=np.where(nx < len(m.lanes), nx, -1))
            closer = g_o < gap[chg]
            gap[chg] = np.where(closer, g_o, gap[chg])
            dv[chg] = np.where(closer, dv_o, dv[chg])
        v0 = self._desired_speed(moving)
        acc = idm(ve.v[moving], v0, gap, dv, ve.T[moving], ve.a_max[moving], ve.b_comf[moving], ve.s0[moving])
        stop_gap = self._stop_points(moving, lights, occupied, ego)
        stop_gap = np.minimum(stop_gap, self._give_way(moving, ent_lane, ent_s, ent_id))
        acc_stop = idm(ve.v[moving], v0, stop_gap, ve.v[moving], ve.T[moving], ve.a_max[moving],
                       ve.b_comf[moving], ve.s0[moving] * 0 + 1.0)
        acc = np.minimum(acc, acc_stop)
        stuck = self._stuck_behind_static(order, ent_lane, ent_s, ent_len, ent_id)
        self._stuck_veh = np.zeros(len(ve), bool)
        self._stuck_veh[act] = stuck[:len(act)]  # the first entities are the active NPCs, in order
        acc = np.minimum(acc, self._make_room(moving, ent_lane, ent_s, ent_v, ent_len, ent_id, stuck))
        acc = np.clip(acc, -8.0, ve.a_max[moving])
        ve.acc[:] = 0.0
        ve.acc[moving] = acc
        if self.tick % MOBIL_EVERY == 0 or np.any(ve.forced_lane >= 0):
            self._lane_changes(moving, key, order, ent_lane, ent_s, ent_v, ent_len, ent_id, acc, lights, gap, dv)
        # integrate (ballistic update, no reversing)
        v_new = np.maximum(ve.v[moving] + acc * dt, 0.0)
        ve.s[moving] += np.maximum((ve.v[moving] + v_new) / 2 * dt, 0.0)
        ve.v[moving] = v_new
        rate = self._lateral_rate(ve.lane[moving], ve.v[moving]) * dt
        rate[self._side_blocked(moving, key, order, ent_s, ent_len, ent_id)] = 0.0
        ve.lat[moving] -= np.sign(ve.lat[moving]) * np.minimum(np.abs(ve.lat[moving]), rate)
        ve.lc_from[moving[np.abs(ve.lat[moving]) < 0.8]] = -1
        self._advance_lanes(moving)
        self._respawn(ego)
        self._step_pedestrians(dt, t_s, lights, ego)
        self.tick += 1

    def _desired_speed(self, idx: np.ndarray) -> np.ndarray:
        """Each driver's desired speed, capped on a roundabout at its speed limit, and on the way
        in already slowing towards its give-way line (at a comfortable RB_SLOW_MPS2)."""
        ve, m = self.veh, self.map
        lane = ve.lane[idx]
        cap = np.where(self.rb_lane[lane], m.speed_limit[lane], np.inf)
        nl = np.where(ve.next_lane[idx] >= 0, ve.next_lane[idx], len(m.lanes))
        into = self.rb_lane[nl] & ~self.rb_lane[lane]
        rest = np.maximum(m.length[lane] - ve.s[idx], 0.0)
        lim_next = m.speed_limit[np.minimum(nl, len(m.lanes) - 1)]
        # entries are give-way lines: arrive at walking pace, slow enough to stop if the ring is busy
        to_line = np.where(self.rb_entry[nl], rest + self.give_way_s[nl], rest)
        entry = np.where(self.rb_entry[nl], RB_GIVE_WAY_MPS, lim_next)
        cap = np.where(into, np.sqrt(entry**2 + 2 * RB_SLOW_MPS2 * np.maximum(to_line - RB_CREEP_M, 0.0)), cap)
        # on the entry itself: creep up to the line, then accelerate onto the ring
        before = self.rb_entry[lane] & (ve.s[idx] < self.give_way_s[lane])
        to_line = self.give_way_s[lane] - ve.s[idx]
        cap = np.where(before, np.minimum(cap, np.sqrt(RB_GIVE_WAY_MPS**2 + 2 * RB_SLOW_MPS2 * np.maximum(
            to_line - RB_CREEP_M, 0.0))), cap)
        return np.minimum(ve.v0[idx], cap)

    def _give_way(self, idx: np.ndarray, ent_lane, ent_s, ent_id) -> np.ndarray:
        """Where vehicles at a roundabout must wait: its two entry lanes of a leg converge, so a car
        takes one only when the other is empty and nobody with priority is arriving at it (the outer
        lane goes first); at the give-way line at the ring's edge a car waits while circulating
        traffic is on (or about to enter) the arc arriving at its merge point."""
        ve, m = self.veh, self.map
        gap = np.full(len(idx), FREE_GAP_M)
        lane, s = ve.lane[idx], ve.s[idx]
        front = s + ve.length[idx] / 2
        nl = np.where(ve.next_lane[idx] >= 0, ve.next_lane[idx], len(m.lanes))
        to_end = m.length[lane] - front
        approaching = self.rb_entry[nl] & (to_end < STOP_APPROACH_M)
        at_ring_line = self.rb_entry[lane] & (front < self.give_way_s[lane] + RB_LINE_M)
        if not (approaching.any() or at_ring_line.any()):
            return gap
        # vehicles about to enter each lane soon (NPCs by their chosen next lane, the ego by its claims)
        act = np.where(ve.active & (ve.next_lane >= 0))[0]
        act_rest = m.length[ve.lane[act]] - ve.s[act] - ve.length[act] / 2
        eta = act_rest / np.maximum(ve.v[act], 0.5)
        arriving = set(ve.next_lane[act[eta < RB_LOOK_S]].tolist()) | set(self.ego_claims.tolist())
        for k in np.where(approaching | (self.rb_entry[lane] & (front < 1.0)))[0]:
            e = nl[k] if approaching[k] else lane[k]
            sib = self.sibling[e]
            if sib < 0:
                continue
            mine = to_end[k] if approaching[k] else -front[k]
            margin = RB_SIBLING_M if self.outer_entry[sib] else -RB_SIBLING_M
            # the other lane is taken, or a car arriving at it is nearer its entry (the outer lane wins ties)
            busy = (bool(np.any(ent_lane == sib)) or sib in self.ego_claims
                    or bool(np.any(act_rest[ve.next_lane[act] == sib] < mine + margin)))
            if busy:
                gap[k] = max(to_end[k] - 0.5, 0.05) if approaching[k] else 0.05
        for k in np.where(at_ring_line)[0]:
            arc = self.merge_arc[lane[k]]
            node_busy = np.isin(ent_lane, self.node_succ[lane[k]]) & (ent_s < RB_NODE_M) & (ent_id != idx[k])
            if arc in arriving or bool(np.any((ent_lane == arc) & (ent_id != idx[k]))) or node_busy.any():
                gap[k] = min(gap[k], max(self.give_way_s[lane[k]] - front[k], 0.05))
        return gap

    def _side_blocked(self, idx, key, order, ent_s, ent_len, ent_id) -> np.ndarray:
        """Per vehicle in ``idx``: it is mid-change and something (an NPC, the ego) sits beside it in
        the lane it is moving into, overlapping along the lane, so it must not edge further across."""
        ve = self.veh
        out = np.zeros(len(idx), bool)
        for k in np.where(np.abs(ve.lat[idx]) > 0.05)[0]:
            i = idx[k]
            q = ve.lane[i] * KEY_STRIDE + ve.s[i]
            lo, hi = np.searchsorted(key, [q - SIDE_LOOK_M, q + SIDE_LOOK_M])
            e = order[lo:hi]
            e = e[ent_id[e] != i]
            out[k] = bool(np.any(np.abs(ent_s[e] - ve.s[i]) < (ent_len[e] + ve.length[i]) / 2 + SIDE_MARGIN_M))
        return out

    def _stuck_behind_static(self, order, ent_lane, ent_s, ent_len, ent_id) -> np.ndarray:
        """Per entity: its next road user ahead on the same lane is a static blocker (stalled car,
        work zone) within BLOCKED_LOOK_M, so it must change lanes to get on."""
        ve = self.veh
        n = len(ent_lane)
        stuck = np.zeros(n, bool)
        if n < 2:
            return stuck
        is_static = np.zeros(n, bool)
        real = ent_id >= 0
        is_static[real] = np.isin(ve.kind[ent_id[real]], STATIC_KINDS)
        # everyone queued behind a blocker in its lane, not only the first in the queue
        for b in np.where(is_static)[0]:
            stuck |= (ent_lane == ent_lane[b]) & (ent_s < ent_s[b]) & (ent_s[b] - ent_s < BLOCKED_LOOK_M)
        return stuck & ~is_static

    def _make_room(self, idx: np.ndarray, ent_lane, ent_s, ent_v, ent_len, ent_id, stuck) -> np.ndarray:
        """Cooperative merging (zipper): a polite driver on the through lane slows to let a vehicle
        near the end of an ending lane (acceleration lane, lane drop) in ahead of it. Without this an
        acceleration lane in dense traffic fills with cars stopped at its end."""
        ve, m = self.veh, self.map
        out = np.full(len(idx), np.inf)
        rest = m.length[ent_lane] - ent_s
        ending = (self.merge_into[ent_lane] >= 0) & (rest < MERGE_ZONE_M)
        mergers = np.where(ending | stuck)[0]
        jobs = []
        for k in mergers:
            lane = ent_lane[k]
            if ending[k]:
                jobs.append((k, self.merge_into[lane]))
            elif ent_id[k] == -1:  # the ego, stuck: make room on both sides, it picks one
                jobs += [(k, x) for x in (m.left[lane], m.right[lane]) if x >= 0]
            else:
                jobs.append((k, m.left[lane] if m.left[lane] >= 0 else m.right[lane]))
        for k, into in jobs:
            if into < 0:
                continue
            ds = ent_s[k] - ve.s[idx] - (ent_len[k] + ve.length[idx]) / 2
            # a car already alongside drives on; those behind hold back
            sel = (ve.lane[idx] == into) & (ds > MERGE_PASS_M) & (ds < MERGE_LOOK_M) & (ve.polite[idx] >= MERGE_MIN_POLITE)
            if not sel.any():
                continue
            j = idx[sel]
            a = idm(ve.v[j], ve.v0[j], ds[sel], ve.v[j] - ent_v[k], ve.T[j], ve.a_max[j], ve.b_comf[j],
                    np.full(len(j), MERGE_GAP_M))
            out[sel] = np.minimum(out[sel], np.maximum(a, -ve.b_comf[j] * 1.5))  # only comfortable braking
        return out

    def _entities(self, act: np.ndarray, ego: np.ndarray | None):
        ve = self.veh
        lc = act[ve.lc_from[act] >= 0]
        parts_lane = [ve.lane[act], ve.lc_from[lc]]
        parts_s = [ve.s[act], ve.s[lc]]
        parts_v = [ve.v[act], ve.v[lc]]
        parts_len = [ve.length[act], ve.length[lc]]
        parts_id = [act, lc]
        if ego is not None and len(ego):
            parts_lane.append(ego[:, 0].astype(np.int64))
            parts_s.append(ego[:, 1])
            parts_v.append(ego[:, 2])
            parts_len.append(ego[:, 3])
            parts_id.append(np.full(len(ego), -1))
        # a car past its give-way line, merging, is already in the ring for those circulating behind
        merging = act[self.rb_entry[ve.lane[act]] & (ve.s[act] + ve.length[act] / 2 >= self.give_way_s[ve.lane[act]] + RB_LINE_M)]
        arc = self.merge_arc[ve.lane[merging]]
        parts_lane.append(arc)
        parts_s.append(self.map.length[arc] - (self.map.length[ve.lane[merging]] - ve.s[merging]))
        parts_v.append(ve.v[merging])
        parts_len.append(ve.length[merging])
        parts_id.append(merging)
        jl, js = self._jaywalker_entities()
        parts_lane.append(jl)
        parts_s.append(js)
        parts_v.append(np.zeros(len(jl)))
        parts_len.append(np.ones(len(jl)))
        parts_id.append(np.full(len(jl), -2))
        return (np.concatenate(parts_lane), np.concatenate(parts_s), np.concatenate(parts_v),
                np.concatenate(parts_len), np.concatenate(parts_id))

    def _leaders(self, idx, key, order, ent_s, ent_v, ent_len, first_s, first_v, first_len,
                 lanes: np.ndarray | None = None, next_lanes: np.ndarray | None = None, with_ids: bool = False):
        """Gap and closing speed to each vehicle's leader on its lane (or on ``lanes``: the lane a
        lane-changer is leaving, whose traffic it must not run into either)."""
        ve, m = self.veh, self.map
        lane = ve.lane[idx] if lanes is None else lanes
        nxt = ve.next_lane[idx] if next_lanes is None else next_lanes
        q = lane * KEY_STRIDE + ve.s[idx]
        pos = np.searchsorted(key, q, side="right")
        has = pos < len(key)
        pos_c = np.minimum(pos, len(key) - 1)
        same = has & (np.floor(key[pos_c] / KEY_STRIDE) == lane)
        lead = order[pos_c]
        gap = np.where(same, ent_s[lead] - ve.s[idx] - (ent_len[lead] + ve.length[idx]) / 2, FREE_GAP_M)
        lv = np.where(same, ent_v[lead], ve.v[idx])
        # nobody ahead on this lane: the first road user on the next lane
        nl = np.where(nxt >= 0, nxt, len(m.lanes))
        rest = m.length[lane] - ve.s[idx]
        g2 = rest + first_s[nl] - (first_len[nl] + ve.length[idx]) / 2
        use2 = ~same & (first_s[nl] < FREE_GAP_M)
        gap = np.where(use2, g2, gap)
        lv = np.where(use2, first_v[nl], lv)
        # a roundabout node: whoever stands in the first metres of any lane leaving it blocks it
        fs = first_s[self.node_succ[lane]]
        j = np.argmin(fs, axis=1)
        fs_min = fs[np.arange(len(idx)), j]
        nb = self.node_succ[lane, j]
        g3 = rest + fs_min - (first_len[nb] + ve.length[idx]) / 2
        use3 = ~same & (fs_min < RB_NODE_M) & (g3 < gap)
        gap = np.where(use3, g3, gap)
        lv = np.where(use3, first_v[nb], lv)
        if with_ids:  # the entity index of the leader on this lane (-1: none there, or it is on a lane ahead)
            return gap, ve.v[idx] - lv, np.where(same & ~use3, lead, -1)
        return gap, ve.v[idx] - lv

    def _stop_points(self, idx: np.ndarray, lights: np.ndarray, occupied: np.ndarray, ego) -> np.ndarray:
        """Distance to the nearest place each vehicle must stop: red/amber light, yield, crosswalk, lane end."""
        ve, m = self.veh, self.map
        lane, s, v = ve.lane[idx], ve.s[idx], ve.v[idx]
        rest = m.length[lane] - s - ve.length[idx] / 2
        gap = np.full(len(idx), FREE_GAP_M)
        nl = ve.next_lane[idx]
        has_next = nl >= 0
        nl_c = np.where(has_next, nl, 0)
        grp = np.where(has_next, m.signal_group[nl_c], -1)
        light = np.where(grp >= 0, lights[np.maximum(grp, 0)], int(Light.GREEN))
        can_stop = v**2 / (2 * 3.0) < rest + 1.0
        # amber: stop if we comfortably can, unless already waiting at the line (clearing a permissive left)
        must_stop = (light == int(Light.RED)) | ((light == int(Light.AMBER)) & can_stop & (rest > 2.5))
        # yield: a conflicting connector is occupied, or claimed by higher-priority traffic arriving soon
        claimed = self._claims(lights)
        conf = self.conflicts[nl_c]
        busy = occupied[conf].any(1) | (claimed[conf] < self.movement_prio[nl_c][:, None]).any(1)
        blocked_cw = self._crosswalk_blocked()
        busy |= blocked_cw[nl_c]
        must_stop |= has_next & (m.kind[nl_c] == LaneKind.CONNECTOR) & busy & (rest > -0.5)
        near = rest < STOP_APPROACH_M
        gap = np.where(has_next & near & must_stop & (rest > -1.0), np.maximum(rest - 1.0, 0.05), gap)
        # a lane that simply ends (lane drop): stop before its end
        dead = ~has_next & ~self.is_sink[lane]
        gap = np.where(dead, np.minimum(gap, np.maximum(rest, 0.05)), gap)
        # on a connector: pedestrians on a crosswalk we are about to cross
        on_conn = m.kind[lane] == LaneKind.CONNECTOR
        if on_conn.any() and self.cw_cross:
            stop_s = self._crosswalk_stops()
            here = stop_s[lane] - s - ve.length[idx] / 2
            gap = np.where(on_conn & (here > -1.0) & (stop_s[lane] < FREE_GAP_M), np.minimum(gap, np.maximum(here, 0.05)), gap)
        return gap

    def _claims(self, lights: np.ndarray) -> np.ndarray:
        """Lowest movement priority value (0 = straight) of vehicles about to enter each lane on green."""
        ve, m = self.veh, self.map
        claim = np.full(len(m.lanes) + 1, 9)
        idx = np.where(ve.active & (ve.next_lane >= 0))[0]
        nl = ve.next_lane[idx]
        rest = m.length[ve.lane[idx]] - ve.s[idx]
        eta = rest / np.maximum(ve.v[idx], 0.5)
        grp = m.signal_group[nl]
        green = (grp < 0) | (lights[np.maximum(grp, 0)] == int(Light.GREEN))
        sel = (eta < YIELD_HORIZON_S) & green & (m.kind[nl] == LaneKind.CONNECTOR)
        np.minimum.at(claim, nl[sel], self.movement_prio[nl[sel]])
        claim[self.ego_claims] = 0  # until its path is clear, the ego may be going straight
        return claim

    def _crosswalk_ped_along(self) -> tuple[np.ndarray, np.ndarray]:
        p = self.ped
        walking = np.where((p.state == 1) & (p.crosswalk >= 0))[0]
        cw = p.crosswalk[walking]
        axis = self.cw_end[cw] - self.cw_start[cw]
        along = ((p.xy[walking] - self.cw_start[cw]) * axis).sum(1) / np.linalg.norm(axis, axis=1)
        return cw, along

    def _crosswalk_blocked(self) -> np.ndarray:
        blocked = np.zeros(len(self.map.lanes) + 1, bool)
        cw, along = self._crosswalk_ped_along()
        if len(cw) == 0:
            return blocked
        for lane, c, _ in self.cw_cross:
            sel = cw == c
            if sel.any() and np.any(np.abs(along[sel] - self.cross_along[(lane, c)]) < PED_BAND_M + 2.0):
                blocked[lane] = True
        return blocked

    def _crosswalk_stops(self) -> np.ndarray:
        stop = np.full(len(self.map.lanes) + 1, FREE_GAP_M)
        cw, along = self._crosswalk_ped_along()
        for lane, c, s in self.cw_cross:
            sel = cw == c
            if sel.any() and np.any(np.abs(along[sel] - self.cross_along[(lane, c)]) < PED_BAND_M):
                stop[lane] = min(stop[lane], s - 2.5)
        return stop

    def _lane_ends(self, order, ent_lane, ent_s, ent_v, ent_len):
        """The first and the last road user on every lane (entities are sorted by lane, then s):
        where a lane has nobody near, a gap continues onto its successor or predecessor."""
        m = self.map
        n = len(m.lanes) + 1
        lanes_sorted = ent_lane[order]
        first_s, first_v, first_len = np.full(n, FREE_GAP_M), np.zeros(n), np.zeros(n)
        last_rest, last_v, last_len, last_ent = np.full(n, FREE_GAP_M), np.zeros(n), np.zeros(n), np.full(n, -1)
        uniq, fi = np.unique(lanes_sorted, return_index=True)
        first_s[uniq], first_v[uniq], first_len[uniq] = ent_s[order][fi], ent_v[order][fi], ent_len[order][fi]
        rev = lanes_sorted[::-1]
        uniq, li = np.unique(rev, return_index=True)
        li = len(rev) - 1 - li
        last_rest[uniq] = m.length[uniq] - ent_s[order][li]
        last_v[uniq], last_len[uniq], last_ent[uniq] = ent_v[order][li], ent_len[order][li], order[li]
        return first_s, first_v, first_len, last_rest, last_v, last_len, last_ent

    def _follower_idm(self, ent: np.ndarray, ent_id: np.ndarray, v: np.ndarray, gap: np.ndarray,
                      dv: np.ndarray) -> np.ndarray:
        """IDM of followers (entity indices, -1: none) as the deciding drivers evaluate them."""
        v0, T, a, b, s0 = (np.full(len(ent), x) for x in ASSUMED_FOLLOWER_IDM)
        if self.mobil.follower_idm == "own":
            vid = np.where(ent >= 0, ent_id[np.maximum(ent, 0)], -1)
            own = vid >= 0  # an NPC (the ego and pedestrians have no IDM parameters: assumed)
            k = np.maximum(vid, 0)
            ve = self.veh
            v0, T, a = np.where(own, ve.v0[k], v0), np.where(own, ve.T[k], T), np.where(own, ve.a_max[k], a)
            b, s0 = np.where(own, ve.b_comf[k], b), np.where(own, ve.s0[k], s0)
        return np.where(ent >= 0, idm(v, v0, gap, dv, T, a, b, s0), 0.0)

    def _mobil_side(self, idx, tgt, key, order, ent_s, ent_v, ent_len, ent_id, ends, acc_now, cur_gap, cur_dv):
        """MOBIL's inputs for a move of each driver ``idx`` onto lane ``tgt`` (a valid lane id), its
        verdict, and the gaps it would have. The new leader and follower are the neighbours in the
        sorted order, continued onto the successor / predecessor lane near a section boundary."""
        ve, m = self.veh, self.map
        first_s, first_v, first_len, last_rest, last_v, last_len, last_ent = ends
        q = tgt * KEY_STRIDE + ve.s[idx]
        pos = np.searchsorted(key, q, side="left")
        lpos = np.minimum(pos, len(key) - 1)
        has_l = (pos < len(key)) & (np.floor(key[lpos] / KEY_STRIDE) == tgt)
        fpos = np.maximum(pos - 1, 0)
        has_f = (pos > 0) & (np.floor(key[fpos] / KEY_STRIDE) == tgt)
        L, F = order[lpos], order[fpos]
        gap_l = np.where(has_l, ent_s[L] - ve.s[idx] - (ent_len[L] + ve.length[idx]) / 2, FREE_GAP_M)
        gap_f = np.where(has_f, ve.s[idx] - ent_s[F] - (ent_len[F] + ve.length[idx]) / 2, FREE_GAP_M)
        lv = np.where(has_l, ent_v[L], ve.v[idx])
        fv = np.where(has_f, ent_v[F], 0.0)
        nx = self.succ_of[tgt]
        g2 = m.length[tgt] - ve.s[idx] + first_s[nx] - (first_len[nx] + ve.length[idx]) / 2
        use = ~has_l & (first_s[nx] < FREE_GAP_M)
        gap_l, lv = np.where(use, g2, gap_l), np.where(use, first_v[nx], lv)
        pv = self.pred_of[tgt]
        g3 = ve.s[idx] + last_rest[pv] - (last_len[pv] + ve.length[idx]) / 2
        use = ~has_f & (last_rest[pv] < FREE_GAP_M)
        gap_f, fv = np.where(use, g3, gap_f), np.where(use, last_v[pv], fv)
        F = np.where(has_f, F, np.where(use, last_ent[pv], -1))
        has_f = has_f | use
        self_pred = idm(ve.v[idx], ve.v0[idx], gap_l, ve.v[idx] - lv, ve.T[idx], ve.a_max[idx], ve.b_comf[idx], ve.s0[idx])
        nf_pred = self._follower_idm(F, ent_id, fv, gap_f, fv - ve.v[idx])
        zero = np.zeros(len(idx))
        nf_now, of_now, of_pred = zero, zero, zero
        if self.mobil.politeness != 0.0:  # the followers' gains count only with Treiber's politeness
            # the new follower now: behind the new leader (the driver's length is the room it would take)
            nf_now = self._follower_idm(F, ent_id, fv, gap_f + ve.length[idx] + gap_l, fv - lv)
            # the old follower: behind the driver now, behind the driver's leader after it left
            own = ve.lane[idx] * KEY_STRIDE + ve.s[idx]
            opos = np.searchsorted(key, own, side="left") - 1
            has_o = (opos >= 0) & (np.floor(key[np.maximum(opos, 0)] / KEY_STRIDE) == ve.lane[idx])
            O = np.where(has_o, order[np.maximum(opos, 0)], -1)
            ov = np.where(has_o, ent_v[np.maximum(O, 0)], 0.0)
            gap_o = ve.s[idx] - ent_s[np.maximum(O, 0)] - (ent_len[np.maximum(O, 0)] + ve.length[idx]) / 2
            of_now = self._follower_idm(O, ent_id, ov, gap_o, ov - ve.v[idx])
            of_pred = self._follower_idm(O, ent_id, ov, gap_o + ve.length[idx] + cur_gap, ov - (ve.v[idx] - cur_dv))
        x = MobilInputs(acc_now, self_pred, nf_now, nf_pred, of_now, of_pred)
        safe, incentive = mobil(x, self.mobil)
        return SideOption(x, safe, incentive, gap_l, gap_f, has_f, F, fv)

    def mobil_options(self) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """What MOBIL says of a move left and right for every active NPC this tick, as the tick
        evaluates it (no ego, no lights): side -> (target lane, -1: none; safe; incentive)."""
        ve, m = self.veh, self.map
        act = np.where(ve.active)[0]
        ent_lane, ent_s, ent_v, ent_len, ent_id, order, key, first_s, first_v, first_len, _ = self._sort(act, None)
        gap, dv = self._leaders(act, key, order, ent_s, ent_v, ent_len, first_s, first_v, first_len)
        acc = idm(ve.v[act], ve.v0[act], gap, dv, ve.T[act], ve.a_max[act], ve.b_comf[act], ve.s0[act])
        ends = self._lane_ends(order, ent_lane, ent_s, ent_v, ent_len)
        out = {}
        for name, side in (("left", m.left), ("right", m.right)):
            tgt = np.full(len(ve), -1)
            safe, gain = np.zeros(len(ve), bool), np.full(len(ve), -np.inf)
            t = side[ve.lane[act]]
            ok = t >= 0
            if ok.any():
                o = self._mobil_side(act[ok], t[ok], key, order, ent_s, ent_v, ent_len, ent_id, ends, acc[ok], gap[ok], dv[ok])
                tgt[act[ok]], safe[act[ok]], gain[act[ok]] = t[ok], o.safe, o.incentive
            out[name] = (tgt, safe, gain)
        return out

    def _lane_changes(self, idx, key, order, ent_lane, ent_s, ent_v, ent_len, ent_id, acc_now, lights, cur_gap,
                      cur_dv) -> None:
        """MOBIL (:func:`dualdrive.world.mobil.mobil`) for the drivers free to change, plus what our
        scenarios add: a keep-right bias, a driver's own aversion to making the new follower brake
        (``polite``), room to swing out of a queue, a wide berth in front of the ego, leaving a lane
        that ends or is blocked, and forced cut-ins."""
        ve, m = self.veh, self.map
        forced = ve.forced_lane[idx] >= 0
        turn = (np.arange(len(idx)) + self.tick // MOBIL_EVERY) % 1 == 0
        rest = m.length[ve.lane[idx]] - ve.s[idx]
        dead_end = ((ve.next_lane[idx] < 0) & ~self.is_sink[ve.lane[idx]]) | self._stuck_veh[idx]
        # the gap search sees one lane only, so no change starts just before a section boundary
        cand = (ve.lc_from[idx] < 0) & ((m.kind[ve.lane[idx]] == LaneKind.ROAD) | dead_end) & (turn | forced) & (
            ve.kind[idx] != Kind.STALLED) & ((rest > LC_MIN_REST_M) | dead_end)
        # in a slow queue a car needs room ahead to swing out without clipping its neighbours
        cand &= (cur_gap > SWING_OUT_GAP_M) | (ve.v[idx] > SWING_OUT_FREE_MPS) | dead_end
        best_gain = np.full(len(idx), -np.inf)
        best_lane = np.full(len(idx), -1)
        ends = self._lane_ends(order, ent_lane, ent_s, ent_v, ent_len)
        for side, bias in ((m.left, -0.1), (m.right, 0.1)):
            tgt = side[ve.lane[idx]]
            ok = cand & (tgt >= 0)
            if not ok.any():
                continue
            o = self._mobil_side(idx, np.where(ok, tgt, 0), key, order, ent_s, ent_v, ent_len, ent_id, ends,
                                 acc_now, cur_gap, cur_dv)
            safe = o.safe & (o.gap_l > 1.0) & (o.gap_f > 1.0)
            follower_is_ego = o.has_f & (o.follower >= 0) & (ent_id[np.maximum(o.follower, 0)] == -1)
            safe &= ~follower_is_ego | (o.gap_f > 2.0 * np.maximum(o.follower_v, 5.0) * 0.6)
            gain = o.incentive - ve.polite[idx] * np.maximum(0.0, -o.inputs.new_follower_pred_a) + bias
            gain = np.where(dead_end & (rest < 250.0), gain + 5.0, gain)
            want_forced = forced & (tgt == ve.forced_lane[idx])
            gain = np.where(want_forced, 100.0, gain)
            safe_forced = want_forced & (o.gap_l > 3.0) & (o.gap_f > 2.0)
            ok &= safe | safe_forced
            better = ok & (gain >= self.mobil.min_gain_mps2) & (gain > best_gain)
            best_gain = np.where(better, gain, best_gain)
            best_lane = np.where(better, tgt, best_lane)
        go = best_lane >= 0
        ids = idx[go]
        if len(ids):
            new = best_lane[go]
            old = ve.lane[ids]
            # lateral offset relative to the new lane keeps the vehicle where it is
            side = np.where(m.left[old] == new, -1.0, 1.0)
            ve.lat[ids] = side * (m.width[old] + m.width[new]) / 2 + ve.lat[ids]
            ve.lc_from[ids] = old
            ve.lane[ids] = new
            ve.forced_lane[ids] = -1
            for i in ids:
                ve.next_lane[i] = self._pick_next(int(ve.lane[i]))

    def _advance_lanes(self, idx: np.ndarray) -> None:
        ve, m = self.veh, self.map
        over = idx[ve.s[idx] > m.length[ve.lane[idx]]]
        for i in over:
            while ve.active[i] and ve.s[i] > m.length[ve.lane[i]]:
                nxt = ve.next_lane[i]
                if nxt < 0 or np.isfinite(ve.release_t[i]) and ve.release_t[i] > 0:
                    if self.is_sink[ve.lane[i]] or ve.release_t[i] > 0:
                        ve.active[i] = False
                    else:
                        ve.s[i] = m.length[ve.lane[i]]
                        ve.v[i] = 0.0
                    break
                ve.s[i] -= m.length[ve.lane[i]]
                # a lane change in progress carries over: its origin is the old origin's continuation
                frm = int(ve.lc_from[i])
                ve.lc_from[i] = -1
                if frm >= 0:
                    for x in m.lanes[frm].successors:
                        if x in (m.left[nxt], m.right[nxt]):
                            ve.lc_from[i] = x
                ve.lane[i] = nxt
                ve.next_lane[i] = self._pick_next(int(nxt))

    def _respawn(self, ego) -> None:
        """Vehicles that left through a sink come back at a free source, so density holds over a drive."""
        ve = self.veh
        gone = np.where(~ve.active & (ve.kind == Kind.CAR) & (ve.release_t <= 0))[0]
        if len(gone) == 0 or len(self.sources) == 0 or self.tick % 10:
            return
        i = int(gone[0])
        src = int(self.sources[self.rng.integers(len(self.sources))])
        on = ve.active & (ve.lane == src) & (ve.s < 25.0)
        if on.any():
            return
        if ego is not None and len(ego) and np.any((ego[:, 0] == src) & (ego[:, 1] < 40.0)):
            return
        # nor next to the ego when it is about to enter the source lane from a link (a lot exit)
        if self.ego_xy is not None and np.linalg.norm(self.map.pts[self.map.offset[src]] - self.ego_xy) < SPAWN_CLEAR_M:
            return
        ve.lane[i], ve.s[i], ve.lat[i], ve.lc_from[i] = src, 0.0, 0.0, -1
        ve.v[i] = min(ve.v0[i], self.map.speed_limit[src]) * 0.8
        ve.active[i] = True
        ve.next_lane[i] = self._pick_next(src)

    def _release_and_trigger(self, t_s: float, ego) -> None:
        ve = self.veh
        # a released blocker drives off at walking pace and leaves at the end of its lane
        rel = (ve.release_t > 0) & (ve.release_t <= t_s) & ve.active & (ve.v0 == 0)
        ve.v0[rel] = 3.0

    # -- pedestrians --------------------------------------------------------------------------
    def _jaywalker_entities(self) -> tuple[np.ndarray, np.ndarray]:
        p, m = self.ped, self.map
        walking = np.where((p.state == 1) & (p.crosswalk < 0))[0]
        lanes, ss = [], []
        for i in walking:
            d2 = ((m.pts - p.xy[i]) ** 2).sum(1)
            near = d2 < (m.width[m.pt_lane] / 2 + 1.2) ** 2
            for lane in np.unique(m.pt_lane[near]):
                s, _ = m.hw_lanes[lane].local_coordinates(p.xy[i])
                lanes.append(lane)
                ss.append(s)
        return np.array(lanes, dtype=np.int64), np.array(ss, dtype=float)

    def _step_pedestrians(self, dt: float, t_s: float, lights: np.ndarray, ego) -> None:
        p = self.ped
        if len(p.state) == 0:
            return
        waiting = p.state == 0
        on_cw = p.crosswalk >= 0
        wait_ok = np.zeros(len(p.state), bool)
        if on_cw.any():
            grp = self.cw_group[np.maximum(p.crosswalk, 0)]
            wait_ok = on_cw & (lights[grp] == int(Light.GREEN))
        p.wait_s = np.where(waiting, p.wait_s - dt, p.wait_s)
        start = waiting & on_cw & wait_ok & (p.wait_s <= 0)
        if self.ego_xy is not None and start.any():
            # nobody steps off the kerb in front of a car that is already on or at the crosswalk
            cw = np.maximum(p.crosswalk, 0)
            a, b = self.cw_start[cw], self.cw_end[cw]
            ab = b - a
            t = np.clip(np.einsum("ij,ij->i", self.ego_xy - a, ab) / np.maximum(np.einsum("ij,ij->i", ab, ab), 1e-6), 0, 1)
            near = np.linalg.norm(a + t[:, None] * ab - self.ego_xy, axis=1) < CAR_ON_CROSSWALK_M
            start &= ~near
        if self.ego_xy is not None:
            jay = waiting & ~on_cw & (np.linalg.norm(p.trigger_xy - self.ego_xy, axis=1) < p.trigger_m)
            start |= jay
        p.state = np.where(start, 1, p.state)
        walking = p.state == 1
        step = np.where(walking, p.speed * dt, 0.0)
        if self.ego_pose is not None and walking.any():
            # a pedestrian does not walk into a car standing in its way: it waits for it to clear
            xy, h, length, width = self.ego_pose
            ahead = world_to_ego(p.xy + p.dir * PED_LOOK_AHEAD_M, xy, h)
            in_way = (np.abs(ahead[:, 0]) < length / 2 + PED_CLEAR_OF_CAR_M) & (np.abs(ahead[:, 1]) < width / 2 + PED_CLEAR_OF_CAR_M)
            step = np.where(walking & in_way, 0.0, step)
            self.ped_halted = walking & in_way
        else:
            self.ped_halted = np.zeros(len(p.state), bool)
        p.xy = p.xy + p.dir * step[:, None]
        p.remaining_m = p.remaining_m - step
        done = walking & (p.remaining_m <= 0)
        if done.any():
            # crosswalk users turn round and wait for the next walk phase; jaywalkers leave
            back = done & on_cw
            p.dir[back] = -p.dir[back]
            cw = p.crosswalk[back]
            p.remaining_m[back] = np.linalg.norm(self.cw_end[cw] - self.cw_start[cw], axis=1)
            p.wait_s[back] = self.rng.uniform(8.0, 40.0, back.sum())
            p.state = np.where(back, 0, np.where(done, 2, p.state))


def _prio(movement: Movement) -> int:
    return {Movement.STRAIGHT: 0, Movement.RIGHT: 1, Movement.LEFT: 2}[Movement(movement)]
