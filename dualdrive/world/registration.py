"""The gym ids of the scenario families, registered by name only.

``import dualdrive`` registers them. The entry point is a string, so registering imports neither
highway-env (with pygame) nor the world: a process that only trains a model or runs the VLM pays
gymnasium's import, not the simulator's, and a machine that only trains does not need highway-env.
``gym.make`` imports the world when an env is made.
"""
from __future__ import annotations

import gymnasium as gym

ENV_IDS = {"highway": "dualdrive/Highway-v0", "urban": "dualdrive/Urban-v0", "parking": "dualdrive/Parking-v0",
           "p2p": "dualdrive/P2P-v0", "motorway": "dualdrive/Motorway-v0"}


def register_envs() -> None:
    for family, env_id in ENV_IDS.items():
        if env_id not in gym.registry:
            gym.register(env_id, entry_point="dualdrive.world.env:DualDriveEnv", kwargs={"family": family})
