"""The end-to-end driving model (System 1): a small TransFuser-like camera + LiDAR fusion network.

This module holds the model and nothing else (no losses, no data loading, no checkpoint I/O).

Architecture (sizes from :class:`E2EConfig`, defaults in brackets):

- camera encoder: uint8 (3, 96, 192) -> float, ImageNet-normalised -> 4 stride-2 conv stages (residual from the 2nd)
  -> a (128, 6, 12) map = 72 tokens; LiDAR encoder: (2, 128, 128) BEV counts -> 4 stages -> (128, 8, 8)
  = 64 tokens; both projected to ``d_model`` [128] with learned position embeddings.
- measurement token: speed, command embedding, the 10 route target points and the two sensor
  validity flags, through an MLP (with ``accel_input`` also the odometry's acceleration).
- radar tokens: each of up to 32 front-radar returns (position, Doppler velocity, RCS) through an MLP,
  padding masked: the only input that says how fast the others move. With ``radar_route_frame`` a second,
  zero-initialised MLP adds where the return lies relative to the route (arc length along it, offset to
  its side), so "the car ahead on my route" is one threshold away.
- with ``history``, the frame a second ago (``HISTORY_S``): the speed change since then, added to the
  measurement token through a zero-initialised layer, and that frame's radar returns as tokens of their own
  (the same embedding, placed on that frame's route, plus a learned "a second ago" vector). The car ahead is
  then in both sets, and whether it brakes or pulls away is the difference.
- fusion: a pre-norm transformer encoder [2 layers, 4 heads] over [measurement, camera, LiDAR, radar]
  tokens. TransFuser fuses at several encoder scales; with ~140 tokens a single late fusion is
  enough for the measurement token to attend to every cell of both sensors, and it keeps the
  decision within the 10 ms one-thread budget.
- heads: the plan and gear from the fused measurement token (with ``plan_prior="route"`` the forward
  plan is the route driven at the current speed plus the head's output); the auxiliary light state from the
  fused camera tokens (a light is only visible to the camera); the auxiliary BEV semantic map
  decoded from the fused LiDAR tokens with skip connections from the LiDAR encoder (the LiDAR grid
  and the semantic grid cover the same ground, so the decoder only upsamples).
- with ``lead_head``, an auxiliary head on the fused measurement token for the car ahead on the route
  (presence, gap, relative speed): the token the plan is read from has to find it.

A sensor whose frame is invalid (``valid_* = 0``, the frame holds zeros) has its tokens replaced by a
learned "missing" token, so the transformer can tell "nothing there" from "no data".

GroupNorm rather than BatchNorm: decisions run at batch 1, training batches are small, and there
are no running statistics that could drift apart between data-parallel ranks.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from dualdrive.agents.base import PLAN_DT_S
from dualdrive.agents.e2e.config import E2EConfig

# ImageNet channel statistics on the [0, 1] scale: a conventional, fixed input normalisation
IMAGE_MEAN = (0.485, 0.456, 0.406)
IMAGE_STD = (0.229, 0.224, 0.225)
UINT8_MAX = 255.0
HEADING_STEP_SCALE_RAD = 0.2  # a raw unit of the heading-delta head: a sharp turn's yaw change in 0.5 s
MODEL_INPUT_KEYS = ("camera", "lidar_bev", "speed", "command", "route", "valid_camera", "valid_lidar", "radar",
                    "radar_count", "accel", "speed_past", "history_valid", "radar_past", "radar_past_count", "route_past")
MIN_SEGMENT_M = 1e-3  # a shorter route segment is padding (a route that ends repeats its last point)
RADAR_FEATURES = 4  # x, y (from range and azimuth), radial velocity, RCS
LEAD_OUTPUTS = 3  # the car ahead: presence logit, gap, relative speed
ROUTE_FRAME_FEATURES = 2  # a radar return's arc length along the route and signed offset to its left
LATERAL_SCALE_M = 3.5  # a lane's width: an offset of 1 is the next lane
MAX_LATERAL_LANES = 5.0  # offsets are clipped here: a return five lanes off the route is simply "off it"


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(max(1, channels // 8), channels)


class _Stage(nn.Module):
    """A stride-2 conv that halves the resolution, then (``residual``) a residual 3x3 conv at the new one."""

    def __init__(self, c_in: int, c_out: int, residual: bool = True) -> None:
        super().__init__()
        self.down = nn.Sequential(nn.Conv2d(c_in, c_out, 3, 2, 1, bias=False), _norm(c_out), nn.ReLU(inplace=True))
        self.res = nn.Sequential(nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False), _norm(c_out)) if residual else None

    def forward(self, x: Tensor) -> Tensor:
        x = self.down(x)
        return x if self.res is None else F.relu(x + self.res(x))


class _Encoder(nn.Module):
    """A stack of stages; returns every stage's map (the BEV decoder uses them as skips).

    The first stage is a plain strided conv: a residual conv at half the input resolution would
    cost as much as the rest of the encoder (the latency budget), for features that are still edges."""

    def __init__(self, c_in: int, channels: tuple[int, ...]) -> None:
        super().__init__()
        ins = (c_in, *channels[:-1])
        self.stages = nn.ModuleList(_Stage(a, b, residual=i > 0) for i, (a, b) in enumerate(zip(ins, channels)))

    def forward(self, x: Tensor) -> list[Tensor]:
        maps = []
        for stage in self.stages:
            x = stage(x)
            maps.append(x)
        return maps


class _BevDecoder(nn.Module):
    """Upsamples the fused LiDAR token grid to the semantic map, adding encoder skips of equal size."""

    def __init__(self, cfg: E2EConfig) -> None:
        super().__init__()
        c = cfg.bev_decoder_channels
        grid_px = cfg.bev_size_px // 2 ** len(cfg.lidar_channels)
        self.n_up = (cfg.bev_out_px // grid_px).bit_length() - 1
        self.inp = nn.Conv2d(cfg.d_model, c, 1)
        # the encoder map with the resolution reached after each upsampling, if there is one
        sizes = [cfg.bev_size_px // 2 ** (i + 1) for i in range(len(cfg.lidar_channels))]
        self.skip_index = [sizes.index(grid_px * 2 ** (k + 1)) if grid_px * 2 ** (k + 1) in sizes else -1
                           for k in range(self.n_up)]
        self.skips = nn.ModuleList(nn.Conv2d(cfg.lidar_channels[i], c, 1) if i >= 0 else nn.Identity()
                                   for i in self.skip_index)
        self.convs = nn.ModuleList(nn.Sequential(nn.Conv2d(c, c, 3, 1, 1, bias=False), _norm(c), nn.ReLU(inplace=True))
                                   for _ in range(self.n_up))
        self.out = nn.Conv2d(c, cfg.bev_classes, 1)

    def forward(self, grid: Tensor, enc_maps: list[Tensor]) -> Tensor:
        x = self.inp(grid)
        for k in range(self.n_up):
            x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
            if self.skip_index[k] >= 0:
                x = x + self.skips[k](enc_maps[self.skip_index[k]])
            x = self.convs[k](x)
        return self.out(x)


class E2EModel(nn.Module):
    """Camera + LiDAR BEV + route/command/speed -> 8-pose plan, gear, and auxiliary BEV / light outputs."""

    def __init__(self, cfg: E2EConfig = E2EConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.register_buffer("image_mean", torch.tensor(IMAGE_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("image_std", torch.tensor(IMAGE_STD).view(1, 3, 1, 1), persistent=False)
        self.camera_encoder = _Encoder(3, cfg.camera_channels)
        self.lidar_encoder = _Encoder(cfg.bev_in_channels, cfg.lidar_channels)
        self.camera_proj = nn.Conv2d(cfg.camera_channels[-1], d, 1)
        self.lidar_proj = nn.Conv2d(cfg.lidar_channels[-1], d, 1)
        s_cam, s_lidar = 2 ** len(cfg.camera_channels), 2 ** len(cfg.lidar_channels)
        self.camera_grid = (cfg.camera_height_px // s_cam, cfg.camera_width_px // s_cam)
        self.lidar_grid = (cfg.bev_size_px // s_lidar, cfg.bev_size_px // s_lidar)
        n_cam, n_lidar = self.camera_grid[0] * self.camera_grid[1], self.lidar_grid[0] * self.lidar_grid[1]
        self.n_camera_tokens, self.n_lidar_tokens = n_cam, n_lidar
        self.pos_embedding = nn.Parameter(torch.zeros(1, 1 + n_cam + n_lidar, d))
        self.missing_camera = nn.Parameter(torch.zeros(1, 1, d))
        self.missing_lidar = nn.Parameter(torch.zeros(1, 1, d))
        self.command_embedding = nn.Embedding(cfg.num_commands, d)
        # System 2's meta-action, added to the measurement token like the command (index 0: none)
        self.guidance_embedding = nn.Embedding(cfg.guidance_classes, d) if cfg.guidance_classes else None
        # radar: each return one token, embedded from where it is and how fast it closes; a set, so no
        # position embedding (the position is in the features); padding rows are masked out of attention
        self.radar_embed = nn.Sequential(nn.Linear(RADAR_FEATURES, d), nn.ReLU(inplace=True), nn.Linear(d, d)) \
            if cfg.radar_returns else None
        # where each return lies relative to the route, added to its token; zero-initialised last layer, so a
        # trained radar model can be given it and start out exactly as it was (checkpoint.load_grown_into)
        self.radar_route_embed = nn.Sequential(nn.Linear(RADAR_FEATURES + ROUTE_FRAME_FEATURES, d),
                                               nn.ReLU(inplace=True), nn.Linear(d, d)) \
            if cfg.radar_route_frame else None
        # the history: (speed now - speed then, whether there is a then) into the measurement token, zero-initialised
        # like the acceleration; the radar of a second ago tells itself from today's by this added vector
        self.history_embed = nn.Linear(2, d) if cfg.history else None
        self.past_radar_type = nn.Parameter(torch.zeros(1, 1, d)) if cfg.history else None
        n_meas = 1 + 2 * cfg.route_points + 2  # speed, route xy, two validity flags
        self.measurement = nn.Sequential(nn.Linear(n_meas, d), nn.ReLU(inplace=True), nn.Linear(d, d))
        # the acceleration is added to the measurement token through its own zero-initialised layer, so a
        # model trained without it can be given it and start out exactly as it was (checkpoint.load_grown_into)
        self.accel_embed = nn.Linear(1, d) if cfg.accel_input else None
        layer = nn.TransformerEncoderLayer(d, cfg.n_heads, cfg.ff_dim, cfg.dropout, batch_first=True, norm_first=True)
        self.fusion = nn.TransformerEncoder(layer, cfg.n_layers, norm=nn.LayerNorm(d), enable_nested_tensor=False)
        self.n_plans = cfg.gear_classes if cfg.plan_per_gear else 1
        self.plan_head = nn.Sequential(nn.Linear(d, d), nn.ReLU(inplace=True),
                                       nn.Linear(d, self.n_plans * cfg.plan_poses * 3))
        self.gear_head = nn.Sequential(nn.Linear(d, d // 2), nn.ReLU(inplace=True), nn.Linear(d // 2, cfg.gear_classes))
        self.light_head = nn.Sequential(nn.Linear(d, d // 2), nn.ReLU(inplace=True), nn.Linear(d // 2, cfg.light_classes))
        self.bev_decoder = _BevDecoder(cfg)
        # (presence logit, gap / route_scale_m, speed relative to the ego / speed_scale_mps) of the car ahead
        self.lead_head = nn.Sequential(nn.Linear(d, d // 2), nn.ReLU(inplace=True), nn.Linear(d // 2, LEAD_OUTPUTS)) \
            if cfg.lead_head else None
        nn.init.normal_(self.pos_embedding, std=0.02)
        # a zero plan head starts the model at "stand still", a safe and neutral first guess
        nn.init.zeros_(self.plan_head[-1].weight)
        nn.init.zeros_(self.plan_head[-1].bias)
        if self.accel_embed is not None:
            nn.init.zeros_(self.accel_embed.weight)
            nn.init.zeros_(self.accel_embed.bias)
        if self.history_embed is not None:
            nn.init.zeros_(self.history_embed.weight)
            nn.init.zeros_(self.history_embed.bias)
            nn.init.normal_(self.past_radar_type, std=0.02)
        if self.radar_route_embed is not None:
            nn.init.zeros_(self.radar_route_embed[-1].weight)
            nn.init.zeros_(self.radar_route_embed[-1].bias)

    def forward(self, camera: Tensor, lidar_bev: Tensor, speed: Tensor, command: Tensor, route: Tensor,
                valid_camera: Tensor, valid_lidar: Tensor, with_aux: bool = True,
                guidance: Tensor | None = None, radar: Tensor | None = None,
                radar_count: Tensor | None = None, accel: Tensor | None = None, speed_past: Tensor | None = None,
                history_valid: Tensor | None = None, radar_past: Tensor | None = None,
                radar_past_count: Tensor | None = None, route_past: Tensor | None = None) -> dict[str, Tensor]:
        """Batched inputs as in the data contract (camera uint8 (B, 3, H, W), lidar_bev (B, 2, S, S),
        speed (B, 1), command (B,), route (B, R, 2), valid_* (B,); ``guidance`` (B,) for a model with a
        guidance input, None meaning none for all; ``radar`` (B, N, 4) rows and ``radar_count`` (B,) real
        rows, None meaning no returns; ``accel`` (B, 1) m/s^2 for a model with ``accel_input``, None meaning 0;
        for a model with ``history``, the frame ``HISTORY_S`` ago: ``speed_past`` (B, 1), ``history_valid`` (B,)
        (0: no such frame, the first second of a drive), ``radar_past`` (B, N, 4), ``radar_past_count`` (B,) and
        that frame's ``route_past`` (B, R, 2), None meaning no history).
        ``camera`` and ``lidar_bev`` may instead hold one frame (batch 1) for B rows of the other inputs: the
        frame is encoded once and shared (one frame asked at several speeds).
        Returns ``plan`` (B, P, 3),
        ``gear_logits`` (B, 2), with ``plan_per_gear`` ``plans`` (B, 2, P, 3) (``plan`` is the chosen gear's)
        and, with ``with_aux``, ``bev_logits`` (B, C, M, M), ``light_logits`` (B, 4) and with ``lead_head``
        ``lead`` (B, 3)."""
        cfg = self.cfg
        v_cam = valid_camera.reshape(-1, 1, 1).to(torch.float32)
        v_lidar = valid_lidar.reshape(-1, 1, 1).to(torch.float32)
        image = (camera.to(torch.float32) / UINT8_MAX - self.image_mean) / self.image_std
        cam_maps = self.camera_encoder(image)
        lidar_maps = self.lidar_encoder(lidar_bev.to(torch.float32))
        rows = speed.shape[0]
        if camera.shape[0] != rows or lidar_bev.shape[0] != rows:
            # one sensor frame asked several questions (the speed probe: the same frame at another speed):
            # it is encoded once and its maps are shared by every row
            if camera.shape[0] != 1 or lidar_bev.shape[0] != 1:
                raise ValueError(f"camera and lidar_bev have batch {camera.shape[0]} and {lidar_bev.shape[0]}: "
                                 f"give {rows} frames, or one frame shared by all {rows} rows")
            cam_maps = [m.expand(rows, -1, -1, -1) for m in cam_maps]
            lidar_maps = [m.expand(rows, -1, -1, -1) for m in lidar_maps]
        cam_tokens = self.camera_proj(cam_maps[-1]).flatten(2).transpose(1, 2)
        lidar_tokens = self.lidar_proj(lidar_maps[-1]).flatten(2).transpose(1, 2)
        cam_tokens = v_cam * cam_tokens + (1.0 - v_cam) * self.missing_camera
        lidar_tokens = v_lidar * lidar_tokens + (1.0 - v_lidar) * self.missing_lidar
        meas_in = torch.cat([speed.reshape(-1, 1).to(torch.float32) / cfg.speed_scale_mps,
                             route.reshape(route.shape[0], -1).to(torch.float32) / cfg.route_scale_m,
                             v_cam.reshape(-1, 1), v_lidar.reshape(-1, 1)], dim=1)
        meas_token = self.measurement(meas_in) + self.command_embedding(command.reshape(-1).long())
        if self.guidance_embedding is not None:
            g = command.new_zeros(command.reshape(-1).shape) if guidance is None else guidance.reshape(-1)
            meas_token = meas_token + self.guidance_embedding(g.long())
        if self.accel_embed is not None:
            a = speed.new_zeros(speed.shape[0], 1) if accel is None else accel.reshape(-1, 1).to(torch.float32)
            meas_token = meas_token + self.accel_embed(a / cfg.accel_scale_mps2)
        if self.history_embed is not None:
            valid = speed.new_zeros(speed.shape[0], 1) if history_valid is None or speed_past is None \
                else history_valid.reshape(-1, 1).to(torch.float32)
            then = speed if speed_past is None else speed_past.reshape(-1, 1)
            change = (speed.reshape(-1, 1) - then).to(torch.float32) / cfg.speed_scale_mps
            meas_token = meas_token + self.history_embed(torch.cat([change * valid, valid], dim=1))
        meas_token = meas_token.unsqueeze(1)
        tokens = torch.cat([meas_token, cam_tokens, lidar_tokens], dim=1) + self.pos_embedding
        padding = None
        if self.radar_embed is not None:
            if radar is None or radar_count is None:  # no returns (every row padding); the embedding stays in the
                # graph, so data-parallel ranks agree on which parameters have gradients
                radar = meas_token.new_zeros(meas_token.shape[0], cfg.radar_returns, RADAR_FEATURES)
                radar_count = command.new_zeros(meas_token.shape[0])
            sets = [self._radar_tokens(radar, radar_count, route.to(torch.float32))]
            if self.past_radar_type is not None:  # the returns of a second ago, on that frame's route
                if radar_past is None or radar_past_count is None or history_valid is None:
                    radar_past = meas_token.new_zeros(meas_token.shape[0], cfg.radar_returns, RADAR_FEATURES)
                    radar_past_count = command.new_zeros(meas_token.shape[0])
                else:  # a row without a frame a second ago has no returns from it
                    radar_past_count = radar_past_count.reshape(-1) * (history_valid.reshape(-1) > 0)
                past_route = route if route_past is None else route_past
                past_tokens, past_pad = self._radar_tokens(radar_past, radar_past_count, past_route.to(torch.float32))
                sets.append((past_tokens + self.past_radar_type, past_pad))
            if not self.training:  # decisions: up to the most real returns of any row, and a mask only where
                # rows differ (masked rows change no other token, so this is the same result for less attention,
                # and without the mask the attention skips its slow masked softmax: 3.7 ms of a probed decision)
                sets = [_trim(t, p) for t, p in sets]
            radar_tokens = torch.cat([t for t, _ in sets], dim=1)
            radar_pad = torch.cat([p for _, p in sets], dim=1)
            if bool(radar_pad.any()):
                padding = torch.cat([radar_pad.new_zeros(radar_pad.shape[0], tokens.shape[1]), radar_pad], dim=1)
            tokens = torch.cat([tokens, radar_tokens], dim=1)
        tokens = self.fusion(tokens, src_key_padding_mask=padding)
        fused_meas = tokens[:, 0]
        plans = self._plans(fused_meas)
        if cfg.plan_prior == "route":  # the forward plan departs from the route driven at today's speed
            prior = route_prior(route.to(torch.float32), speed.reshape(-1).to(torch.float32), cfg.plan_poses)
            plans = torch.cat([plans[:, :1] + prior.unsqueeze(1), plans[:, 1:]], dim=1)
        gear_logits = self.gear_head(fused_meas)
        out = {"plan": plans[:, 0], "gear_logits": gear_logits}
        if self.n_plans > 1:  # the plan of the gear the model chooses is the one driven
            out["plans"] = plans
            out["plan"] = plans[torch.arange(plans.shape[0], device=plans.device), gear_logits.argmax(dim=1)]
        if with_aux:
            fused_cam = tokens[:, 1:1 + self.n_camera_tokens]
            fused_lidar = tokens[:, 1 + self.n_camera_tokens:1 + self.n_camera_tokens + self.n_lidar_tokens]
            out["light_logits"] = self.light_head(fused_cam.mean(dim=1))
            if self.lead_head is not None:
                out["lead"] = self.lead_head(fused_meas)
            grid = fused_lidar.transpose(1, 2).reshape(-1, cfg.d_model, *self.lidar_grid)
            skips = [m * v_lidar.unsqueeze(-1) for m in lidar_maps]  # an invalid frame's features are noise-free zeros
            out["bev_logits"] = self.bev_decoder(grid, skips)
        return out

    def _radar_tokens(self, radar: Tensor, count: Tensor, route: Tensor) -> tuple[Tensor, Tensor]:
        """(B, R, d) tokens of the radar rows (range_m, azimuth_rad, radial_velocity_mps, rcs_dbsm) and the
        (B, R) padding mask (True: row ``>= count``, not a return); with ``radar_route_frame`` each token
        also says where the return lies along the (B, P, 2) route."""
        cfg = self.cfg
        radar = radar[:, :cfg.radar_returns].to(torch.float32)
        rng, az = radar[..., 0], radar[..., 1]
        feats = torch.stack([rng * torch.cos(az) / cfg.radar_range_scale_m, rng * torch.sin(az) / cfg.radar_range_scale_m,
                             radar[..., 2] / cfg.radar_velocity_scale_mps, radar[..., 3] / cfg.radar_rcs_scale_dbsm], dim=-1)
        pad = torch.arange(radar.shape[1], device=radar.device).unsqueeze(0) >= count.reshape(-1, 1)
        feats = feats.masked_fill(pad.unsqueeze(-1), 0.0)  # whatever the padding rows hold never reaches a token
        tokens = self.radar_embed(feats)
        if self.radar_route_embed is not None:
            xy = torch.stack([rng * torch.cos(az), rng * torch.sin(az)], dim=-1)
            s, lat = route_frame(route, xy)
            on_route = torch.stack([s / cfg.radar_range_scale_m,
                                    (lat / LATERAL_SCALE_M).clamp(-MAX_LATERAL_LANES, MAX_LATERAL_LANES)], dim=-1)
            on_route = on_route.masked_fill(pad.unsqueeze(-1), 0.0)
            tokens = tokens + self.radar_route_embed(torch.cat([feats, on_route], dim=-1))
        return tokens, pad

    def _plans(self, fused: Tensor) -> Tensor:
        """(B, n_plans, P, 3): per-step pose deltas, cumulated into poses (one plan per gear class
        with ``plan_per_gear``).

        Deltas rather than absolute poses: each 0.5 s step moves a bounded, similar amount at every
        horizon, so one output scale fits all steps, the cumulative sum makes the trajectory
        continuous by construction, and a zero output means "stay in place" (the initialisation).
        """
        raw = self.plan_head(fused).view(-1, self.n_plans, self.cfg.plan_poses, 3)
        scale = raw.new_tensor([self.cfg.plan_step_scale_m, self.cfg.plan_step_scale_m, HEADING_STEP_SCALE_RAD])
        return torch.cumsum(raw * scale, dim=2)


def _trim(tokens: Tensor, pad: Tensor) -> tuple[Tensor, Tensor]:
    """A set of (B, N, d) tokens and its (B, N) padding cut to the most real rows of any batch row."""
    n_real = int((~pad).sum(dim=1).max())
    return tokens[:, :n_real], pad[:, :n_real]


def route_prior(route: Tensor, speed: Tensor, poses: int, dt_s: float = PLAN_DT_S) -> Tensor:
    """(B, poses, 3) ego-frame poses along the route polyline (the ego's origin, then the (B, R, 2) route
    points) at the distances the (B,) speed covers in 0.5 s steps (reversing counts as standing), each
    headed along its segment. Past the last point the route is over: the poses stop there (the
    destination), as a car held to its route would."""
    b, r = route.shape[0], route.shape[1]
    pts = torch.cat([route.new_zeros(b, 1, 2), route], dim=1)
    seg = pts[:, 1:] - pts[:, :-1]
    seg_len = seg.norm(dim=-1)
    ends = torch.cumsum(seg_len, dim=1)  # arc length at each segment's end
    starts = ends - seg_len
    times = dt_s * torch.arange(1, poses + 1, device=route.device, dtype=route.dtype)
    s = speed.clamp(min=0.0).reshape(-1, 1) * times  # (B, poses)
    s = torch.minimum(s, ends[:, -1:])
    idx = torch.searchsorted(ends.contiguous(), s.contiguous()).clamp(max=r - 1)  # the segment that holds s
    seg_i = torch.gather(seg, 1, idx.unsqueeze(-1).expand(-1, -1, 2))
    len_i = torch.gather(seg_len, 1, idx)
    frac = ((s - torch.gather(starts, 1, idx)) / len_i.clamp(min=MIN_SEGMENT_M)).clamp(0.0, 1.0)
    xy = torch.gather(pts[:, :-1], 1, idx.unsqueeze(-1).expand(-1, -1, 2)) + frac.unsqueeze(-1) * seg_i
    heading = torch.where(len_i > MIN_SEGMENT_M, torch.atan2(seg_i[..., 1], seg_i[..., 0]), torch.zeros_like(len_i))
    return torch.cat([xy, heading.unsqueeze(-1)], dim=-1)


def route_frame(route: Tensor, xy: Tensor) -> tuple[Tensor, Tensor]:
    """Arc length along the route polyline (the ego's origin, then the (B, R, 2) route points) of the point
    nearest to each of the (B, N, 2) ego-frame points, and their signed offset from it (left positive):
    two (B, N) tensors. Zero-length segments (a route that ends repeats its last point) are skipped."""
    pts = torch.cat([route.new_zeros(route.shape[0], 1, 2), route], dim=1)
    a, seg = pts[:, :-1], pts[:, 1:] - pts[:, :-1]  # (B, R, 2)
    seg_len = seg.norm(dim=-1)  # (B, R)
    starts = torch.cumsum(seg_len, dim=1) - seg_len
    rel = xy.unsqueeze(2) - a.unsqueeze(1)  # (B, N, R, 2)
    seg_b = seg.unsqueeze(1)
    t = ((rel * seg_b).sum(-1) / seg_len.clamp(min=MIN_SEGMENT_M).square().unsqueeze(1)).clamp(0.0, 1.0)
    dist = (rel - t.unsqueeze(-1) * seg_b).norm(dim=-1)  # (B, N, R)
    real = seg_len > MIN_SEGMENT_M
    dist = dist.masked_fill(~real.unsqueeze(1), float("inf"))
    dist = torch.where(real.any(dim=1).reshape(-1, 1, 1), dist, rel.norm(dim=-1))  # no route: the origin
    k = dist.argmin(dim=-1, keepdim=True)  # (B, N, 1): the nearest segment

    def at_k(v: Tensor) -> Tensor:  # v (B, 1 or N, R[, 2]) at each point's nearest segment
        idx = k if v.dim() == 3 else k.unsqueeze(-1)
        return torch.take_along_dim(v, idx, dim=2).squeeze(2)

    s = at_k(starts.unsqueeze(1)) + at_k(t) * at_k(seg_len.unsqueeze(1))
    seg_k, rel_k = at_k(seg_b), at_k(rel)
    cross = seg_k[..., 0] * rel_k[..., 1] - seg_k[..., 1] * rel_k[..., 0]
    lat = torch.where(cross < 0, -1.0, 1.0) * at_k(dist)
    return s, lat


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
