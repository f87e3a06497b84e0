"""Benchmark suites: named, versioned lists of scenario configs, read from small YAML files.

A suite is ``name``, ``version``, an optional ``description`` and either ``scenarios`` (each a
``name``, a ``family`` and ``config`` overrides of :class:`ScenarioConfig`) or ``include`` (other
suites by name). The shipped suites live in ``dualdrive/bench/suites/``; ``--suite`` also takes a
path to a user's own file.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from dualdrive.world.scenarios import ConfigError, ScenarioConfig

SUITE_DIR = Path(__file__).parent / "suites"
SUITE_KEYS = {"name", "version", "description", "scenarios", "include"}
SCENARIO_KEYS = {"name", "family", "config", "instruction", "instruction_at_s"}


@dataclass(frozen=True)
class SuiteScenario:
    name: str
    config: ScenarioConfig
    instruction: str | None = None  # what a passenger says (the `instructions` suite)
    instruction_at_s: float = 0.0  # when in the drive they say it


@dataclass
class Suite:
    name: str
    version: int
    description: str
    scenarios: list[SuiteScenario]

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version,
                "scenarios": {s.name: {**s.config.to_dict(), **({"instruction": s.instruction, "instruction_at_s":
                                                                   s.instruction_at_s} if s.instruction else {})}
                              for s in self.scenarios}}


def shipped_suites() -> list[str]:
    return sorted(p.stem for p in SUITE_DIR.glob("*.yaml"))


def load_suite(name_or_path: str, _seen: tuple[str, ...] = ()) -> Suite:
    path = Path(name_or_path)
    if not (path.suffix in (".yaml", ".yml") and path.exists()):
        if name_or_path not in shipped_suites():
            raise ConfigError(f"unknown suite {name_or_path!r}; valid: {', '.join(shipped_suites())} or a .yaml file")
        path = SUITE_DIR / f"{name_or_path}.yaml"
    if str(path) in _seen:
        raise ConfigError(f"suite {str(path)!r} includes itself")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"suite file {str(path)!r} is not valid YAML: {str(e).splitlines()[0]}") from None
    where = f"suite file {str(path)!r}"
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must hold a mapping with keys {', '.join(sorted(SUITE_KEYS))}")
    unknown = set(data) - SUITE_KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; valid: {', '.join(sorted(SUITE_KEYS))}")
    for key in ("name", "version"):
        if key not in data:
            raise ConfigError(f"{where}: missing {key!r}")
    if not isinstance(data["version"], int):
        raise ConfigError(f"{where}: version must be an integer, got {data['version']!r}")
    scenarios: list[SuiteScenario] = []
    for inc in data.get("include", []) or []:
        scenarios += load_suite(str(inc), _seen + (str(path),)).scenarios
    for i, raw in enumerate(data.get("scenarios", []) or []):
        scenarios.append(_scenario(raw, f"{where}, scenario {i + 1}"))
    if not scenarios:
        raise ConfigError(f"{where}: no scenarios (give 'scenarios' or 'include')")
    names = [s.name for s in scenarios]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"{where}: scenario name(s) {', '.join(dup)} appear more than once")
    return Suite(str(data["name"]), int(data["version"]), str(data.get("description", "")), scenarios)


def _scenario(raw: Any, where: str) -> SuiteScenario:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: must be a mapping with keys {', '.join(sorted(SCENARIO_KEYS))}")
    unknown = set(raw) - SCENARIO_KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; valid: {', '.join(sorted(SCENARIO_KEYS))}")
    if "name" not in raw or "family" not in raw:
        raise ConfigError(f"{where}: needs 'name' and 'family'")
    overrides = raw.get("config") or {}
    if not isinstance(overrides, dict):
        raise ConfigError(f"{where}: config must be a mapping of ScenarioConfig keys")
    if "family" in overrides:
        raise ConfigError(f"{where}: give the family once, outside config")
    try:
        cfg = ScenarioConfig.from_dict({"family": raw["family"], **overrides})
    except ConfigError as e:
        raise ConfigError(f"{where} ({raw['name']}): {e}") from None
    instruction = raw.get("instruction")
    if instruction is not None and not (isinstance(instruction, str) and instruction.strip()):
        raise ConfigError(f"{where} ({raw['name']}): instruction must be a non-empty string")
    at = raw.get("instruction_at_s", 0.0)
    if not isinstance(at, (int, float)) or at < 0:
        raise ConfigError(f"{where} ({raw['name']}): instruction_at_s must be a number of seconds >= 0")
    return SuiteScenario(str(raw["name"]), cfg, instruction, float(at))
