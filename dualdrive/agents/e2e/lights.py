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
within about 8 m of it. While latched, the plan is re-timed (:func:`dualdrive.planning.retime.retime_plan`,
``stop_at_m``) so that the car stands ``stop_back_m`` before the junction's entry (the distance the navigation
gives), where it still sees the lamp. A car that is already past where it could stop (an amber turning red over
it) is left to go on: braking in the box is worse.

The rule only ever slows a forward plan; the network's path is kept. Off with ``--no-lights`` (``drive``,
``eval``), ``$DUALDRIVE_E2E_LIGHTS=0`` or ``E2EAgent(lights=False)``, and in
:func:`dualdrive.agents.e2e.agent.network_alone`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from dualdrive.agents.modular.perception import AMBER, GREEN, RED, read_traffic_light
from dualdrive.world.commands import JUNCTION_COMMANDS, junction_entry_target

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
    """Metres to the entry of the next junction on the route, or None where none is within the route's view:
    the navigation's distance under a junction command, else along the route's targets to the junction's entry
    target (:func:`dualdrive.world.commands.junction_entry_target`; up to a target spacing short, which is the
    safe side for a stop)."""
    command = int(np.asarray(obs.get("command", [-1])).reshape(-1)[0])
    if command in JUNCTION_COMMANDS and "command_distance_m" in obs:
        return float(np.asarray(obs["command_distance_m"]).reshape(-1)[0])
    k = junction_entry_target(np.asarray(obs.get("route_command", []), int).reshape(-1))
    if k is None or "route_xy_ego_m" not in obs:
        return None  # none in view, or a stock env without navigation
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

