"""MOBIL lane-change decisions (Kesting, Treiber & Helbing 2007, "Minimizing Overall Braking
Induced by Lane changes") for many drivers at once.

A driver changes to a neighbouring lane when
- safety: the new follower would not have to brake harder than ``max_braking_imposed_mps2``, and
- incentive: its own gain in acceleration, plus ``politeness`` times the gains of its old and new
  followers, is at least ``min_gain_mps2``.

The traffic kernel (:mod:`dualdrive.world.traffic`) finds the six accelerations by its one sort of
all road users and calls :func:`mobil`; on top it adds what our scenarios need (merging, blockers,
a keep-right bias, a driver's own aversion to making anyone brake). :meth:`MobilParams.highway_env`
is highway-env's ``IDMVehicle``; ``tests/world/test_equivalence.py`` shows the kernel reaching the
same decisions as highway-env's ``IDMVehicle.mobil`` with it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np


@dataclass(frozen=True)
class MobilParams:
    politeness: float = 0.0  # Treiber's p; dualdrive's traffic weighs imposed braking per driver instead
    min_gain_mps2: float = 0.25  # the incentive threshold (Delta a_th)
    max_braking_imposed_mps2: float = 4.0  # b_safe
    # the IDM the deciding driver evaluates its followers with: "assumed" (one typical driver: nobody
    # knows the desired speed of the car behind) or "own" (each follower's own parameters, as highway-env)
    follower_idm: Literal["assumed", "own"] = "assumed"

    @classmethod
    def highway_env(cls) -> "MobilParams":
        """highway-env's IDMVehicle: POLITENESS 0, LANE_CHANGE_MIN_ACC_GAIN 0.2,
        LANE_CHANGE_MAX_BRAKING_IMPOSED 2.0, followers evaluated with their own target speed."""
        return cls(politeness=0.0, min_gain_mps2=0.2, max_braking_imposed_mps2=2.0, follower_idm="own")


@dataclass
class MobilInputs:
    """The accelerations MOBIL compares, one entry per (driver, candidate lane). A follower that does
    not exist contributes 0, as in highway-env (``acceleration(None)``)."""

    self_a: np.ndarray  # the driver now
    self_pred_a: np.ndarray  # the driver behind its new leader
    new_follower_a: np.ndarray  # the new follower behind its current leader (the driver's new leader)
    new_follower_pred_a: np.ndarray  # the new follower behind the driver
    old_follower_a: np.ndarray  # the old follower behind the driver
    old_follower_pred_a: np.ndarray  # the old follower behind the driver's old leader


def mobil(x: MobilInputs, p: MobilParams) -> tuple[np.ndarray, np.ndarray]:
    """(safe, incentive) per entry. A change is recommended where ``safe & (incentive >= p.min_gain_mps2)``."""
    safe = x.new_follower_pred_a >= -p.max_braking_imposed_mps2
    incentive = x.self_pred_a - x.self_a
    if p.politeness != 0.0:
        incentive = incentive + p.politeness * (x.new_follower_pred_a - x.new_follower_a
                                                + x.old_follower_pred_a - x.old_follower_a)
    return safe, incentive


def recommended(safe: np.ndarray, incentive: np.ndarray, p: MobilParams) -> np.ndarray:
    return safe & (incentive >= p.min_gain_mps2)
