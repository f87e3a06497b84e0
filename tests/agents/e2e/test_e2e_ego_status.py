"""The acceleration input, the route prior, the lead head and the route-frame radar of the E2E model, and giving them
to a trained model."""
import logging
import math

import numpy as np
import pytest
import torch

from dualdrive.agents.e2e.agent import E2EAgent, observation_to_inputs, stop_plan
from dualdrive.agents.e2e.bench import synthetic_observation
from dualdrive.agents.e2e.checkpoint import CheckpointError, load_grown_into, save_checkpoint
from dualdrive.agents.e2e.config import E2EConfig, E2EConfigError
from dualdrive.agents.e2e.model import E2EModel, route_frame, route_prior
from dualdrive.data.lead import lead_label, lead_labels
from dualdrive.training.losses import lead_loss
from e2e_helpers import trained_like

TINY = E2EConfig(camera_channels=(8, 16, 16, 16), lidar_channels=(8, 16, 16, 16), d_model=32, n_layers=1, ff_dim=64,
                 bev_decoder_channels=8, dropout=0.0)
GROWN = E2EConfig(**{**TINY.to_dict(), "accel_input": True, "plan_prior": "route"})


def _inputs(batch: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    straight = torch.stack([8.0 * torch.arange(1, 11, dtype=torch.float32), torch.zeros(10)], dim=1)
    return {"camera": torch.randint(0, 256, (batch, 3, 96, 192), generator=g, dtype=torch.uint8),
            "lidar_bev": torch.rand(batch, 2, 128, 128, generator=g), "speed": torch.tensor([[4.0], [10.0]])[:batch],
            "command": torch.zeros(batch, dtype=torch.long), "route": straight.expand(batch, 10, 2).clone(),
            "valid_camera": torch.ones(batch), "valid_lidar": torch.ones(batch)}


def test_route_prior_drives_the_route_at_the_current_speed():
    straight = torch.stack([8.0 * torch.arange(1, 11, dtype=torch.float32), torch.zeros(10)], dim=1)[None]
    poses = route_prior(straight, torch.tensor([4.0]), 8)
    np.testing.assert_allclose(poses[0, :, 0].numpy(), 2.0 * np.arange(1, 9), atol=1e-5)
    assert torch.all(poses[0, :, 1:] == 0)
    # a right-angle turn after 8 m: 12 m in (3 s at 4 m/s) is 4 m along the second leg, heading +90 degrees
    corner = torch.tensor([[8.0, 0.0]] + [[8.0, 8.0 * k] for k in range(1, 10)])[None]
    p = route_prior(corner, torch.tensor([4.0]), 8)[0]
    np.testing.assert_allclose(p[5].numpy(), [8.0, 4.0, math.pi / 2], atol=1e-5)
    np.testing.assert_allclose(p[1].numpy(), [4.0, 0.0, 0.0], atol=1e-5)


def test_route_prior_stops_at_the_routes_end_and_never_reverses():
    ends = torch.tensor([[4.0, 0.0], [8.0, 0.0]] + [[8.0, 0.0]] * 8)[None]  # the route ends 8 m ahead
    p = route_prior(ends, torch.tensor([10.0]), 8)[0]
    np.testing.assert_allclose(p[0].numpy(), [5.0, 0.0, 0.0], atol=1e-5)
    np.testing.assert_allclose(p[1:].numpy(), np.tile([8.0, 0.0, 0.0], (7, 1)), atol=1e-5)  # heading kept at the end
    back = route_prior(ends, torch.tensor([-3.0]), 8)[0]
    assert torch.all(back[:, :2] == 0)


def test_a_fresh_model_with_the_route_prior_plans_the_prior_and_the_reverse_plan_has_none():
    x = _inputs()
    with torch.no_grad():
        out = E2EModel(GROWN).eval()(**x)
    torch.testing.assert_close(out["plans"][:, 0], route_prior(x["route"], x["speed"].reshape(-1), 8))
    assert torch.equal(out["plans"][:, 1], torch.zeros_like(out["plans"][:, 1]))


def test_the_acceleration_moves_the_plan_once_learned_and_none_means_zero():
    model = trained_like(GROWN)
    x = _inputs()
    with torch.no_grad():
        base = model(**x)["plan"]
        assert torch.equal(base, model(**x, accel=torch.zeros(2, 1))["plan"])  # zero-initialised: no effect yet
        torch.nn.init.normal_(model.accel_embed.weight, std=1.0)
        assert torch.allclose(base, model(**x, accel=torch.zeros(2, 1))["plan"], atol=1e-6)
        assert not torch.allclose(base, model(**x, accel=torch.full((2, 1), -3.0))["plan"], atol=1e-4)


def test_a_trained_model_given_the_acceleration_starts_out_as_it_was(tmp_path):
    saved = trained_like(TINY)
    path = save_checkpoint(tmp_path / "m.safetensors", saved)
    grown = E2EModel(E2EConfig(**{**TINY.to_dict(), "accel_input": True})).eval()
    added = load_grown_into(grown, path, TINY)
    assert added == ["accel_embed.weight (new)", "accel_embed.bias (new)"]
    x = _inputs()
    with torch.no_grad():
        torch.testing.assert_close(grown(**x, accel=torch.full((2, 1), 2.0))["plan"], saved(**x)["plan"])


def test_a_trained_model_given_the_route_prior_keeps_its_trunk_and_reverse_plan(tmp_path):
    saved = trained_like(TINY)
    path = save_checkpoint(tmp_path / "m.safetensors", saved)
    grown = E2EModel(GROWN).eval()
    added = load_grown_into(grown, path, TINY)
    assert any("plan_prior" in a for a in added)
    x = _inputs()
    with torch.no_grad():
        a, b = grown(**x), saved(**x)
    torch.testing.assert_close(a["plans"][:, 0], route_prior(x["route"], x["speed"].reshape(-1), 8))
    torch.testing.assert_close(a["plans"][:, 1], b["plans"][:, 1])
    torch.testing.assert_close(a["gear_logits"], b["gear_logits"])


def test_only_the_growable_parts_may_differ(tmp_path):
    path = save_checkpoint(tmp_path / "m.safetensors", trained_like(TINY))
    wider = E2EModel(E2EConfig(**{**GROWN.to_dict(), "d_model": 64}))
    with pytest.raises(CheckpointError, match="different model config: d_model differ"):
        load_grown_into(wider, path, TINY)
    grown_path = save_checkpoint(tmp_path / "g.safetensors", trained_like(GROWN))
    with pytest.raises(CheckpointError, match="accel_input, plan_prior"):  # parts are added, never taken away
        load_grown_into(E2EModel(TINY), grown_path, GROWN)
    with pytest.raises(E2EConfigError, match="plan_prior"):
        E2EConfig(plan_prior="lanes")


def test_the_agent_reads_the_odometry_acceleration_and_stops_without_it(tmp_path, caplog):
    path = save_checkpoint(tmp_path / "g.safetensors", trained_like(GROWN))
    obs = synthetic_observation(GROWN)
    obs["accel_mps2"] = np.array([-2.5], np.float32)
    assert observation_to_inputs(obs, GROWN)["accel"].tolist() == [-2.5]
    assert "accel" not in observation_to_inputs(obs, TINY)
    agent = E2EAgent(path, guard=False, probe=False)  # the network alone (random points block the guard)
    agent.reset({})
    assert np.abs(agent.act(obs).poses).sum() > 0
    obs["accel_mps2"] = np.array([np.nan], np.float32)
    with caplog.at_level(logging.WARNING, logger="dualdrive.agents.e2e.agent"):
        plan = agent.act(obs)
    assert "accel_mps2" in caplog.text
    np.testing.assert_array_equal(plan.poses, stop_plan(float(obs["speed_mps"][0])).poses)


def _box(x: float, y: float, yaw: float = 0.0, length: float = 4.0, speed: float = 0.0, cls: int = 0) -> list[float]:
    return [x, y, yaw, length, 1.8, speed, cls]


def test_the_lead_is_the_nearest_box_ahead_on_the_route():
    straight = np.column_stack([8.0 * np.arange(1, 11), np.zeros(10)])
    boxes = np.array([_box(-6.0, 0.0, speed=20.0), _box(30.0, 0.2, speed=6.0), _box(12.0, 3.5, speed=1.0),
                      _box(45.0, 0.0)], np.float32)
    np.testing.assert_allclose(lead_label(boxes, 4, straight, 10.0), [1.0, 28.0, -4.0], atol=1e-5)
    np.testing.assert_allclose(lead_label(boxes, 1, straight, 10.0), [0.0, 0.0, 0.0])  # only the car behind
    # a left bend: the car at (20, 6) sits on the route, the one straight ahead at (20, 0) is off it
    bend = np.array([[8.0 * k * np.cos(0.3 * k / 3), 8.0 * k * np.sin(0.3 * k / 3)] for k in range(1, 11)])
    on_route = bend[2] + 0.0
    bent = np.array([_box(20.0, 0.0, speed=9.0), _box(*on_route, speed=9.0)], np.float32)
    label = lead_label(bent, 2, bend, 10.0)
    assert label[0] == 1.0 and label[1] > 20.0
    blank = lead_labels(None, None, np.zeros((3, 10, 2)), np.zeros(3))
    assert blank.shape == (3, 3) and np.all(blank[:, 0] == -1.0)


def test_the_lead_head_is_trained_where_labelled_and_only_there():
    cfg = E2EConfig(**{**TINY.to_dict(), "lead_head": True})
    model = trained_like(cfg)
    x = _inputs()
    out = model(**x)
    assert out["lead"].shape == (2, 3) and "lead" not in model(**x, with_aux=False)
    target = torch.tensor([[1.0, 20.0, -2.0], [-1.0, 0.0, 0.0]])
    loss = lead_loss(out["lead"], target, cfg)
    only_first = lead_loss(out["lead"][:1], target[:1], cfg)
    torch.testing.assert_close(loss, only_first)  # the unlabelled frame adds nothing
    nothing = lead_loss(out["lead"], torch.tensor([[-1.0, 0.0, 0.0]] * 2), cfg)
    assert nothing.item() == 0.0
    nothing_ahead = lead_loss(out["lead"], torch.zeros(2, 3), cfg)  # presence only: BCE towards 0
    expected = torch.nn.functional.binary_cross_entropy_with_logits(out["lead"][:, 0], torch.zeros(2))
    torch.testing.assert_close(nothing_ahead, expected)


@pytest.mark.parametrize("name", ["e2e_accel_prior.json", "e2e_accel_prior_lead.json",
                                  "e2e_accel_prior_lead_radar_route.json", "e2e_history.json"])
def test_the_configs_in_the_readme_grow_the_shipped_checkpoint(name):
    import json
    from pathlib import Path

    from dualdrive.agents.e2e.agent import DEFAULT_CHECKPOINT
    from dualdrive.agents.e2e.checkpoint import read_info
    from dualdrive.agents.e2e.config import GROWABLE
    root = Path(__file__).resolve().parents[3]
    cfg = E2EConfig.from_dict(json.loads((root / "configs" / name).read_text()))
    shipped = read_info(DEFAULT_CHECKPOINT).config.to_dict()
    differ = {k for k, v in cfg.to_dict().items() if shipped[k] != v}
    assert differ and differ <= set(GROWABLE)


def test_without_lead_labels_the_head_stays_in_the_graph_at_zero_loss():
    from dualdrive.training.losses import compute_losses
    cfg = E2EConfig(**{**TINY.to_dict(), "lead_head": True})
    model = trained_like(cfg).train()
    x = _inputs()
    batch = {**x, "plan": torch.zeros(2, 8, 3), "gear": torch.zeros(2, dtype=torch.long),
             "bev_semantic": torch.full((2, 64, 64), -1), "light": torch.full((2,), -1)}
    losses = compute_losses(model(**x), batch, cfg)
    assert losses["lead_loss"].item() == 0.0
    losses["loss"].backward()
    assert model.lead_head[-1].weight.grad is not None  # data-parallel ranks see the same parameters used


def test_the_model_card_names_the_optional_parts(tmp_path):
    from dualdrive.training.model_card import _architecture
    plain = _architecture(save_checkpoint(tmp_path / "a.safetensors", trained_like(TINY)))
    grown = _architecture(save_checkpoint(tmp_path / "b.safetensors", trained_like(
        E2EConfig(**{**GROWN.to_dict(), "lead_head": True, "radar_route_frame": True, "history": True}))))
    assert "acceleration" not in plain and "route" not in plain and "car ahead" not in plain and "ago" not in plain
    assert "acceleration" in grown and "route" in grown and "car ahead" in grown and "radar return" in grown
    assert "a second ago" in grown


def test_route_frame_is_arc_length_and_signed_offset():
    straight = torch.stack([8.0 * torch.arange(1, 11, dtype=torch.float32), torch.zeros(10)], dim=1)[None]
    s, lat = route_frame(straight, torch.tensor([[[20.0, 1.5], [35.0, -4.0], [-3.0, 0.5]]]))
    np.testing.assert_allclose(s[0].numpy(), [20.0, 35.0, 0.0], atol=1e-5)  # behind the ego: the route's start
    np.testing.assert_allclose(lat[0].numpy(), [1.5, -4.0, math.hypot(3.0, 0.5)], atol=1e-5)
    # a left turn after 8 m: a car 10 m up the second leg is on the route 18 m along; one beside that leg
    # 2 m to its right (x = 10) is at the same arc length, offset -2
    corner = torch.tensor([[8.0, 0.0]] + [[8.0, 8.0 * k] for k in range(1, 10)])[None]
    s, lat = route_frame(corner, torch.tensor([[[8.0, 10.0], [10.0, 10.0]]]))
    np.testing.assert_allclose(s[0].numpy(), [18.0, 18.0], atol=1e-5)
    np.testing.assert_allclose(lat[0].numpy(), [0.0, -2.0], atol=1e-5)
    # a route that ends early repeats its last point: those zero-length segments are never the nearest
    short = torch.tensor([[4.0, 0.0], [8.0, 0.0]] + [[8.0, 0.0]] * 8)[None]
    s, lat = route_frame(short, torch.tensor([[[12.0, 1.0]]]))
    assert s.item() == pytest.approx(8.0) and lat.item() == pytest.approx(math.hypot(4.0, 1.0))


def test_a_radar_model_given_the_route_frame_starts_out_as_it_was(tmp_path):
    radar = {"radar": torch.tensor([[[20.0, 0.05, -3.0, 10.0], [30.0, -0.2, 1.0, 5.0]] + [[0.0] * 4] * 30] * 2),
             "radar_count": torch.tensor([2, 1])}
    saved = trained_like(GROWN)
    path = save_checkpoint(tmp_path / "m.safetensors", saved)
    cfg = E2EConfig(**{**GROWN.to_dict(), "radar_route_frame": True})
    grown = E2EModel(cfg).eval()
    added = load_grown_into(grown, path, GROWN)
    assert added and all(a.startswith("radar_route_embed.") for a in added)
    x = {**_inputs(), **radar}
    with torch.no_grad():
        torch.testing.assert_close(grown(**x)["plan"], saved(**x)["plan"])
        torch.nn.init.normal_(grown.radar_route_embed[-1].weight, std=0.5)  # once learned, the route frame counts
        assert not torch.allclose(grown(**x)["plan"], saved(**x)["plan"])
    with pytest.raises(E2EConfigError, match="radar_route_frame"):
        E2EConfig(radar_returns=0, radar_route_frame=True)


def test_a_reverse_plan_is_driven_only_to_leave_a_spot_or_to_park(tmp_path):
    """The expert reverses only under LEAVE_SPOT and PARK; elsewhere a gear head that says reverse (at a
    standstill in a queue, say) gets the model's forward plan driven instead."""
    from dualdrive.agents.base import FORWARD, REVERSE
    from dualdrive.world.commands import Command
    model = trained_like(TINY)
    with torch.no_grad():
        model.gear_head[-1].bias.copy_(torch.tensor([-10.0, 10.0]))  # always "reverse"
    agent = E2EAgent(save_checkpoint(tmp_path / "r.safetensors", model), guard=False, probe=False,  # the gear rule alone
                     park_assist=False)
    for command, gear, which in ((Command.FOLLOW_LANE, FORWARD, 0), (Command.TAKE_EXIT, FORWARD, 0),
                                 (Command.PARK, REVERSE, 1), (Command.LEAVE_SPOT, REVERSE, 1)):
        obs = {**synthetic_observation(TINY), "command": np.array([int(command)], np.int8)}
        x = {k: torch.from_numpy(np.asarray(v)).unsqueeze(0) for k, v in observation_to_inputs(obs, TINY).items()}
        with torch.no_grad():
            plans = agent.model(**x, with_aux=False)["plans"][0].double().numpy()
        agent.reset({})
        plan = agent.act(obs)
        assert plan.gear == gear, command
        np.testing.assert_allclose(plan.poses, plans[which], atol=1e-6)
        assert agent.reverse_vetoed == (1 if which == 0 else 0)


def test_a_car_still_backing_out_of_its_spot_may_reverse_under_follow_lane(tmp_path):
    """The world says FOLLOW_LANE once the car is half out of its bay; it finishes backing out (the latch of
    dualdrive.agents.e2e.leaving) rather than having its reverse plan vetoed there, crosswise in the aisle."""
    from dualdrive.agents.base import FORWARD, REVERSE
    from dualdrive.world.commands import Command
    model = trained_like(TINY)
    with torch.no_grad():
        model.gear_head[-1].bias.copy_(torch.tensor([-10.0, 10.0]))  # always "reverse"
    agent = E2EAgent(save_checkpoint(tmp_path / "r.safetensors", model), guard=False, probe=False, park_assist=False)
    crosswise = np.array([[-2.0, -8.0 - 5.0 * i] for i in range(TINY.route_points)], np.float32)

    def obs(command: Command, speed: float) -> dict:
        return {**synthetic_observation(TINY), "command": np.array([int(command)], np.int8),
                "speed_mps": np.array([speed], np.float32), "route_xy_ego_m": crosswise}

    agent.reset({})
    assert agent.act(obs(Command.LEAVE_SPOT, 0.0)).gear == REVERSE
    plan = agent.act(obs(Command.FOLLOW_LANE, -1.5))
    assert plan.gear == REVERSE and agent.reverse_vetoed == 0 and agent.debug["phase"] == "leaving the spot"
    assert agent.act(obs(Command.FOLLOW_LANE, 4.0)).gear == FORWARD  # at road speed: on the road, vetoed
    assert agent.reverse_vetoed == 1
    agent.reset({})  # a new episode on the road: no spot left, no reversing
    assert agent.act(obs(Command.FOLLOW_LANE, -1.5)).gear == FORWARD
    without = E2EAgent(agent.checkpoint, guard=False, probe=False, leaving=False, park_assist=False)  # the rule as it was
    assert without.act(obs(Command.LEAVE_SPOT, 0.0)).gear == REVERSE
    assert without.act(obs(Command.FOLLOW_LANE, -1.5)).gear == FORWARD and without.reverse_vetoed == 1
