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


# the commands of a junction on the route (where a traffic light may stand)
JUNCTION_COMMANDS = (Command.TURN_LEFT, Command.TURN_RIGHT, Command.GO_STRAIGHT)


def junction_entry_target(route_command) -> int | None:
    """Index of the route target at the entry of the first junction among the route's per-target commands (the
    last target of the junction's run: its commands announce the turn up to the entry), or None. The announced
    command is only the next manoeuvre: a lane change just before a junction hides the junction's turn until it
    is done, and the per-target commands show it earlier."""
    cmds = [int(c) for c in route_command]
    k = next((i for i, c in enumerate(cmds) if c in JUNCTION_COMMANDS), None)
    if k is None:
        return None
    while k + 1 < len(cmds) and cmds[k + 1] == cmds[k]:
        k += 1
    return k
