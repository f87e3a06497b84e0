"""The episode log: everything the metrics need, recorded tick by tick, saved and loaded losslessly.

A log holds the ego's state, every actor near it (vehicles, pedestrians, static objects), the
traffic lights, route progress and the on-road / wrong-lane flags at each tick, plus the episode's
constants (route polyline, signalised stop lines on it, speed limits, the world's infractions and
outcome). Every score in ``metrics.py`` is a pure function of a log, so a saved log can be
re-scored later, by a newer metric version too.
"""
from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

LOG_VERSION = 1
ACTOR_COLUMNS = ("x_m", "y_m", "heading_rad", "speed_mps", "length_m", "width_m")
ACTOR_KINDS = ("vehicle", "pedestrian", "static")


class LogError(ValueError):
    """A log file that cannot be read: missing, corrupt, or not a dualdrive episode log."""


@dataclass
class EpisodeLog:
    meta: dict[str, Any]  # family, seed, config, agent, dt_s, arrival_m, stop_lines, infractions, outcome, ...
    t_s: np.ndarray  # (T,)
    ego: np.ndarray  # (T, 6): x_m, y_m, heading_rad, speed_mps, accel_mps2, yaw_rate_rps
    gear: np.ndarray  # (T,) +1 forward, -1 reverse
    progress_m: np.ndarray  # (T,) route progress
    speed_limit_mps: np.ndarray  # (T,) limit of the route lane at the ego's progress
    off_road: np.ndarray  # (T,) bool
    wrong_lane: np.ndarray  # (T,) bool
    lights: np.ndarray  # (T, G) int8 (0 red, 1 amber, 2 green)
    actors: np.ndarray  # (T, K, 6) ACTOR_COLUMNS, padded
    actor_kind: np.ndarray  # (T, K) int8 index into ACTOR_KINDS, -1 = padding
    actor_id: np.ndarray  # (T, K) int64 id within its kind
    route_xy: np.ndarray  # (N, 2) route polyline
    route_progress_m: np.ndarray  # (N,)
    route_speed_limit_mps: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (N,)

    @property
    def dt_s(self) -> float:
        return float(self.meta["dt_s"])

    @property
    def family(self) -> str:
        return str(self.meta["family"])

    @property
    def infractions(self) -> list[dict]:
        return list(self.meta.get("infractions", []))

    def save(self, path: str | Path) -> Path:
        """Write a compressed ``.npz`` (arrays plus the meta as JSON); the file is complete or absent."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        arrays = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "meta"}
        meta = json.dumps({"log_version": LOG_VERSION, **self.meta}, default=_json_default)
        np.savez_compressed(tmp, meta=np.array(meta), **arrays)
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "EpisodeLog":
        path = Path(path)
        if not path.is_file():
            raise LogError(f"episode log {str(path)!r} not found")
        try:
            with np.load(path, allow_pickle=False) as z:
                data = {k: z[k] for k in z.files}
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
            raise LogError(f"episode log {str(path)!r} is corrupt or not an .npz file ({e}); re-record it "
                           "with `dualdrive eval ... --record`") from None
        names = [f.name for f in fields(cls)]
        missing = [n for n in names if n not in data]
        if missing:
            raise LogError(f"{str(path)!r} is not a dualdrive episode log (missing {', '.join(missing)})")
        meta = json.loads(str(data.pop("meta")))
        if meta.get("log_version") != LOG_VERSION:
            raise LogError(f"{str(path)!r} has log version {meta.get('log_version')!r}; this dualdrive reads "
                           f"version {LOG_VERSION}")
        return cls(meta=meta, **{n: data[n] for n in names if n != "meta"})


def _json_default(o):
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, np.bool_):
        return bool(o)
    raise TypeError(type(o).__name__)
