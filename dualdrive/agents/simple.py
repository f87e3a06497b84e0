"""Reference drivers with no intelligence: lower bounds for any benchmark table.

They work on dualdrive's scenarios (returning controls) and on stock highway-env environments
(returning raw actions of the env's action space, which the runner passes in ``reset``).
"""
from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces

from dualdrive.agents.base import Agent, Control


class IdleAgent(Agent):
    """Brakes gently to a stop and stays there (dualdrive), or keeps its lane at its speed (stock envs:
    IDLE / zero action)."""

    name = "idle"

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
