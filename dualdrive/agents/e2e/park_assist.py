"""The parking assist: in a car park, the modular pipeline's parking function drives System 1's car.

Why: the network gets every P2P drive to the destination car park (RC 93-97 % on the evaluation seeds since
the leaving latch) and parks in none of them: it drives the search loop wide and ends 3-10 m off any free spot
when the 480 s run out (``runs/eval/s6b_p2p.json``). On the ``parking`` suite, which is all car park, it parks 0
of 4 and gets lost in the aisles (parking 5000: off the car park's ground 24 s in, RC 19 %). Parking needs a
free bay found and a path into it to within 0.5 m and 10 degrees, which 8 poses at 0.5 s imitated from 40
episodes do not give. Production cars pair their driving network with a parking function (automated parking,
from the spot to the road and from the car park's entry to a bay) for the same reason; this is ours.

What drives: :class:`dualdrive.agents.modular.agent.ModularAgent`, from the sensor suite only (LiDAR free-bay
finder, the leave and park paths, the manoeuvre tracker, its lattice planner along the aisles); on its own it
parks 10 of 10 P2P and 12 of 12 parking drives of the development seeds, but only 4 of 8 P2P drives of the
evaluation seeds 5000:5008 (in lot B its search can reject every free bay it finds). Where:
- from the start, when the navigation says LEAVE_SPOT, until the car is out of the car park (the navigation's
  speed limit where the car is rises above the aisles' 4 m/s: on the access lane), then System 1 drives;
- at the destination: from where the route's next targets (80 m ahead) show the aisles to park in, until the end.
  Not from the ENTER_LOT command: the world gives it on a motorway's exit ramp into town too.
The plan guard does not check its plans (its planner and its park paths check obstacles themselves, and the
guard's margins would stop a car reversing into a bay between two cars).

Off with ``--no-park-assist`` (``drive``, ``eval``), ``$DUALDRIVE_E2E_PARK_ASSIST=0`` or
``E2EAgent(park_assist=False)``, and in
:func:`dualdrive.agents.e2e.agent.network_alone`: with it off, the network drives the car parks on its own.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from dualdrive.agents.base import Plan
from dualdrive.world.commands import Command

PARK = int(Command.PARK)
LEAVE_SPOT = int(Command.LEAVE_SPOT)


@dataclass(frozen=True)
class ParkAssistConfig:
    enabled: bool = True
    # a car park's aisles are signed 4 m/s (dualdrive.world.builders.AISLE_SPEED); access lanes and roads 7 and up
    car_park_limit_mps: float = 4.5


def _commands(obs: dict[str, Any]) -> tuple[int, np.ndarray, float]:
    command = int(np.asarray(obs["command"]).reshape(-1)[0])
    route_cmd = np.asarray(obs.get("route_command", []), int).reshape(-1)
    limit = float(np.asarray(obs.get("speed_limit_mps", [np.inf]), float).reshape(-1)[0])
    return command, route_cmd, limit


class ParkAssist:
    """Call :meth:`act` every decision: a plan while the assist drives, else None (System 1 drives). The modular
    agent is asked only while it drives: its odometry starts where it takes over."""

    def __init__(self, config: ParkAssistConfig | None = None) -> None:
        self.cfg = config or ParkAssistConfig()
        self.driver = None
        self.reset()

    def reset(self) -> None:
        self.active = False  # the modular agent drives (started at LEAVE_SPOT, or with the destination in view)
        self.destination = False  # the destination's aisles have come in view: no handing back from here on
        self.handed_back = 0  # times the assist gave the car back to System 1 (out of the start car park)
        self.debug: dict[str, Any] = {}

    def _start(self) -> None:
        if self.driver is None:  # imported here: an agent without the assist never builds the modular pipeline
            from dualdrive.agents.modular.agent import ModularAgent
            self.driver = ModularAgent()
        self.driver.reset({})
        self.active = True

    def act(self, obs: dict[str, Any]) -> Plan | None:
        if not self.cfg.enabled:
            return None
        command, route_cmd, limit = _commands(obs)
        in_car_park = limit <= self.cfg.car_park_limit_mps
        # the destination's aisles in the route's view (its targets reach 80 m ahead): the assist drives from here,
        # so that it is in charge before the car is in the car park. Taking over only there, the network had
        # brought the car in at 10-19 m/s, past the first free bays and the route's end (P2P 5000, 5002, 5014)
        destination = command == PARK or bool(np.any(route_cmd == PARK))
        if self.active and not self.destination and not destination and not in_car_park and command != LEAVE_SPOT:
            self.active = False  # out of the start car park: System 1 drives the roads
            self.handed_back += 1
            self.debug = {}
            return None
        if not self.active:
            if command != LEAVE_SPOT and not destination:
                return None
            self._start()  # from LEAVE_SPOT, the modular agent's first decision backs out of the spot
        self.destination = self.destination or destination
        plan = self.driver.act(obs)
        if not isinstance(plan, Plan):
            return None
        self.debug = {"phase": f"park assist: {self.driver.debug.get('phase', '')}".rstrip(": ")}
        return plan
