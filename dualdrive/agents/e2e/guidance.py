"""System 2's guidance as System 1 takes it: one meta-action, or none.

DriveVLM-Dual hands the fast planner the slow model's decision. Here System 1 gains an input of one
of :data:`GUIDANCE` (``none`` when System 2 has nothing fresh to say). It is trained with guidance
from the expert: the meta-action its own recorded plan carries out (:func:`label_from_plan`), and
with ``none`` in place of it for a share of the samples, so that System 1 also drives alone.

Only what a plan shows is labelled: standing still or coming to rest (``stop``), losing speed
(``slow down``), gaining it (``accelerate``), ending a lane width to one side with the heading of the
road (``change lane left/right``), reversing or the parking commands (``park``), else ``keep lane``.
System 2's other actions reach System 1 as the closest of these (:func:`from_meta_action`):
``yield`` and ``wait`` as ``stop``, ``pull over`` as ``slow down``.
"""
from __future__ import annotations

import numpy as np

from dualdrive.world.commands import Command

GUIDANCE = ("none", "keep lane", "accelerate", "slow down", "stop", "change lane left", "change lane right", "park")
NONE = 0
_INDEX = {g: i for i, g in enumerate(GUIDANCE)}
_FROM_META = {"yield": "stop", "wait": "stop", "pull over": "slow down"}
PLAN_DT_S = 0.5  # the plan's poses are 0.5 s apart
REST_MPS = 0.3  # the plan's last step slower than this: it comes to rest
SLOWER, FASTER = 0.75, 1.25  # the plan's last speed against the current one
MOVING_MPS = 2.0  # below this the plan's speed ratios say nothing
LANE_CHANGE_M = 2.0  # lateral offset at the plan's end ...
ROAD_HEADING_RAD = 0.25  # ... with the heading still along the road (a turn ends across it)


def label_from_plan(plan: np.ndarray, speed_mps: float, command: int, reverse: bool = False) -> int:
    """The guidance index of the meta-action an expert plan (P, 3 poses: x, y, yaw in the ego frame,
    0.5 s apart) carries out at ``speed_mps`` under the navigation ``command``."""
    if reverse or int(command) in (int(Command.PARK), int(Command.LEAVE_SPOT)):
        return _INDEX["park"]
    steps = np.linalg.norm(np.diff(np.vstack([[0.0, 0.0], plan[:, :2]]), axis=0), axis=1) / PLAN_DT_S
    end_speed = float(steps[-1])
    if end_speed < REST_MPS:
        return _INDEX["stop"]
    y_end, yaw_end = float(plan[-1, 1]), float(plan[-1, 2])
    if abs(y_end) > LANE_CHANGE_M and abs(yaw_end) < ROAD_HEADING_RAD:
        return _INDEX["change lane left" if y_end > 0 else "change lane right"]
    v = abs(float(speed_mps))
    if v > MOVING_MPS and end_speed < SLOWER * v:
        return _INDEX["slow down"]
    if end_speed > FASTER * v + 1.0:
        return _INDEX["accelerate"]
    return _INDEX["keep lane"]


def from_meta_action(action: str | None) -> int:
    """System 2's first meta-action (``dualdrive.vlm.answer.META_ACTIONS``) as a guidance index."""
    if not action:
        return NONE
    return _INDEX.get(_FROM_META.get(action, action), NONE)
