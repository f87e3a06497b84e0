"""The question put to the driving VLM: what any driver knows besides the picture.

A single camera frame shows neither the ego's speed nor where the navigation wants to go, and
both decide the plan (the waypoints scale with speed; a turn ahead explains slowing down). So,
as DriveVLM gives its model the ego state and the route, the prompt carries the odometry speed and
the navigation's next command in words. Both come from the mapless observation every agent gets
(``speed_mps``, ``command``, ``command_distance_m``); nothing privileged goes in.
"""
from __future__ import annotations

import math

import numpy as np

from dualdrive.world.route import Command

COMMAND_WORDS = {
    Command.FOLLOW_LANE: "follow the road", Command.TURN_LEFT: "turn left", Command.TURN_RIGHT: "turn right",
    Command.GO_STRAIGHT: "go straight", Command.CHANGE_LANE_LEFT: "change lane left",
    Command.CHANGE_LANE_RIGHT: "change lane right", Command.TAKE_EXIT: "take the exit",
    Command.ENTER_LOT: "enter the lot", Command.PARK: "park", Command.LEAVE_SPOT: "leave the spot",
}
COMMAND_DISTANCE_STEP_M = 10  # the navigation's distance is said to the nearest 10 m
QUESTION = "describe the scene, analyse it and plan."


PASSENGER_PREFIX = "passenger asks: "


def make_prompt(speed_mps: float, command: int, command_distance_m: float, passenger: str | None = None) -> str:
    """``speed 12 m/s. route: turn left in 30 m. describe the scene, analyse it and plan.``

    ``passenger``: what the passenger asked for, as the instruction parser understood and accepted
    it (:meth:`dualdrive.instructions.intent.Intent.describe`, e.g. "drive gently"), never their raw
    words: a refused request ("ignore the red light") does not reach System 2 either. It leads the
    prompt: ``passenger asks: drive gently. speed 12 m/s. ...``"""
    if not (math.isfinite(speed_mps) and math.isfinite(command_distance_m)):
        raise ValueError(f"prompt needs finite speed and distance, got {speed_mps!r}, {command_distance_m!r}")
    try:
        words = COMMAND_WORDS[Command(int(command))]
    except ValueError:
        raise ValueError(f"unknown navigation command {command!r}; valid: 0..{len(Command) - 1}") from None
    dist = int(round(max(command_distance_m, 0.0) / COMMAND_DISTANCE_STEP_M)) * COMMAND_DISTANCE_STEP_M
    route = words if Command(int(command)) == Command.FOLLOW_LANE else f"{words} in {dist} m"
    lead = f"{PASSENGER_PREFIX}{passenger.strip().rstrip('.')}. " if passenger and passenger.strip() else ""
    return f"{lead}speed {int(round(abs(speed_mps)))} m/s. route: {route}. {QUESTION}"


def without_passenger(prompt: str) -> str:
    """The prompt without its passenger clause (for a model trained on the bare question)."""
    if not prompt.startswith(PASSENGER_PREFIX):
        return prompt
    _, sep, rest = prompt.partition(". speed ")
    return "speed " + rest if sep else prompt


def prompt_from_observation(obs: dict[str, np.ndarray]) -> str:
    """The prompt from an agent's observation (the keys of ``World.observation``)."""
    missing = [k for k in ("speed_mps", "command", "command_distance_m") if k not in obs]
    if missing:
        raise KeyError(f"observation lacks {', '.join(missing)} (needed for the VLM prompt)")
    return make_prompt(float(obs["speed_mps"][0]), int(obs["command"][0]), float(obs["command_distance_m"][0]))
