"""Agents that misbehave on purpose: the benchmark must record them as failed episodes and go on."""
import time

import numpy as np

from dualdrive.agents.base import Agent, Control, Plan


class Raises(Agent):
    name = "raises"

    def reset(self, info):
        self.n = 0

    def act(self, observation):
        self.n += 1
        if self.n > 5:
            raise RuntimeError("boom")
        return Control(0.0, 0.0)


class NanPlan(Agent):
    name = "nan_plan"

    def act(self, observation):
        return Plan(np.full((8, 3), np.nan))


class NanControl(Agent):
    name = "nan_control"

    def act(self, observation):
        return Control(float("nan"), 0.0)


class ReturnsNone(Agent):
    name = "returns_none"

    def act(self, observation):
        return None


class Hangs(Agent):
    name = "hangs"

    def act(self, observation):
        time.sleep(3600)
