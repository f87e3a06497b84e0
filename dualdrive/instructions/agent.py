"""Any driver, honouring a passenger's intent on the plan it returns.

The wrapper only ever takes speed away along the driver's own path, so it cannot make a plan less
safe than the driver's: a gentle style drives the path at no more than 75 % of the speed limit and
gains speed at most 1 m/s^2 (a cap, not a scale: drivers plan from their current speed, so scaling
each plan would compound tick after tick into a crawl); "stop now" brakes firmly along the path (4 m/s^2) and "pull over" brakes
gently (1.5 m/s^2), both to a standstill that then holds. What it cannot act on yet it says
(`unsupported`): route and spot preferences need the route planner and the spot search to take
them, and pulling over to the kerb needs the lane geometry; a brisk style asks for nothing the
driver does not already do (drive up to the limits it keeps).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from dualdrive.agents.base import PLAN_POSES, Agent, Control, Plan
from dualdrive.instructions.intent import GENTLE_ACCEL_MPS2, GENTLE_SPEED_OF_LIMIT, STOP_DECEL_MPS2, Intent
from dualdrive.planning.retime import retime_plan

POLICY_DT_S = 0.1  # dualdrive's envs decide at 10 Hz


class InstructedAgent(Agent):
    def __init__(self, driver: Agent, intent: Intent, from_s: float = 0.0) -> None:
        """`from_s`: the instruction is given this far into the drive (the benchmark's instructions
        suite asks to stop or pull over on the way, not at the start)."""
        self.driver = driver
        self.intent = intent
        self.from_s = from_s
        self.t_s = 0.0
        self.name = f"{getattr(driver, 'name', type(driver).__name__)}+instruction"
        self.uses_sensors = driver.uses_sensors
        self.privileged = driver.privileged
        self.stopped = False
        self.braking = False  # a stop was asked for and the car has begun to brake
        self._request = intent.describe() if intent.slots() else None  # what was understood and accepted

    @property
    def debug(self) -> dict:
        return getattr(self.driver, "debug", {})

    @staticmethod
    def unsupported(intent: Intent) -> list[str]:
        """The parts of an intent this wrapper cannot act on yet, in words."""
        out = []
        if intent.route:
            out.append("route preferences (the route planner does not take them yet)")
        if intent.spot:
            out.append("spot preferences (the spot search does not take them yet)")
        if intent.stop == "pull_over":
            out.append("moving to the kerb (the car stops in its lane)")
        return out

    def reset(self, info: dict[str, Any]) -> None:
        self.stopped = False
        self.braking = False
        self.t_s = 0.0
        self.driver.reset(info)

    def act(self, observation: dict[str, np.ndarray]) -> Plan | Control:
        if hasattr(self.driver, "passenger_request"):  # a driver with a System 2 tells it what was asked
            self.driver.passenger_request = self._request if self.t_s >= self.from_s else None
        decision = self.driver.act(observation)
        self.t_s += POLICY_DT_S
        speed = float(np.asarray(observation.get("speed_mps", 0.0)).reshape(-1)[0])
        if self.t_s <= self.from_s or not np.isfinite(speed):
            return decision  # the driver handles bad odometry itself
        stop = self.intent.stop
        if stop is not None:
            if self.stopped or (abs(speed) < 0.05 and self.braking):
                self.stopped = True
                return Plan(np.zeros((PLAN_POSES, 3)), decision.gear if isinstance(decision, Plan) else 1)
            self.braking = True
            decel = STOP_DECEL_MPS2[stop]
            if isinstance(decision, Control):
                return Control(-decel if speed > 0.05 else 0.0, decision.steer_rad, decision.gear)
            return retime_plan(decision, speed, decel_mps2=decel)
        if self.intent.style == "gentle":
            if isinstance(decision, Control):
                return Control(min(decision.accel_mps2, GENTLE_ACCEL_MPS2), decision.steer_rad, decision.gear)
            limit = float(np.asarray(observation.get("speed_limit_mps", np.inf)).reshape(-1)[0])
            cap = GENTLE_SPEED_OF_LIMIT * limit if np.isfinite(limit) and limit > 0 else None
            return retime_plan(decision, speed, cap, GENTLE_ACCEL_MPS2)
        return decision
