"""dualdrive: an end-to-end driving stack with a dual system, on highway-env."""
from dualdrive.world.registration import register_envs

__version__ = "0.1.0"
register_envs()
