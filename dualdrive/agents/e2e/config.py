"""Configuration of the end-to-end (System 1) driving model: sizes, heads and loss weights.

One typed dataclass with working defaults; ``to_dict``/``from_dict`` are the only way in and out
of files (the checkpoint's JSON sidecar), and ``validate`` is the one place that checks values.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, get_type_hints

from dualdrive.agents.e2e.guidance import GUIDANCE


PLAN_PRIORS = ("none", "route")
HISTORY_S = 1.0  # how far back the history input looks: a multiple of the expert's 0.2 s and the human export's 0.5 s frames


class E2EConfigError(ValueError):
    """A bad or unknown E2E model configuration value; the message names the key and what is allowed."""


@dataclass(frozen=True)
class E2EConfig:
    # -- inputs (the data contract; see dualdrive.training and the DemoDataset) --------------------
    camera_height_px: int = 96
    camera_width_px: int = 192
    bev_size_px: int = 128  # LiDAR BEV grid, 0.5 m cells, 64 m x 64 m
    bev_in_channels: int = 2  # point counts below / above the split height
    num_commands: int = 10  # dualdrive.world.route.Command
    route_points: int = 10  # route target points in the ego frame, 8 m apart
    # System 2's guidance (dualdrive.agents.e2e.guidance.GUIDANCE) as an input; 0: none (older checkpoints)
    guidance_classes: int = 0
    # front radar returns read as a set of tokens (position, Doppler velocity, RCS): the one input that
    # measures how fast the others move (a single camera or LiDAR frame does not). 0: no radar input
    radar_returns: int = 32
    # the odometry's longitudinal acceleration into the measurement token ("ego status"): whether the car is
    # speeding up or braking, which one speed reading cannot say. False: no acceleration input
    accel_input: bool = False
    # each radar return also placed on the route: how far along it (arc length from the ego) and how far to
    # its side. Which return is the car ahead *on the route* (the one whose speed the ego must hold) is then
    # one threshold on the lateral offset, not a geometric test the fusion has to learn against a bending
    # polyline (route-relative agent features, as PlanTF and PLUTO encode them). False: ego-frame only
    radar_route_frame: bool = False
    # the frame ``HISTORY_S`` ago beside the current one: the ego's speed then (added to the measurement token) and
    # that frame's radar returns as tokens of their own. One frame shows where the car ahead is and how fast it
    # moves, not whether it is braking or pulling away: the change over a second does (how much the ego's driver
    # speeds up or slows down next is mostly that). False: the current frame only
    history: bool = False
    # -- outputs ---------------------------------------------------------------------------------
    plan_poses: int = 8  # poses at 0.5 s (dualdrive.agents.base.PLAN_POSES)
    gear_classes: int = 2  # 0 forward, 1 reverse
    # one plan per gear, the gear head choosing which is driven. With a single plan, the states where the
    # expert switches gear (leaving a spot, parking) get the average of a forward and a reverse plan,
    # which neither gear can follow: the car stood still there. False: one plan (checkpoints before the key)
    plan_per_gear: bool = True
    # what the forward plan's head adds its output to: "none" (the head's poses are the plan) or "route"
    # (the route driven at the current speed; the head learns only the departure from it: nuPlan's
    # centre-line planner as the prior, so the network's capacity goes to the speed profile and the
    # swerves, not to reproducing the route). The reverse plan has no prior (the route leads forward)
    plan_prior: str = "none"
    # an auxiliary head on the fused measurement token: is there a car (or obstacle) ahead on the route,
    # how far, how much faster than the ego. The speed the ego can hold is mostly the car ahead's, and
    # the plan is read from the same token: this makes that token find it. False: no such head
    lead_head: bool = False
    bev_classes: int = 6  # off-road, road, route corridor, vehicle, pedestrian, static obstacle
    bev_out_px: int = 64  # auxiliary BEV semantic map side
    light_classes: int = 4  # none, green, yellow, red
    # -- sizes -----------------------------------------------------------------------------------
    # channels after each stride-2 stage; 4 stages take 96x192 to a 6x12 token grid, 128x128 to 8x8
    camera_channels: tuple[int, ...] = (16, 32, 64, 128)
    lidar_channels: tuple[int, ...] = (16, 32, 64, 128)
    d_model: int = 128  # transformer width
    n_heads: int = 4
    n_layers: int = 2
    ff_dim: int = 256
    dropout: float = 0.1
    bev_decoder_channels: int = 32
    # -- input scales (bring values near unit range before the first layer) -------------------------
    speed_scale_mps: float = 10.0
    route_scale_m: float = 40.0
    radar_range_scale_m: float = 50.0
    radar_velocity_scale_mps: float = 10.0
    radar_rcs_scale_dbsm: float = 10.0
    accel_scale_mps2: float = 3.0
    plan_step_scale_m: float = 5.0  # a raw unit of the per-step delta head is this many metres (10 m/s * 0.5 s)
    # -- loss weights ----------------------------------------------------------------------------
    plan_loss_weight: float = 1.0
    gear_loss_weight: float = 0.1
    bev_loss_weight: float = 0.5
    light_loss_weight: float = 0.1
    lead_loss_weight: float = 0.5

    def __post_init__(self) -> None:
        for name in ("camera_channels", "lidar_channels"):  # accept lists (JSON, to_dict) for the tuple fields
            if isinstance(getattr(self, name), list):
                object.__setattr__(self, name, tuple(getattr(self, name)))
        self.validate()

    # -- validation ------------------------------------------------------------------------------
    def validate(self) -> None:
        r = self.radar_returns
        if isinstance(r, bool) or not isinstance(r, int) or r < 0:
            raise E2EConfigError(f"e2e.radar_returns={r!r} must be an integer >= 0 (0: no radar input)")
        positive_ints = ("camera_height_px", "camera_width_px", "bev_size_px", "bev_in_channels", "num_commands",
                         "route_points", "plan_poses", "gear_classes", "bev_classes", "bev_out_px", "light_classes",
                         "d_model", "n_heads", "n_layers", "ff_dim", "bev_decoder_channels")
        for name in positive_ints:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise E2EConfigError(f"e2e.{name}={v!r} must be a positive integer")
        if self.radar_route_frame and not self.radar_returns:
            raise E2EConfigError("e2e.radar_route_frame=true needs the radar input (e2e.radar_returns > 0)")
        if self.history and not self.radar_returns:
            raise E2EConfigError("e2e.history=true needs the radar input (e2e.radar_returns > 0): the history is the "
                                 "speed and the radar returns of a second ago")
        if self.plan_prior not in PLAN_PRIORS:
            raise E2EConfigError(f"e2e.plan_prior={self.plan_prior!r} must be one of {list(PLAN_PRIORS)}")
        g = self.guidance_classes
        if isinstance(g, bool) or g not in (0, len(GUIDANCE)):
            raise E2EConfigError(f"e2e.guidance_classes={g!r} must be 0 (no guidance input) or {len(GUIDANCE)} "
                                 "(dualdrive.agents.e2e.guidance.GUIDANCE)")
        for name in ("camera_channels", "lidar_channels"):
            v = getattr(self, name)
            if not isinstance(v, tuple) or len(v) < 1 or not all(isinstance(c, int) and c > 0 for c in v):
                raise E2EConfigError(f"e2e.{name}={v!r} must be a non-empty list of positive integers")
        stride = 2 ** len(self.camera_channels)
        if self.camera_height_px % stride or self.camera_width_px % stride:
            raise E2EConfigError(f"e2e.camera_height_px/camera_width_px ({self.camera_height_px}x{self.camera_width_px}) "
                                 f"must be divisible by 2**len(camera_channels) = {stride}")
        stride = 2 ** len(self.lidar_channels)
        if self.bev_size_px % stride:
            raise E2EConfigError(f"e2e.bev_size_px={self.bev_size_px} must be divisible by "
                                 f"2**len(lidar_channels) = {stride}")
        grid = self.bev_size_px // stride
        if self.bev_out_px % grid or (self.bev_out_px // grid) & (self.bev_out_px // grid - 1):
            raise E2EConfigError(f"e2e.bev_out_px={self.bev_out_px} must be the LiDAR token grid ({grid}) "
                                 "times a power of 2")
        if self.d_model % self.n_heads:
            raise E2EConfigError(f"e2e.d_model={self.d_model} must be divisible by e2e.n_heads={self.n_heads}")
        if not 0.0 <= self.dropout < 1.0:
            raise E2EConfigError(f"e2e.dropout={self.dropout!r} must be in [0, 1)")
        for name in ("speed_scale_mps", "route_scale_m", "plan_step_scale_m", "radar_range_scale_m",
                     "radar_velocity_scale_mps", "radar_rcs_scale_dbsm", "accel_scale_mps2"):
            if not getattr(self, name) > 0:
                raise E2EConfigError(f"e2e.{name}={getattr(self, name)!r} must be > 0")
        for name in ("plan_loss_weight", "gear_loss_weight", "bev_loss_weight", "light_loss_weight", "lead_loss_weight"):
            if not getattr(self, name) >= 0:
                raise E2EConfigError(f"e2e.{name}={getattr(self, name)!r} must be >= 0")

    # -- (de)serialisation -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> E2EConfig:
        """Build from a (JSON) dict; unknown keys and wrongly typed values are errors that name them.

        A key that later versions added and an older sidecar lacks takes the value that reproduces the
        older model (``LEGACY_DEFAULTS``), not today's default."""
        if isinstance(d, dict):
            d = {**{k: v for k, v in LEGACY_DEFAULTS.items() if k not in d}, **d}
        return dataclass_from_dict(cls, d, E2EConfigError, "e2e")


# keys added after checkpoints were shipped: what a sidecar without the key means
LEGACY_DEFAULTS: dict[str, Any] = {"plan_per_gear": False, "radar_returns": 0, "accel_input": False,
                                   "plan_prior": "none", "lead_head": False, "radar_route_frame": False,
                                   "history": False}
# parts a trained model can be given afterwards (fine-tuning from a checkpoint without them, see
# dualdrive.agents.e2e.checkpoint.load_grown_into): the key and the value of a model without the part
GROWABLE: dict[str, Any] = {"accel_input": False, "plan_prior": "none", "lead_head": False,
                            "radar_route_frame": False, "history": False}


def dataclass_from_dict(cls: type, d: Any, error: type[Exception], prefix: str) -> Any:
    """Build the config dataclass ``cls`` from a JSON-like dict, rejecting unknown keys and bad types."""
    if not isinstance(d, dict):
        raise error(f"{prefix} config must be a mapping, got {type(d).__name__}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise error(f"unknown {prefix} config key(s) {unknown}; valid keys: {sorted(known)}")
    hints = get_type_hints(cls)
    return cls(**{k: _coerce(f"{prefix}.{k}", v, hints[k], error) for k, v in d.items()})


def _coerce(name: str, value: Any, hint: Any, error: type[Exception]) -> Any:
    """JSON has no tuples and writes 1.0 as 1: convert what is safe, reject the rest with the key's name."""
    is_int = isinstance(value, int) and not isinstance(value, bool)
    if hint is float and (is_int or isinstance(value, float)):
        return float(value)
    if (hint is int and is_int) or (hint is str and isinstance(value, str)) or (hint is bool and isinstance(value, bool)):
        return value
    if getattr(hint, "__origin__", None) is tuple and isinstance(value, (list, tuple)):
        return tuple(value)
    expected = getattr(hint, "__name__", str(hint))
    raise error(f"{name}={value!r} has type {type(value).__name__}, expected {expected}")
