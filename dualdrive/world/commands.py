"""The navigation's commands (the route's next instruction to the driver).

A module of its own, with no simulator import: the sensors' observation, the training data and
System 1's guidance labels use the commands without needing the world.
"""
from __future__ import annotations

from enum import IntEnum


class Command(IntEnum):
    FOLLOW_LANE = 0
    TURN_LEFT = 1
    TURN_RIGHT = 2
    GO_STRAIGHT = 3
    CHANGE_LANE_LEFT = 4
    CHANGE_LANE_RIGHT = 5
    TAKE_EXIT = 6
    ENTER_LOT = 7
    PARK = 8
    LEAVE_SPOT = 9
