"""Reference drivers with no intelligence: lower bounds for any benchmark table.

They work on dualdrive's scenarios (returning controls) and on stock highway-env environments
(returning raw actions of the env's action space, which the runner passes in ``reset``).
"""
from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces

from dualdrive.agents.base import PLAN_DT_S, PLAN_POSES, Agent, Control, Plan


class IdleAgent(Agent):
    """Brakes gently to a stop and stays there (dualdrive), or keeps its lane at its speed (stock envs:
    IDLE / zero action)."""

    name = "idle"
    stock_actions = True

    def reset(self, info: dict[str, Any]) -> None:
        self.space = info.get("action_space")
        self.stock = bool(info.get("stock_env", False))

    def act(self, observation):
        if not self.stock:
            return Control(-1.0, 0.0)
        if isinstance(self.space, spaces.Discrete):
            return 1  # highway-env's DiscreteMetaAction: 1 = IDLE
        return np.zeros(self.space.shape, dtype=np.float32)


class RandomAgent(Agent):
    """Uniformly random actions, seeded by the episode seed (so episodes stay reproducible)."""

    name = "random"
    stock_actions = True

    def reset(self, info: dict[str, Any]) -> None:
        self.space = info.get("action_space")
        self.stock = bool(info.get("stock_env", False))
        self.rng = np.random.default_rng(int(info.get("seed", 0)))

    def act(self, observation):
        if not self.stock:
            return Control(float(self.rng.uniform(-3.0, 2.0)), float(self.rng.uniform(-0.3, 0.3)))
        if isinstance(self.space, spaces.Discrete):
            return int(self.rng.integers(self.space.n))
        lo, hi = self.space.low, self.space.high
        return self.rng.uniform(lo, hi).astype(self.space.dtype)


class ConstantVelocityAgent(Agent):
    """Straight on at the current speed, whatever the road does: NAVSIM's constant-velocity baseline
    (PDMS 20.6 on navtest), for replayed human scenes and dualdrive's own."""

    name = "constant_velocity"

    def act(self, observation):
        v = max(0.0, float(np.asarray(observation["speed_mps"]).reshape(-1)[0]))
        x = v * PLAN_DT_S * np.arange(1, PLAN_POSES + 1)
        return Plan(np.column_stack([x, np.zeros(PLAN_POSES), np.zeros(PLAN_POSES)]))
