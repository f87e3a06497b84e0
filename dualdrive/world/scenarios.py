"""Scenario configs: typed, validated, loadable from YAML, rejecting what they do not know.

A scenario is fully determined by its :class:`ScenarioConfig` and an integer seed. Seeds below
:data:`DEV_SEED_LIMIT` are for development and training; evaluation suites use the rest.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

FAMILIES = ("highway", "urban", "parking", "p2p", "motorway")
DEV_SEED_LIMIT = 5000
MAX_SEED = 2**31 - 1

# which long-tail events make sense in which family (the others are rejected with a clear message)
EVENTS_BY_FAMILY = {
    "highway": {"stalled_vehicle", "road_works", "emergency_vehicle", "cut_in"},
    "urban": {"stalled_vehicle", "road_works", "jaywalker", "emergency_vehicle", "cut_in"},
    "parking": {"blocked_aisle", "jaywalker"},
    "p2p": {"stalled_vehicle", "road_works", "jaywalker", "emergency_vehicle", "cut_in", "blocked_aisle"},
    "motorway": set(),  # the plain road of highway-env's highway-v0, for side-by-side comparisons
}


class ConfigError(ValueError):
    """A user-facing configuration mistake; the message names the key and the valid choices."""


@dataclass
class EventConfig:
    """Long-tail events, off by default. Each one is placed along the ego's route by the seed."""

    stalled_vehicle: bool = False
    road_works: bool = False
    jaywalker: bool = False
    emergency_vehicle: bool = False
    cut_in: bool = False
    blocked_aisle: bool = False

    def enabled(self) -> list[str]:
        return [f.name for f in dataclasses.fields(self) if getattr(self, f.name)]

    @classmethod
    def all_on(cls, family: str) -> "EventConfig":
        return cls(**{name: True for name in EVENTS_BY_FAMILY[family]})


@dataclass
class ScenarioConfig:
    family: str = "p2p"
    dt_s: float = 0.1  # simulation step: 10 Hz, the rate agents are asked for a plan
    traffic_density: float = 1.0  # multiplies the family's default number of vehicles
    pedestrian_density: float = 1.0
    lot_occupancy: float = 0.6  # fraction of parking spots taken by parked cars
    start_in_spot: bool | None = None  # parking family: None lets the seed choose
    max_duration_s: float | None = None  # None: the family's default time limit
    roundabout: bool = True  # urban: one junction of the grid is a roundabout
    vehicles: int | None = None  # motorway: exactly this many NPC vehicles (None: 50, as highway-v0)
    lanes: int = 4  # motorway: number of lanes
    events: EventConfig = field(default_factory=EventConfig)

    def __post_init__(self) -> None:
        if isinstance(self.events, dict):
            self.events = _build(EventConfig, self.events, "events")
        self.validate()

    def validate(self) -> None:
        if self.family not in FAMILIES:
            raise ConfigError(f"unknown scenario family {self.family!r}; valid: {', '.join(FAMILIES)}")
        _in_range("dt_s", self.dt_s, 0.02, 0.2)
        _in_range("traffic_density", self.traffic_density, 0.0, 3.0)
        _in_range("pedestrian_density", self.pedestrian_density, 0.0, 5.0)
        _in_range("lot_occupancy", self.lot_occupancy, 0.0, 0.95)
        if self.max_duration_s is not None:
            _in_range("max_duration_s", self.max_duration_s, 1.0, 3600.0)
        if self.vehicles is not None:
            _in_range("vehicles", self.vehicles, 0, 2000)
            if self.family != "motorway":
                raise ConfigError(f"vehicles={self.vehicles!r} applies to family 'motorway' only; elsewhere use "
                                  "traffic_density")
        _in_range("lanes", self.lanes, 1, 8)
        bad = set(self.events.enabled()) - EVENTS_BY_FAMILY[self.family]
        if bad:
            raise ConfigError(f"event(s) {', '.join(sorted(bad))} do not apply to family {self.family!r}; "
                              f"valid there: {', '.join(sorted(EVENTS_BY_FAMILY[self.family]))}")

    @property
    def time_limit_s(self) -> float:
        default = {"highway": 150.0, "urban": 200.0, "parking": 150.0, "p2p": 480.0, "motorway": 150.0}[self.family]
        return self.max_duration_s or default

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ScenarioConfig":
        return _build(cls, data, "scenario")

    @classmethod
    def from_file(cls, path: str | Path) -> "ScenarioConfig":
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"scenario file {str(p)!r} not found")
        try:
            data = yaml.safe_load(p.read_text())
        except yaml.YAMLError as e:
            raise ConfigError(f"scenario file {str(p)!r} is not valid YAML: {str(e).splitlines()[0]}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"scenario file {str(p)!r} must hold a mapping of config keys, got {type(data).__name__}")
        return cls.from_dict(data)


def _in_range(name: str, value: Any, lo: float, hi: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (lo <= float(value) <= hi):
        raise ConfigError(f"{name}={value!r} is out of range; expected a number in [{lo}, {hi}]")


def _build(cls: type, data: dict[str, Any], where: str):
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(known)
    if unknown:
        raise ConfigError(f"unknown {where} key(s) {', '.join(sorted(unknown))}; valid: {', '.join(known)}")
    for k, v in data.items():
        if known[k].type in ("bool", bool) and not isinstance(v, bool):
            raise ConfigError(f"{where}.{k}={v!r} must be true or false")
    try:
        return cls(**data)
    except TypeError as e:
        raise ConfigError(f"bad {where} config: {e}") from None


def check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or not (0 <= seed <= MAX_SEED):
        raise ConfigError(f"seed {seed!r} must be an integer in [0, {MAX_SEED}] (seeds < {DEV_SEED_LIMIT} are for development)")
    return seed
