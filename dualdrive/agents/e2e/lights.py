"""The red-light rule: System 1's plan is cut short of a junction whose light the camera shows red.

Why a rule: the shipped network does not read the lamp's colour. In urban 5006 it drives 43 m up to a red
light with nothing ahead while its light head says 0.46 red / 0.47 green, and the same with the camera
replaced by flat grey (``tools/diagnostics/sensor_ablation.py``: a grey camera costs the light head 0.943 ->
0.877 and makes the plan *better*); 11 of 12 urban drives and 6 of 8 P2P drives ran a red light. Learning the
colour needs far more red-light approaches than the 40-episode ``make model`` data holds (a model trained from
scratch with a camera light head memorised its training lights). Production end-to-end stacks keep rule-based
checks between the network and the wheels for exactly such cases; this is one, beside the plan guard.

What it does, as the modular pipeline does it (``dualdrive.agents.modular.agent``): the lit lamp's colour is
read from the camera frame (:func:`dualdrive.agents.modular.perception.read_traffic_light`, saturated pixels
above the horizon); within ``watch_m`` of a junction on the route a red (or an amber the car can stop for at
``amber_decel_mps2``) latches a stop until a green is seen, because the camera loses a light head 4.5 m up
within about 8 m of it. While latched, the plan is re-timed (:func:`stop_within`) so that the car stands
``stop_back_m`` before the junction's entry (the distance the navigation gives), where it still sees the lamp. A car that is already past where it
could stop (an amber turning red over it) is left to go on: braking in the box is worse.

The rule only ever slows a forward plan; the network's path is kept. Off with ``--no-lights`` (``drive``,
``eval``), ``$DUALDRIVE_E2E_LIGHTS=0`` or ``E2EAgent(lights=False)``, and in
:func:`dualdrive.agents.e2e.agent.network_alone`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from dualdrive.agents.base import Plan
from dualdrive.agents.modular.perception import read_traffic_light
from dualdrive.world.commands import Command

RED, AMBER, GREEN = 0, 1, 2  # read_traffic_light's states
JUNCTION_COMMANDS = (int(Command.TURN_LEFT), int(Command.TURN_RIGHT), int(Command.GO_STRAIGHT))
CAMERA_KEY = "camera_front_rgb"


@dataclass(frozen=True)
class LightRuleConfig:
    enabled: bool = True
    watch_m: float = 60.0  # a light matters this close to a junction on the route
    # first in line, the car's centre stands this far before the junction's entry: the camera loses the lamp (a head
    # 4.5 m up) when the centre is about 8-9 m from it (urban 5006: seen at 9.9 m, gone at 7.9 m), and a car
    # that cannot see the green waits for ever
    stop_back_m: float = 10.0
    amber_decel_mps2: float = 3.0  # amber: stop if this deceleration suffices, else go on
    max_decel_mps2: float = 6.0  # red: stop if this suffices (a red seen late), else go on
    hold_frames: int = 10  # a reading stays good this many decisions without a camera frame

    def __post_init__(self) -> None:
        if self.watch_m <= 0 or self.stop_back_m < 0 or self.amber_decel_mps2 <= 0 or \
                self.max_decel_mps2 < self.amber_decel_mps2 or self.hold_frames < 0:
            raise ValueError("lights.watch_m must be > 0, stop_back_m >= 0, amber_decel_mps2 > 0, max_decel_mps2 >= "
                             "amber_decel_mps2 and hold_frames >= 0")


def junction_distance(obs: dict[str, Any]) -> float | None:
    """Metres to the entry of the next junction on the route, or None where none is within the route's view.

    The announced command is only the next manoeuvre: a lane change just before a junction hides the junction's
    turn until it is done, so the route's per-target commands are read too. Their last target of the junction's
    run is its entry, up to a target spacing short (stopping a little early is the safe side)."""
    command = int(np.asarray(obs.get("command", [-1])).reshape(-1)[0])
    if command in JUNCTION_COMMANDS and "command_distance_m" in obs:
        return float(np.asarray(obs["command_distance_m"]).reshape(-1)[0])
    route_cmd = np.asarray(obs.get("route_command", []), int).reshape(-1)
    hits = np.nonzero(np.isin(route_cmd, JUNCTION_COMMANDS))[0]
    if not len(hits):
        return None
    k = int(hits[0])
    while k + 1 < len(route_cmd) and route_cmd[k + 1] == route_cmd[hits[0]]:
        k += 1
    if "route_xy_ego_m" not in obs:
        return None  # a stock env without navigation: no junction to know of
    route = np.asarray(obs["route_xy_ego_m"], float).reshape(-1, 2)[: k + 1]
    path = np.vstack([[0.0, 0.0], route])
    return float(np.linalg.norm(np.diff(path, axis=0), axis=1).sum())


class LightRule:
    """Call :meth:`stop_distance` once a decision: metres the plan may run (None: no light to stop for)."""

    def __init__(self, config: LightRuleConfig | None = None) -> None:
        self.cfg = config or LightRuleConfig()
        self.reset()

    def reset(self) -> None:
        self.light: int | None = None
        self.latched = False
        self._since_frame = 0

    def _read(self, obs: dict[str, Any]) -> None:
        valid = bool(np.asarray(obs.get("camera_front_valid", 1)).reshape(-1)[0])
        if valid and CAMERA_KEY in obs:
            self.light = read_traffic_light(np.asarray(obs[CAMERA_KEY]))
            self._since_frame = 0
            return
        self._since_frame += 1
        if self._since_frame > self.cfg.hold_frames:
            self.light = None

    def stop_distance(self, obs: dict[str, Any], speed_mps: float) -> float | None:
        if not self.cfg.enabled:
            return None
        self._read(obs)
        dist = junction_distance(obs)
        if dist is None or dist > self.cfg.watch_m:
            self.latched = False
            return None
        v = max(0.0, speed_mps)
        if self.light == GREEN:
            self.latched = False
        elif self.light == RED:
            self.latched = True
        elif self.light == AMBER and not self.latched:
            self.latched = v * v / (2 * self.cfg.amber_decel_mps2) < dist - self.cfg.stop_back_m
        if not self.latched:
            return None
        stop = dist - self.cfg.stop_back_m
        if stop > 0:
            return stop
        # past the place to stand (crept up, or a red seen late): stop now if the car can before the entry,
        # else go on through (braking in the junction's box is worse)
        return 0.0 if v * v / (2 * self.cfg.max_decel_mps2) < dist - 0.5 else None


def stop_within(plan: Plan, distance_m: float, speed_mps: float, decel_mps2: float = 2.0,
                step_s: float = 0.1) -> Plan:
    """The plan's path, driven no faster than the plan itself and no faster than lets the car stop at
    ``distance_m`` along it braking at ``decel_mps2`` (harder if it must: the deceleration that stops it there
    from ``speed_mps``). Re-timed rather than cut: a plan that runs at speed up to the stop and then stands
    asks the follower for the whole stop in one step, and it overran the stand point by metres (urban 5006)."""
    path = np.vstack([[0.0, 0.0, 0.0], plan.poses])
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(path[:, :2], axis=0), axis=1))])
    d = max(0.0, float(distance_m))  # beyond the plan's end too: the braking starts where the stop needs it
    v0 = max(0.0, speed_mps)
    a = max(decel_mps2, v0 * v0 / (2 * max(d, 1e-3)))
    t_plan = plan.dt_s * np.arange(len(path))
    n = int(round(plan.dt_s * len(plan.poses) / step_s))
    s, out = 0.0, []
    for k in range(1, n + 1):
        v_cap = np.sqrt(2 * a * max(d - s, 0.0))
        s = min(s + v_cap * step_s, float(np.interp(k * step_s, t_plan, arc)), d)
        if k % int(round(plan.dt_s / step_s)) == 0:
            out.append(s)
    s_k = np.asarray(out)
    poses = np.column_stack([np.interp(s_k, arc, path[:, i]) for i in range(3)])
    return Plan(poses, plan.gear, plan.dt_s)
