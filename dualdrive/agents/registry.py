"""Agents by name, or any ``module:Class`` implementing :class:`dualdrive.agents.base.Agent`."""
from __future__ import annotations

import importlib

from dualdrive.agents.base import Agent
from dualdrive.world.scenarios import ConfigError

AGENTS = {"expert": "dualdrive.agents.expert.agent:ExpertAgent", "idle": "dualdrive.agents.simple:IdleAgent",
          "random": "dualdrive.agents.simple:RandomAgent",
          "constant_velocity": "dualdrive.agents.simple:ConstantVelocityAgent",
          "modular": "dualdrive.agents.modular.agent:ModularAgent",
          "e2e": "dualdrive.agents.e2e.agent:E2EAgent", "dual": "dualdrive.agents.dual.agent:DualAgent"}


def load_agent(name: str) -> Agent:
    target = AGENTS.get(name, name)
    if ":" not in target:
        raise ConfigError(f"unknown agent {name!r}; valid: {', '.join(AGENTS)} or module:Class")
    module, _, cls_name = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module), cls_name)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"cannot load agent {name!r}: {e}; valid: {', '.join(AGENTS)} or module:Class") from None
    if not (isinstance(cls, type) and issubclass(cls, Agent)):
        raise ConfigError(f"{name!r} is not a dualdrive Agent subclass")
    try:
        return cls()
    except (OSError, RuntimeError, ValueError) as e:  # e.g. the e2e agent's missing or damaged checkpoint
        raise ConfigError(f"cannot create agent {name!r}: {e}") from None
