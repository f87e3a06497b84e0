"""The end-to-end driving agent (System 1): sensor observation -> E2E model -> :class:`Plan`.

It sees only what the sensor suite gives (front camera, LiDAR, radar, odometry, navigation route) and
turns it into the model's inputs exactly as the demonstration dataset does (see
:func:`observation_to_inputs`). Data it cannot trust (NaN/inf, a missing sensor key, both sensors
dropped, an unknown command) makes it warn once and return a decelerating stop plan, never a plan
computed from garbage; a single dropped sensor frame is passed on as zeros with its valid flag 0,
which is what the model saw in training (sensor dropout).

Two closed-loop aids sit between the network and the wheels, both on by default and both off in DAgger's
drives and in open-loop scoring (:func:`network_alone`): below the speed limit on the road, the same frame is
also asked at the limit, against the inertia of a policy that copies its own speed
(:mod:`dualdrive.agents.e2e.probe`); and every plan is checked against the LiDAR and, at speed, the radar
before it is driven (:mod:`dualdrive.agents.guard`). A reverse plan is driven only in the car park: under the
car-park commands, and while the car is still backing out of its start spot after the navigation has already
switched to FOLLOW_LANE (:mod:`dualdrive.agents.e2e.leaving`; also off in :func:`network_alone`).

Five rules take over where the network is known not to manage (all on by default, all off in
:func:`network_alone`): a red light the camera shows cuts the plan short of the junction
(:mod:`dualdrive.agents.e2e.lights`: the network does not read the lamp's colour); where the navigation asks for a
lane change, the plan is laid across to the next lane once the LiDAR shows a gap there
(:mod:`dualdrive.agents.e2e.lane_change`: the network keeps its lane); through a left turn the plan is
kept within the route's lane (:mod:`dualdrive.agents.e2e.turn_keeping`: the network cuts left turns into the
opposite lanes); oncoming traffic the radar shows arriving within the critical gap holds the car 3 m into a junction
it turns left at (:mod:`dualdrive.agents.e2e.yielding`: the network turns in front of it); and in car parks (leaving the
start spot, parking at the destination) the modular pipeline's parking function drives
(:mod:`dualdrive.agents.e2e.park_assist`: the network reaches the destination car park but does not park).
"""
from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dualdrive.agents.base import FORWARD, PLAN_DT_S, PLAN_POSES, REVERSE, Agent, Plan
from dualdrive.agents.e2e.checkpoint import CheckpointError, load_checkpoint
from dualdrive.agents.e2e.config import E2EConfig
from dualdrive.agents.e2e.history import InputHistory
from dualdrive.agents.e2e.lane_change import LaneChange, LaneChangeConfig
from dualdrive.agents.e2e.leaving import CAR_PARK_COMMANDS, LeavingConfig, LeavingLatch
from dualdrive.agents.e2e.lights import LightRule, LightRuleConfig
from dualdrive.agents.e2e.park_assist import ParkAssist, ParkAssistConfig
from dualdrive.agents.e2e.probe import SpeedProbeConfig, holds_speed, probe_speed, radar_at_speed, sped_up, wanted
from dualdrive.agents.e2e.turn_keeping import TurnKeeping, TurnKeepingConfig
from dualdrive.agents.e2e.yielding import LeftTurnYield, YieldRuleConfig
from dualdrive.agents.guard import GuardConfig, PlanGuard
from dualdrive.planning.retime import retime_plan
from dualdrive.sensors.lidar import bev_histogram
from dualdrive.world.commands import Command

log = logging.getLogger(__name__)

CHECKPOINT_ENV = "DUALDRIVE_E2E_CHECKPOINT"
DEFAULT_CHECKPOINT = Path(__file__).parent / "default" / "model.safetensors"
CAMERA_KEY = "camera_front_rgb"
BEV_RESOLUTION_M = 0.5  # the dataset's LiDAR grid: 128 x 128 cells over 64 m x 64 m
STOP_DECEL_MPS2 = 3.0  # a firm but not emergency stop when the inputs cannot be trusted
REVERSE_GEAR_CLASS = 1  # gear head classes: 0 forward, 1 reverse
# the navigation commands under which a reverse plan may be driven: the expert reverses only to leave its
# spot and to park (and to finish backing out of the spot under the FOLLOW_LANE that comes while the car is
# half out of its bay: dualdrive.agents.e2e.leaving). Elsewhere (a queue on the highway, a stop behind a
# stalled car) a gear head that says
# "reverse" at a standstill is a misreading of a parking-like scene, and reversing on a carriageway runs
# into the cars behind: the forward plan of a per-gear model is driven instead
REVERSE_COMMANDS = (int(Command.LEAVE_SPOT), int(Command.PARK))
# the model inputs a probed decision gives once for both rows: what the speed probe changes is not in them
SHARED_FRAME_KEYS = ("camera", "lidar_bev")
REQUIRED_KEYS = ("lidar_points_m", "lidar_num_points", "speed_mps", "command", "route_xy_ego_m", CAMERA_KEY)


class UnusableObservation(ValueError):
    """The observation cannot be turned into trustworthy model inputs (the message says why)."""


def resolve_checkpoint(checkpoint: str | Path | None) -> Path:
    """The constructor argument, else $DUALDRIVE_E2E_CHECKPOINT, else the shipped default."""
    path = Path(checkpoint or os.environ.get(CHECKPOINT_ENV) or DEFAULT_CHECKPOINT)
    if not path.is_file():
        origin = ("the given checkpoint" if checkpoint else f"${CHECKPOINT_ENV}" if os.environ.get(CHECKPOINT_ENV)
                  else "the default checkpoint")
        raise CheckpointError(f"no E2E model checkpoint at {path} ({origin}): run `make model` to train one, or "
                              f"pass --checkpoint PATH (or set {CHECKPOINT_ENV})")
    return path


def check_checkpoint(path: str | Path) -> Path:
    """The absolute path of a loadable checkpoint (weights, sidecar and config checked), else CheckpointError."""
    path = Path(path).expanduser().resolve()
    load_checkpoint(path)
    return path


@contextmanager
def checkpoint_env(path: str | Path | None) -> Iterator[None]:
    """Within the block, ``E2EAgent()`` loads ``path``, in this process and in the Ray workers started in
    it (they inherit the environment): how ``--checkpoint`` reaches agents built by name."""
    if path is None:
        yield
        return
    with _scoped_env(CHECKPOINT_ENV, str(Path(path).resolve())):
        yield


@contextmanager
def _scoped_env(name: str, value: str) -> Iterator[None]:
    """``$name`` = ``value`` within the block (Ray workers started in it inherit it), as it was after."""
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


def observation_to_inputs(obs: dict[str, Any], cfg: E2EConfig = E2EConfig()) -> dict[str, np.ndarray]:
    """One sample of model inputs (the data contract's input keys, unbatched) from a SensorSuite observation.

    Raises :class:`UnusableObservation` for data that must not be driven on.
    """
    missing = [k for k in REQUIRED_KEYS if k not in obs]
    if missing:
        raise UnusableObservation(f"observation lacks {missing}")
    cam_ok = bool(np.asarray(obs.get("camera_front_valid", 1)).reshape(-1)[0])
    lidar_ok = bool(np.asarray(obs.get("lidar_valid", 1)).reshape(-1)[0])
    if not (cam_ok or lidar_ok):
        raise UnusableObservation("both camera and LiDAR frames are missing")
    image = np.asarray(obs[CAMERA_KEY])
    if image.shape != (cfg.camera_height_px, cfg.camera_width_px, 3):
        raise ValueError(f"{CAMERA_KEY} has shape {image.shape}; the model was trained on "
                         f"({cfg.camera_height_px}, {cfg.camera_width_px}, 3): configure the camera to match")
    camera = np.ascontiguousarray(image.transpose(2, 0, 1)).astype(np.uint8) if cam_ok else \
        np.zeros((3, cfg.camera_height_px, cfg.camera_width_px), np.uint8)
    n_points = int(np.asarray(obs["lidar_num_points"]).reshape(-1)[0])
    points = np.asarray(obs["lidar_points_m"], np.float32)[:max(0, n_points)]
    if lidar_ok and not np.all(np.isfinite(points)):
        raise UnusableObservation("LiDAR points contain NaN or inf")
    lidar_bev = bev_histogram(points, resolution_m=BEV_RESOLUTION_M) if lidar_ok else \
        np.zeros((cfg.bev_in_channels, cfg.bev_size_px, cfg.bev_size_px), np.float32)
    speed = np.asarray(obs["speed_mps"], np.float32).reshape(1)
    route = np.asarray(obs["route_xy_ego_m"], np.float32).reshape(cfg.route_points, 2)
    if not (np.all(np.isfinite(speed)) and np.all(np.isfinite(route))):
        raise UnusableObservation("speed or route contain NaN or inf")
    command = int(np.asarray(obs["command"]).reshape(-1)[0])
    if not 0 <= command < cfg.num_commands:
        raise UnusableObservation(f"command {command} is outside 0..{cfg.num_commands - 1}")
    x = {"camera": camera, "lidar_bev": lidar_bev, "speed": speed, "command": np.array(command, np.int64),
         "route": route, "valid_camera": np.array(float(cam_ok), np.float32),
         "valid_lidar": np.array(float(lidar_ok), np.float32)}
    if cfg.radar_returns:
        x["radar"], x["radar_count"] = _radar_inputs(obs, cfg.radar_returns)
    if cfg.accel_input:
        accel = np.asarray(obs.get("accel_mps2", np.full(1, np.nan)), np.float32).reshape(-1)[:1]
        if accel.size != 1 or not np.all(np.isfinite(accel)):
            raise UnusableObservation("the odometry's accel_mps2 is missing, NaN or inf (this model reads it)")
        x["accel"] = accel
    if cfg.guidance_classes:  # System 2's meta-action (the dual agent adds it; none when absent or out of range)
        g = int(np.asarray(obs.get("guidance", 0)).reshape(-1)[0]) if "guidance" in obs else 0
        x["guidance"] = np.array(g if 0 <= g < cfg.guidance_classes else 0, np.int64)
    return x


RADAR_KEYS = ("radar_returns", "radar_num_returns")


def _radar_inputs(obs: dict[str, Any], rows: int) -> tuple[np.ndarray, np.ndarray]:
    """The model's radar rows (zero-padded to ``rows``) and their count; a dropped frame has none."""
    missing = [k for k in RADAR_KEYS if k not in obs]
    if missing:
        raise UnusableObservation(f"observation lacks {missing} (this model reads the radar)")
    radar = np.zeros((rows, 4), np.float32)
    if not bool(np.asarray(obs.get("radar_valid", 1)).reshape(-1)[0]):
        return radar, np.array(0, np.int64)
    n = min(max(0, int(np.asarray(obs["radar_num_returns"]).reshape(-1)[0])), rows)
    real = np.asarray(obs["radar_returns"], np.float32).reshape(-1, 4)[:n]
    if not np.all(np.isfinite(real)):
        raise UnusableObservation("radar returns contain NaN or inf")
    radar[:len(real)] = real
    return radar, np.array(len(real), np.int64)


def stop_plan(speed_mps: float) -> Plan:
    """Straight ahead (or back) at constant deceleration to a standstill: where the car stops, it stays."""
    v = abs(speed_mps) if np.isfinite(speed_mps) else 0.0
    t_s = PLAN_DT_S * np.arange(1, PLAN_POSES + 1)
    t_stop_s = v / STOP_DECEL_MPS2
    t_eff = np.minimum(t_s, t_stop_s)
    dist_m = v * t_eff - 0.5 * STOP_DECEL_MPS2 * t_eff**2
    gear = REVERSE if np.isfinite(speed_mps) and speed_mps < 0 else FORWARD
    poses = np.column_stack([gear * dist_m, np.zeros(PLAN_POSES), np.zeros(PLAN_POSES)])
    return Plan(poses, gear)


THREADS_ENV = "DUALDRIVE_E2E_THREADS"  # CPU threads for the model's inference (default 1)
GUARD_ENV = "DUALDRIVE_E2E_GUARD"  # "0": drive the network's plan unchecked (see dualdrive.agents.guard)
PROBE_ENV = "DUALDRIVE_E2E_PROBE"  # "0": no speed probe (see dualdrive.agents.e2e.probe)
GUARD_RADAR_ENV = "DUALDRIVE_E2E_GUARD_RADAR"  # "0": the guard checks against the LiDAR alone
LEAVING_ENV = "DUALDRIVE_E2E_LEAVING"  # "0": no leaving latch (see dualdrive.agents.e2e.leaving)
LIGHTS_ENV = "DUALDRIVE_E2E_LIGHTS"  # "0": no red-light rule (see dualdrive.agents.e2e.lights)
PARK_ASSIST_ENV = "DUALDRIVE_E2E_PARK_ASSIST"  # "0": the network drives car parks too (dualdrive.agents.e2e.park_assist)
YIELD_ENV = "DUALDRIVE_E2E_YIELD"  # "0": no left-turn yield rule (see dualdrive.agents.e2e.yielding)
TURN_KEEPING_ENV = "DUALDRIVE_E2E_TURN_KEEPING"  # "0": no turn keeping (see dualdrive.agents.e2e.turn_keeping)
LANE_CHANGE_ENV = "DUALDRIVE_E2E_LANE_CHANGE"  # "0": no lane-change rule (see dualdrive.agents.e2e.lane_change)


def _switch_from_env(name: str, what: str) -> bool:
    value = os.environ.get(name, "1").strip().lower()
    if value not in ("0", "1", "on", "off", "true", "false"):
        raise ValueError(f"${name}={value!r}: use 1 ({what}) or 0 (off)")
    return value in ("1", "on", "true")


def guard_from_env() -> bool:
    """Whether the LiDAR plan guard is on: $DUALDRIVE_E2E_GUARD, default on."""
    return _switch_from_env(GUARD_ENV, "the guard checks each plan against the LiDAR")


def guard_radar_from_env() -> bool:
    """Whether the plan guard also checks against the radar at speed: $DUALDRIVE_E2E_GUARD_RADAR, default on."""
    return _switch_from_env(GUARD_RADAR_ENV, "the guard checks against the radar too")


def leaving_from_env() -> bool:
    """Whether the leaving latch is on: $DUALDRIVE_E2E_LEAVING, default on."""
    return _switch_from_env(LEAVING_ENV, "the car finishes backing out of its spot under FOLLOW_LANE")


def lights_from_env() -> bool:
    """Whether the red-light rule is on: $DUALDRIVE_E2E_LIGHTS, default on."""
    return _switch_from_env(LIGHTS_ENV, "the plan stops short of a junction whose light the camera shows red")


def yield_from_env() -> bool:
    """Whether the left-turn yield rule is on: $DUALDRIVE_E2E_YIELD, default on."""
    return _switch_from_env(YIELD_ENV, "the car waits to turn left while oncoming traffic would reach its turn")


def turn_keeping_from_env() -> bool:
    """Whether the turn-keeping rule is on: $DUALDRIVE_E2E_TURN_KEEPING, default on."""
    return _switch_from_env(TURN_KEEPING_ENV, "through left turns the plan is kept within the route's lane")


def lane_change_from_env() -> bool:
    """Whether the lane-change rule is on: $DUALDRIVE_E2E_LANE_CHANGE, default on."""
    return _switch_from_env(LANE_CHANGE_ENV, "the car changes lanes where the navigation asks, once there is a gap")


def park_assist_from_env() -> bool:
    """Whether the parking assist is on: $DUALDRIVE_E2E_PARK_ASSIST, default on."""
    return _switch_from_env(PARK_ASSIST_ENV, "the modular pipeline's parking function drives in car parks")


def probe_from_env() -> bool:
    """Whether the speed probe is on: $DUALDRIVE_E2E_PROBE, default on."""
    return _switch_from_env(PROBE_ENV, "System 1 is asked what it would do at the speed limit")


@contextmanager
def guard_env(on: bool) -> Iterator[None]:
    """Within the block, ``E2EAgent()`` has the plan guard on or off, here and in the Ray workers started in it
    (DAgger drives the network alone: the states it gets wrong are the ones to label)."""
    with _scoped_env(GUARD_ENV, "1" if on else "0"):
        yield


@contextmanager
def probe_env(on: bool) -> Iterator[None]:
    """Within the block, ``E2EAgent()`` has the speed probe on or off, here and in the Ray workers started in it."""
    with _scoped_env(PROBE_ENV, "1" if on else "0"):
        yield


@contextmanager
def network_alone() -> Iterator[None]:
    """Within the block, ``E2EAgent()`` drives the network's own plan: no guard, no speed probe, no red-light
    rule, no left-turn yield, no turn keeping, no lane-change rule, no parking assist, and reverse plans under the
    reversing commands only, as before the leaving latch (DAgger's drives, so that ``make model`` drives the states it
    always did; open-loop scoring)."""
    with guard_env(False), probe_env(False), _scoped_env(GUARD_RADAR_ENV, "1"), _scoped_env(LEAVING_ENV, "0"), \
            _scoped_env(LIGHTS_ENV, "0"), _scoped_env(PARK_ASSIST_ENV, "0"), _scoped_env(YIELD_ENV, "0"), \
            _scoped_env(TURN_KEEPING_ENV, "0"), _scoped_env(LANE_CHANGE_ENV, "0"):
        yield


class E2EAgent(Agent):
    """Drives with the learned E2E model from a safetensors checkpoint (see dualdrive.agents.e2e.checkpoint)."""

    name = "e2e"
    uses_sensors = True
    privileged = False

    def __init__(self, checkpoint: str | Path | None = None, device: str = "cpu", guard: bool | None = None,
                 probe: bool | None = None, leaving: bool | None = None, lights: bool | None = None,
                 park_assist: bool | None = None, yielding: bool | None = None,
                 turn_keeping: bool | None = None, lane_change: bool | None = None) -> None:
        if device == "cpu":
            # one decision is a batch of one through a ~1M-parameter model: more intra-op threads gain
            # nothing, and beside other busy processes (eval workers, a second run) OpenMP's waiting
            # threads made it ~30x slower (0.73 s against 0.025 s a decision, measured on 2 cores)
            torch.set_num_threads(int(os.environ.get(THREADS_ENV, "1")))
        self.checkpoint = resolve_checkpoint(checkpoint)
        self.model, self.info = load_checkpoint(self.checkpoint, device)
        self.device = torch.device(device)
        self._warned: set[str] = set()
        self.reverse_vetoed = 0  # decisions whose reverse plan was not driven (REVERSE_COMMANDS), this episode
        guard_on = guard_from_env() if guard is None else guard
        self.guard = PlanGuard(GuardConfig(enabled=guard_on, radar=guard_on and guard_radar_from_env()))
        self.probe = SpeedProbeConfig(enabled=probe_from_env() if probe is None else probe)
        self.probe_used = 0  # decisions that drove the probe's plan, this episode
        # still backing out of the start spot under FOLLOW_LANE
        self.leaving = LeavingLatch(LeavingConfig(enabled=leaving_from_env() if leaving is None else leaving))
        self.lights = LightRule(LightRuleConfig(enabled=lights_from_env() if lights is None else lights))
        self.light_stops = 0  # decisions whose plan the red-light rule cut short, this episode
        self.yielding = LeftTurnYield(YieldRuleConfig(enabled=yield_from_env() if yielding is None else yielding))
        self.turn_keeping = TurnKeeping(TurnKeepingConfig(enabled=turn_keeping_from_env() if turn_keeping is None
                                                          else turn_keeping))
        self.lane_change = LaneChange(LaneChangeConfig(enabled=lane_change_from_env() if lane_change is None
                                                       else lane_change))
        self.park_assist = ParkAssist(ParkAssistConfig(enabled=park_assist_from_env() if park_assist is None
                                                       else park_assist))
        self._assisted: Plan | None = None  # this tick's parking-assist plan (replan() reuses it)
        self._light_stop: float | None = None  # this tick's red-light stop distance (replan() reuses it)
        self._yield_stop: float | None = None  # this tick's left-turn yield stop distance (the same)
        self._keeping = False  # whether turn keeping holds the plan this tick (the same)
        self.history = InputHistory()  # the last second of inputs, for a model with the history input
        self.debug: dict[str, Any] = {}

    def reset(self, info: dict[str, Any]) -> None:
        """Nothing carries over between episodes (the history input starts empty; ``info["dt_s"]``, the env's
        tick, says how many ticks make its second)."""
        self.reverse_vetoed = self.probe_used = self.light_stops = 0
        self.guard.reset()
        self.leaving.reset()
        self.lights.reset()
        self.yielding.reset()
        self.turn_keeping.reset()
        self.park_assist.reset()
        self.lane_change.reset(info.get("dt_s"))
        self._assisted, self._light_stop, self._yield_stop, self._keeping = None, None, None, False
        self.history.reset(info.get("dt_s"))
        self.debug = {}

    def act(self, observation: dict[str, np.ndarray]) -> Plan:
        return self._act(observation, fresh=True)

    def replan(self, observation: dict[str, np.ndarray]) -> Plan:
        """The same tick asked again (the dual agent's checks, with other guidance): the per-tick state (the
        leaving latch, the red-light rule, the parking assist's odometry) is not advanced a second time."""
        return self._act(observation, fresh=False)

    def _act(self, observation: dict[str, np.ndarray], fresh: bool) -> Plan:
        speed_mps = _speed(observation)
        if fresh:
            self._assisted = self.park_assist.act(observation)
        if self._assisted is not None:
            self.history.clear()
            self.lane_change.active = False  # the car park's own manoeuvres: no change goes on
            self.debug = dict(self.park_assist.debug)
            return self._assisted
        try:
            x = observation_to_inputs(observation, self.info.config)
        except UnusableObservation as e:
            self.history.clear()
            return self._stop(f"unusable observation ({e})", speed_mps)
        if self.info.config.history:
            x.update(self.history.push(x) if fresh else self.history.inputs(x))
        batch = {k: torch.from_numpy(np.asarray(v)).unsqueeze(0).to(self.device) for k, v in x.items()}
        leaving = self.leaving.update(int(x["command"]), speed_mps, x["route"]) if fresh else self.leaving.active
        if fresh:
            self._light_stop = self.lights.stop_distance(observation, speed_mps)
            self._yield_stop = self.yielding.stop_distance(observation, speed_mps, _radar_returns(observation))
            self._keeping = self.turn_keeping.update(observation, speed_mps)
            self.lane_change.update(observation, speed_mps,
                                    _lidar_points(observation) if float(x["valid_lidar"]) else None)
        # where the plan guard may bend the network's plan and back up (dualdrive.agents.guard), and the probe is
        # not asked: the car-park manoeuvres and the search for a spot, all at walking pace among parked cars
        car_park = leaving or int(x["command"]) in CAR_PARK_COMMANDS
        v_probe = probe_speed(_speed_limit(observation), self.probe)
        probing = not car_park and wanted(speed_mps, v_probe, self.probe)
        if probing:  # the same frame again, as the car would sense it at the limit: one batch of two, the camera
            # and LiDAR frames encoded once for both rows (the model shares a frame given once)
            batch = {k: v if k in SHARED_FRAME_KEYS else torch.cat([v, v]) for k, v in batch.items()}
            batch["speed"][1] = v_probe
            if "radar" in x:
                batch["radar"][1] = torch.from_numpy(radar_at_speed(x["radar"], int(x["radar_count"]), speed_mps,
                                                                    v_probe)).to(self.device)
            if "speed_past" in x:  # a car that had been at the limit a second ago too, seen by that frame's radar
                batch["speed_past"][1] = v_probe
                batch["radar_past"][1] = torch.from_numpy(radar_at_speed(
                    x["radar_past"], int(x["radar_past_count"]), float(x["speed_past"][0]), v_probe)).to(self.device)
        with torch.inference_mode():
            out = self.model(**batch, with_aux=False)
        reverse = int(out["gear_logits"][0].argmax()) == REVERSE_GEAR_CLASS
        plan = out["plan"][0]
        if reverse and "plans" in out and not (self.leaving.may_reverse or int(x["command"]) in REVERSE_COMMANDS):
            plan, reverse = out["plans"][0, 0], False  # no reversing on the road: the forward plan
            self.reverse_vetoed += 1
        poses = plan.double().cpu().numpy()
        if not np.all(np.isfinite(poses)):
            return self._stop("the model's plan is not finite", speed_mps)
        chosen = Plan(poses, REVERSE if reverse else FORWARD)
        self.debug = {"phase": "leaving the spot"} if leaving and int(x["command"]) not in REVERSE_COMMANDS else {}
        if probing and not reverse:
            probe_poses = out["plans"][1, 0] if "plans" in out else out["plan"][1]
            probe_poses = probe_poses.double().cpu().numpy()
            if holds_speed(probe_poses, v_probe, chosen.dt_s, self.probe):  # finite, and at speed all the way
                chosen = sped_up(chosen, Plan(probe_poses, FORWARD), speed_mps, self.probe)
                self.probe_used += 1
                self.debug = {"probe": f"at {v_probe:.0f} m/s it would hold the speed: speeding up",
                              "phase": "probe: speeding up"}
        # ... from TurnKeepingConfig.over_change_m on: further out a change going on keeps the plan (watching from 50 m,
        # turn keeping had dropped the change into a left-turn lane: P2P 5002 crawled on beside it, entered on red)
        keeping = self._keeping and not (self.lane_change.active and self.turn_keeping.yields_to_a_change(observation))
        if keeping and not reverse and not car_park:
            # at a left turn the route's lane is turn keeping's, a change still going on included (it converges on the
            # route's line): laid straight across instead, a change held at the junction drove P2P 5002 on into the
            # wrong connector
            chosen = self.turn_keeping.apply(chosen, observation)
        elif self.lane_change.active and not reverse and not car_park:
            chosen = self.lane_change.apply(chosen)
            self.debug = {**self.debug, **self.lane_change.debug}
        if self._light_stop is not None and not reverse:
            chosen = retime_plan(chosen, speed_mps, stop_at_m=self._light_stop)
            self.light_stops += fresh
            self.debug = {**self.debug, "phase": f"red light: stop in {self._light_stop:.0f} m"}
        if self._yield_stop is not None and not reverse and (self._light_stop is None
                                                             or self._yield_stop < self._light_stop):
            chosen = retime_plan(chosen, speed_mps, stop_at_m=self._yield_stop)
            self.debug = {**self.debug, "phase": f"yielding to oncoming traffic: stop in {self._yield_stop:.0f} m"}
        if not (self.guard.cfg.enabled and float(x["valid_lidar"])):
            return chosen  # no LiDAR frame this tick: nothing to check against (the network still sees the camera)
        other = None
        # the other gear's plan: backing up when the nose will not clear, in a car park only (a manoeuvre, or an
        # aisle by its speed limit). On a road the guard stood the car behind a queue at a junction, and after 3 s
        # boxed in it backed up on the network's reverse plan at 3.5 m/s, swung 40 degrees off the lane, and the
        # network, lost, stood there until the drive was declared blocked (urban 5008, RC 37 %)
        may_back_up = car_park or _speed_limit(observation) <= self.park_assist.cfg.car_park_limit_mps
        if "plans" in out and may_back_up:
            other_poses = out["plans"][0, 0 if reverse else 1].double().cpu().numpy()
            if np.all(np.isfinite(other_poses)):
                other = Plan(other_poses, FORWARD if reverse else REVERSE)
        verdict = self.guard.check(chosen, speed_mps, _steer(observation), _lidar_points(observation), other,
                                   car_park=car_park, radar=_radar_returns(observation))
        # the video's caption shows what the guard did (the dual agent puts System 2's caption over it)
        if verdict.reason:
            self.debug = {**self.debug, "guard": verdict.reason, "phase": "guard: " + verdict.reason.split("; ")[-1]}
        return verdict.plan

    def _stop(self, reason: str, speed_mps: float) -> Plan:
        kind = reason.split(" (")[0]
        if kind not in self._warned:  # once per kind: a stuck sensor would flood the log every tick
            self._warned.add(kind)
            log.warning("e2e agent: %s; returning a stop plan (warned once)", reason)
        return stop_plan(speed_mps)


def _steer(observation: dict[str, Any]) -> float:
    """The odometry's front-wheel angle (0 when the sensor suite does not give it, as on stock envs)."""
    try:
        value = float(np.asarray(observation["steer_rad"]).reshape(-1)[0])
    except (KeyError, IndexError, TypeError, ValueError):
        return 0.0
    return value if np.isfinite(value) else 0.0


def _lidar_points(observation: dict[str, Any]) -> np.ndarray:
    n = int(np.asarray(observation["lidar_num_points"]).reshape(-1)[0])
    return np.asarray(observation["lidar_points_m"], np.float32)[:max(0, n)]


def _radar_returns(observation: dict[str, Any]) -> np.ndarray | None:
    """The front radar's real returns this tick; None without a radar frame (the guard then has the LiDAR alone)."""
    if not all(k in observation for k in RADAR_KEYS) or \
            not bool(np.asarray(observation.get("radar_valid", 1)).reshape(-1)[0]):
        return None
    n = int(np.asarray(observation["radar_num_returns"]).reshape(-1)[0])
    return np.asarray(observation["radar_returns"], np.float32).reshape(-1, 4)[:max(0, n)]


def _speed_limit(observation: dict[str, Any]) -> float:
    """The navigation's speed limit where the car is (NaN where the observation has none)."""
    try:
        return float(np.asarray(observation["speed_limit_mps"]).reshape(-1)[0])
    except (KeyError, IndexError, TypeError, ValueError):
        return float("nan")


def _speed(observation: dict[str, Any]) -> float:
    try:
        return float(np.asarray(observation["speed_mps"]).reshape(-1)[0])
    except (KeyError, IndexError, TypeError, ValueError):
        return 0.0
