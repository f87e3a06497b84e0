"""DART noise injection (Laskey et al. 2017): perturb the executed control so the demonstrations
visit the states just off the expert's path, while the labels stay the expert's clean decisions.

The noise is one number, ``sigma_mps2``, in m/s^2 of acceleration: longitudinally it is added to
the acceleration command; laterally it is the steering angle that gives ``sigma_mps2`` of lateral
acceleration at the current speed (``a_lat = v^2 tan(steer) / wheelbase``), so one sigma means the
same push at 5 m/s in a lot and at 30 m/s on the motorway (a fixed angle would be nothing in the
lot and a crash on the motorway). It is an AR(1) process with a correlation time of a few ticks:
white noise at 10 Hz averages out before it displaces the car. Seeded by the episode seed.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dualdrive.agents.base import Control
from dualdrive.agents.follower import WHEELBASE_M
from dualdrive.world.world import ACCEL_LIMITS_MPS2, MAX_STEER_RAD

DART_SEED_SALT = 0xDA27  # keeps the noise independent of the world's and the sensors' random streams


@dataclass(frozen=True)
class DartConfig:
    sigma_mps2: float = 0.0  # 0: no noise
    correlation_s: float = 0.5  # time constant of the AR(1) process (5 ticks at 10 Hz)
    min_speed_mps: float = 3.0  # below this the steering noise stays that of 3 m/s (bounded angle)
    # and never more than this angle. In a car park (1-3 m/s) the lateral-acceleration rule asks for a
    # quarter of full lock, a push no learner's error resembles: with 0.25 rad the expert under sigma 0.5
    # parked in 0 of 6 lots within 120 s (it hit parked cars, then stood), with 0.03 rad in 6 of 6.
    # Above ~8 m/s the rule's angle (0.04 rad per sigma at 8 m/s, 0.003 at 30) is mostly below the cap.
    max_steer_noise_rad: float = 0.03

    def __post_init__(self) -> None:
        if not np.isfinite(self.sigma_mps2) or self.sigma_mps2 < 0:
            raise ValueError(f"dart noise sigma_mps2={self.sigma_mps2} must be a finite number >= 0")
        if self.correlation_s <= 0:
            raise ValueError(f"dart correlation_s={self.correlation_s} must be positive")


class DartNoise:
    """A small stateful filter: ``apply(control, speed)`` once per tick, in tick order."""

    def __init__(self, config: DartConfig, seed: int, dt_s: float) -> None:
        self.cfg = config
        self.rng = np.random.default_rng([DART_SEED_SALT, int(seed)])
        self.rho = float(np.exp(-dt_s / config.correlation_s))
        self.state = np.zeros(2)  # unit-variance AR(1) pair: longitudinal, lateral

    def apply(self, control: Control, speed_mps: float) -> Control:
        if self.cfg.sigma_mps2 == 0.0:
            return control
        # the innovation keeps the stationary variance at 1 whatever the correlation
        self.state = self.rho * self.state + np.sqrt(1.0 - self.rho**2) * self.rng.standard_normal(2)
        sigma = self.cfg.sigma_mps2
        v = max(abs(speed_mps), self.cfg.min_speed_mps)
        steer_noise = np.arctan(sigma * self.state[1] * WHEELBASE_M / v**2)
        steer_noise = float(np.clip(steer_noise, -self.cfg.max_steer_noise_rad, self.cfg.max_steer_noise_rad))
        accel = float(np.clip(control.accel_mps2 + sigma * self.state[0], *ACCEL_LIMITS_MPS2))
        steer = float(np.clip(control.steer_rad + steer_noise, -MAX_STEER_RAD, MAX_STEER_RAD))
        return Control(accel, steer, control.gear)
