"""What System 1's history input reads: the model inputs of the frame ``HISTORY_S`` ago.

A model with ``history`` (:class:`dualdrive.agents.e2e.config.E2EConfig`) sees, beside the current frame, the
ego's speed and the radar returns (on that frame's route) of a second earlier. The agent keeps the inputs of
its last second of ticks here; in training, :class:`dualdrive.data.dataset.DemoDataset` reads the same keys
from the episode's own earlier frame. In the first second of a drive there is none: ``history_valid`` 0.
"""
from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

from dualdrive.agents.e2e.config import HISTORY_S

DEFAULT_DT_S = 0.1  # the world's and the NGSIM replay's tick, for an env that does not say its own
KEPT = ("speed", "radar", "radar_count", "route")  # what of a tick's inputs the history input reads later


class InputHistory:
    """A ring of the last ``HISTORY_S`` of ticks' inputs."""

    def __init__(self, back_s: float = HISTORY_S, dt_s: float = DEFAULT_DT_S) -> None:
        self.back_s = back_s
        self.reset(dt_s)

    def reset(self, dt_s: float | None = None) -> None:
        """Forget every tick; ``dt_s`` (the env's tick, s) sets how many ticks make ``back_s``."""
        dt = DEFAULT_DT_S if dt_s is None or not np.isfinite(dt_s) or dt_s <= 0 else float(dt_s)
        self.ticks = max(1, int(round(self.back_s / dt)))
        self._ring: deque[dict[str, np.ndarray]] = deque(maxlen=self.ticks + 1)

    def clear(self) -> None:
        """Forget every tick (a tick the network did not see breaks the count of ticks back)."""
        self._ring.clear()

    def push(self, x: dict[str, Any]) -> dict[str, np.ndarray]:
        """Add this tick's model inputs ``x`` and return the history inputs for it (the tick ``ticks`` ago)."""
        self._ring.append({k: np.array(x[k], copy=True) for k in KEPT})
        return self.inputs(x)

    def inputs(self, x: dict[str, Any]) -> dict[str, np.ndarray]:
        """The history inputs for the current tick ``x`` without adding it (the same tick asked again)."""
        if len(self._ring) == self.ticks + 1:
            then = self._ring[0]
            return {"history_valid": np.array(1.0, np.float32), "speed_past": then["speed"].astype(np.float32),
                    "radar_past": then["radar"], "radar_past_count": then["radar_count"],
                    "route_past": then["route"]}
        return {"history_valid": np.array(0.0, np.float32), "speed_past": np.asarray(x["speed"], np.float32),
                "radar_past": np.zeros_like(x["radar"]), "radar_past_count": np.array(0, np.int64),
                "route_past": np.asarray(x["route"], np.float32)}
