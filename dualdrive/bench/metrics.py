"""The field's driving metrics, each a pure function of an :class:`~dualdrive.bench.log.EpisodeLog`.

- CARLA Leaderboard 1.0: route completion (RC), the multiplicative infraction penalty (IS) and the
  driving score DS = RC x IS. As on the leaderboard, the share of the route driven off the road or
  in the wrong lane does not count towards RC. (The world has no stop signs, so their 0.80
  penalty never applies.)
- NAVSIM's PDM score, PDMS = NC x DAC x (5 TTC + 5 EP + 2 C) / 12, evaluated closed loop: the
  driven trajectory is cut into 4 s windows (NAVSIM's horizon) that are scored like NAVSIM
  scenes and averaged. Ego progress (EP) compares the progress made with what the road allowed
  (the speed limit, capped by a slower vehicle ahead and zero before a red light); like NAVSIM, a
  window where less than 5 m were possible scores EP = 1. Windows of parking manoeuvres (reverse
  gear, or after arriving at the lot) have no EP; parking has its own metrics.
- Parking: parked, final position and heading error, gear changes, time to park.

All scores are on a 0-100 scale.
"""
from __future__ import annotations

import numpy as np
from scipy.signal import savgol_filter

from dualdrive.bench.log import ACTOR_KINDS, EpisodeLog
from dualdrive.instructions.intent import GENTLE_SPEED_OF_LIMIT, STOP_DECEL_MPS2
from dualdrive.world.geometry import box_corners, boxes_overlap, world_to_ego

CARLA_PENALTY = {"collision_pedestrian": 0.50, "collision_vehicle": 0.60, "collision_static": 0.65,
                 "red_light": 0.70, "stop_sign": 0.80}
PDM_WINDOW_S = 4.0
EP_MIN_M = 5.0  # NAVSIM: with less progress possible than this, EP is 1
TTC_HORIZON_S = np.arange(0.1, 0.91, 0.1)  # NAVSIM: time to collision below 0.9 s is a violation
TTC_MIN_SPEED_MPS = 0.5
TTC_STRIDE = 2  # checked every other tick (5 Hz)
LEAD_RANGE_M = 10.0  # a slower vehicle ahead in our path within this plus LEAD_HEADWAY_S at the limit
LEAD_HEADWAY_S = 2.5  # caps the progress possible (an IDM reference planner would follow it too)
LEAD_HALF_WIDTH_M = 2.0
RED_LIGHT_LOOK_M = 40.0  # a red light this close ahead on the route: the road allows no progress
STATIONARY_MPS = 0.05
# nuPlan / NAVSIM comfort bounds
COMFORT_LON_ACC = (-4.05, 2.40)
COMFORT_LAT_ACC = 4.89
COMFORT_JERK = 4.13
COMFORT_YAW_RATE = 0.95
COMFORT_YAW_ACC = 1.93
SAVGOL_WINDOW = 15


# -- CARLA Leaderboard 1.0 ---------------------------------------------------------------------
def route_completion(log: EpisodeLog) -> float:
    """Share of the route (to the arrival point) driven, 0-100. Parking: 100 once parked."""
    rc = 100.0 * min(1.0, float(log.progress_m[-1]) / max(float(log.meta["arrival_m"]), 1e-6))
    if log.family == "parking":
        return 100.0 if log.meta["outcome"].get("parked") else min(rc, 99.0)
    return rc


def off_route_share(log: EpisodeLog) -> float:
    """Percent of the route whose progress was made off the road or in the wrong lane."""
    gain = np.maximum(np.diff(log.progress_m, prepend=log.progress_m[0]), 0.0)
    bad = log.off_road | log.wrong_lane
    return 100.0 * float(gain[bad].sum()) / max(float(log.meta["arrival_m"]), 1e-6)


def infraction_score(infractions: list[dict]) -> float:
    """Product of the leaderboard's penalty coefficients over all infractions (1.0 = none), 0-1."""
    return float(np.prod([CARLA_PENALTY.get(i["type"], 1.0) for i in infractions]))


def carla_scores(log: EpisodeLog) -> dict[str, float]:
    rc = max(0.0, route_completion(log) - off_route_share(log))
    inf = infraction_score(log.infractions)
    return {"route_completion": rc, "infraction_score": 100.0 * inf, "driving_score": rc * inf}


# -- NAVSIM PDM score --------------------------------------------------------------------------
def _ego_size(log: EpisodeLog) -> tuple[float, float]:
    return float(log.meta.get("ego_length_m", 5.0)), float(log.meta.get("ego_width_m", 2.0))


def collision_at_fault(log: EpisodeLog, infraction: dict) -> bool:
    """NAVSIM/nuPlan: not the ego's fault if it stood still, or if the other hit it from behind."""
    i = int(np.argmin(np.abs(log.t_s - float(infraction["t_s"]))))
    if abs(log.ego[i, 3]) < STATIONARY_MPS:
        return False
    kind = ACTOR_KINDS.index(infraction["type"].removeprefix("collision_"))
    hit = np.where((log.actor_kind[i] == kind) & (log.actor_id[i] == infraction.get("id", -1)))[0]
    if len(hit) == 0:
        return True
    a = log.actors[i, hit[0]]
    rel = world_to_ego(a[None, :2], log.ego[i, :2], float(log.ego[i, 2]))[0]
    length, _ = _ego_size(log)
    rear_ended = rel[0] < -length / 4 and a[3] > abs(log.ego[i, 3]) and kind != ACTOR_KINDS.index("static")
    return not rear_ended


def _windows(log: EpisodeLog) -> list[np.ndarray]:
    n = max(1, int(round(PDM_WINDOW_S / log.dt_s)))
    idx = np.arange(len(log.t_s))
    out = [idx[k:k + n] for k in range(0, len(idx), n)]
    if len(out) > 1 and len(out[-1]) * log.dt_s < 1.0:  # a stub under a second joins the window before
        last = out.pop()
        out[-1] = np.concatenate([out[-1], last])
    return out


def _ttc_violations(log: EpisodeLog) -> np.ndarray:
    """Per tick: projecting ego and actors at constant velocity, the ego would hit an actor ahead
    of it within 0.9 s (actors already touching it count as collisions, not here)."""
    length, width = _ego_size(log)
    bad = np.zeros(len(log.t_s), bool)
    for i in range(0, len(log.t_s), TTC_STRIDE):
        x, y, h, v = log.ego[i, :4]
        valid = log.actor_kind[i] >= 0
        if v < TTC_MIN_SPEED_MPS or not valid.any():
            continue
        a = log.actors[i, valid]
        rel = world_to_ego(a[:, :2], log.ego[i, :2], float(h))
        a = a[(rel[:, 0] > 0) & (np.linalg.norm(rel, axis=1) < v * TTC_HORIZON_S[-1] + 15.0)]
        if len(a) == 0:
            continue
        now = boxes_overlap(box_corners(np.array([x, y]), h, length, width)[0],
                            box_corners(a[:, :2], a[:, 2], a[:, 4], a[:, 5]))
        a = a[~now]
        for tau in TTC_HORIZON_S:
            ego_box = box_corners(np.array([x, y]) + v * tau * np.array([np.cos(h), np.sin(h)]), h, length, width)[0]
            xy = a[:, :2] + (a[:, 3] * tau)[:, None] * np.column_stack([np.cos(a[:, 2]), np.sin(a[:, 2])])
            if len(a) and boxes_overlap(ego_box, box_corners(xy, a[:, 2], a[:, 4], a[:, 5])).any():
                bad[i] = True
                break
    return bad


def _allowed_speed(log: EpisodeLog) -> np.ndarray:
    """Per tick, the fastest the road allowed: the route's speed limit, a slower vehicle just ahead
    in our path, nothing at all before a red light."""
    v = log.speed_limit_mps.copy()
    veh = ACTOR_KINDS.index("vehicle")
    for i in range(len(v)):
        sel = log.actor_kind[i] == veh
        if sel.any():
            a = log.actors[i, sel]
            rel = world_to_ego(a[:, :2], log.ego[i, :2], float(log.ego[i, 2]))
            reach = LEAD_RANGE_M + LEAD_HEADWAY_S * log.speed_limit_mps[i]
            ahead = (rel[:, 0] > 0) & (rel[:, 0] < reach) & (np.abs(rel[:, 1]) < LEAD_HALF_WIDTH_M)
            if ahead.any():
                lead = int(np.argmin(np.where(ahead, rel[:, 0], np.inf)))
                v[i] = min(v[i], max(0.0, a[lead, 3] * np.cos(a[lead, 2] - log.ego[i, 2])))
        for p_stop, g in log.meta.get("stop_lines", []):
            if 0.0 < p_stop - log.progress_m[i] < RED_LIGHT_LOOK_M and log.lights[i, int(g)] == 0:
                v[i] = 0.0
    return v


def _comfortable(log: EpisodeLog) -> np.ndarray:
    """Per tick: within nuPlan's comfort bounds (derivatives from a Savitzky-Golay filter)."""
    n, dt = len(log.t_s), log.dt_s
    if n < SAVGOL_WINDOW:
        return np.ones(n, bool)
    v = log.ego[:, 3]
    yaw = np.unwrap(log.ego[:, 2])
    lon_acc = savgol_filter(v, SAVGOL_WINDOW, 2, deriv=1, delta=dt)
    jerk = savgol_filter(v, SAVGOL_WINDOW, 3, deriv=2, delta=dt)
    yaw_rate = savgol_filter(yaw, SAVGOL_WINDOW, 2, deriv=1, delta=dt)
    yaw_acc = savgol_filter(yaw, SAVGOL_WINDOW, 3, deriv=2, delta=dt)
    lat_acc = v * yaw_rate
    return ((lon_acc >= COMFORT_LON_ACC[0]) & (lon_acc <= COMFORT_LON_ACC[1]) & (np.abs(lat_acc) <= COMFORT_LAT_ACC)
            & (np.abs(jerk) <= COMFORT_JERK) & (np.abs(yaw_rate) <= COMFORT_YAW_RATE)
            & (np.abs(yaw_acc) <= COMFORT_YAW_ACC))


def pdm_scores(log: EpisodeLog) -> dict[str, float]:
    """Mean over 4 s windows of NAVSIM's sub-scores and PDMS, 0-100."""
    coll = [(float(i["t_s"]), 0.5 if i["type"] == "collision_static" else 0.0) for i in log.infractions
            if i["type"].startswith("collision") and collision_at_fault(log, i)]
    ttc_bad = _ttc_violations(log)
    comfy = _comfortable(log)
    allowed = _allowed_speed(log)
    arrival = float(log.meta["arrival_m"])
    rows = []
    for w in _windows(log):
        t0, t1 = log.t_s[w[0]], log.t_s[w[-1]]
        nc = min([c for t, c in coll if t0 - 1e-9 <= t <= t1 + 1e-9] + [1.0])
        dac = 0.0 if log.off_road[w].any() else 1.0
        ttc = 0.0 if ttc_bad[w].any() else 1.0
        c = 1.0 if comfy[w].all() else 0.0
        manoeuvring = (log.gear[w] < 0).any() or log.progress_m[w[0]] >= arrival - 2.0
        end = min(int(w[-1]) + 1, len(log.t_s) - 1)  # up to the next window's first tick
        possible = float(allowed[w[0]:end].sum() * log.dt_s)
        if manoeuvring:
            ep = np.nan
            pdms = nc * dac * (5 * ttc + 2 * c) / 7
        else:
            made = float(log.progress_m[end] - log.progress_m[w[0]])
            ep = 1.0 if possible < EP_MIN_M else float(np.clip(made / possible, 0.0, 1.0))
            pdms = nc * dac * (5 * ttc + 5 * ep + 2 * c) / 12
        rows.append((nc, dac, ttc, ep, c, pdms))
    r = np.array(rows)
    ep = r[:, 3][~np.isnan(r[:, 3])]
    return {"nc": 100 * r[:, 0].mean(), "dac": 100 * r[:, 1].mean(), "ttc": 100 * r[:, 2].mean(),
            "ep": 100 * (ep.mean() if len(ep) else 1.0), "comfort": 100 * r[:, 4].mean(), "pdms": 100 * r[:, 5].mean()}


# -- parking -----------------------------------------------------------------------------------
def parking_scores(log: EpisodeLog) -> dict[str, float | bool | None]:
    out = log.meta["outcome"]
    if "parked" not in out:
        return {}
    parked = bool(out["parked"])
    t_end = float(log.t_s[-1])
    if log.family == "parking":
        t_start = 0.0
    else:
        arrived = np.where(log.progress_m >= float(log.meta["arrival_m"]) - 2.0)[0]
        t_start = float(log.t_s[arrived[0]]) if len(arrived) else t_end
    return {"parked": parked, "parking_position_error_m": float(out["parking_position_error_m"]),
            "parking_heading_error_deg": float(out["parking_heading_error_deg"]),
            "gear_changes": int(np.count_nonzero(np.diff(log.gear.astype(int)))),
            "time_to_park_s": t_end - t_start if parked else None}


# -- everything --------------------------------------------------------------------------------
def episode_metrics(log: EpisodeLog) -> dict:
    """All metrics of one episode (scores 0-100) plus its outcome flags and infraction counts."""
    out = log.meta["outcome"]
    m = {**carla_scores(log), **pdm_scores(log), **parking_scores(log)}
    m["success"] = bool(out.get("success", False))
    m["success_rate"] = 100.0 if m["success"] else 0.0
    m["blocked"] = bool(out.get("blocked", False))
    m["timeout"] = bool(out.get("timeout", False)) and not m["blocked"]
    m["duration_s"] = float(log.t_s[-1])
    counts: dict[str, int] = {}
    for i in log.infractions:
        counts[i["type"]] = counts.get(i["type"], 0) + 1
    m["infractions"] = counts
    return m


# -- passenger instructions ------------------------------------------------------------------
# what gentle and the stops ask for is the instruction's definition (GENTLE_SPEED_OF_LIMIT,
# STOP_DECEL_MPS2 from dualdrive.instructions.intent); the tolerances and slack below are the benchmark's
GENTLE_ACCEL_P95_MPS2 = 1.2
SETTLE_S = 5.0  # time the car is given to come down to a gentle speed
STOP_SPEED_MPS = 0.1
STOP_SLACK_S = {"stop_now": 2.0, "pull_over": 4.0}
RULE_SPEED_TOLERANCE_MPS = 0.5


def instruction_scores(log: EpisodeLog, slots: dict[str, str], status: str, from_s: float = 0.0) -> dict:
    """Whether the drive honoured the passenger's instruction (100 or 0), with each check.

    `slots` and `status` are the instruction as the car understood it. A refused instruction is
    honoured when the car kept to the rules anyway (no red light run, never over the limit). Each
    slot is checked on the log from `from_s` on: gentle (under 75 % of the limit once settled, the
    95th percentile of acceleration under 1.2 m/s^2), stop now / pull over (standstill within the
    time a 4 / 1.5 m/s^2 stop takes, plus slack, and no moving off again). Route and spot
    preferences are not acted on yet: they count as not honoured."""
    t, v, a = log.t_s, log.ego[:, 3], log.ego[:, 4]
    after = t >= from_s
    checks: dict[str, bool] = {}
    if status == "refused":
        red = any(i["type"] == "red_light" for i in log.infractions)
        fast = bool((v > log.speed_limit_mps + RULE_SPEED_TOLERANCE_MPS).any())
        checks["kept_to_the_rules"] = not red and not fast
    if status == "clarify":
        checks["understood"] = False
    for slot, value in slots.items():
        if slot == "style" and value == "gentle":
            settled = t >= from_s + SETTLE_S
            slow = bool((v[settled] <= GENTLE_SPEED_OF_LIMIT * log.speed_limit_mps[settled]
                         + RULE_SPEED_TOLERANCE_MPS).all())
            smooth = bool(np.percentile(a[after], 95) <= GENTLE_ACCEL_P95_MPS2) if after.any() else True
            checks["gentle_speed"], checks["gentle_accel"] = slow, smooth
        elif slot == "stop":
            i0 = int(np.argmax(after)) if after.any() else len(t) - 1
            deadline = t[i0] + abs(v[i0]) / STOP_DECEL_MPS2[value] + STOP_SLACK_S[value]
            still = np.where(after & (np.abs(v) < STOP_SPEED_MPS))[0]
            stopped = bool(len(still)) and t[still[0]] <= deadline
            checks[f"{value}_in_time"] = stopped
            checks[f"{value}_held"] = stopped and bool((np.abs(v[still[0]:]) < 3 * STOP_SPEED_MPS).all())
        elif slot == "style" and value == "brisk":
            checks["brisk_within_the_limit"] = not bool((v > log.speed_limit_mps + RULE_SPEED_TOLERANCE_MPS).any())
        else:  # route and spot preferences: not acted on yet
            checks[f"{slot}_{value}"] = False
    honoured = bool(checks) and all(checks.values())
    return {"instruction_honoured": 100.0 if honoured else 0.0, "instruction_checks": checks}

