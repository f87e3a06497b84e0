"""System 1's history input: the frame a second ago (the ego's speed then and that frame's radar returns), from
the dataset in training and from the agent's own last second of ticks when it drives."""
import numpy as np
import pytest
import torch

from dualdrive.agents.e2e.agent import E2EAgent
from dualdrive.agents.e2e.bench import synthetic_observation
from dualdrive.agents.e2e.checkpoint import load_grown_into, save_checkpoint
from dualdrive.agents.e2e.config import E2EConfig, E2EConfigError
from dualdrive.agents.e2e.history import InputHistory
from dualdrive.agents.e2e.model import E2EModel
from dualdrive.data.dataset import past_frames
from e2e_helpers import trained_like

TINY = E2EConfig(camera_channels=(8, 16, 16, 16), lidar_channels=(8, 16, 16, 16), d_model=32, n_layers=1, ff_dim=64,
                 bev_decoder_channels=8, dropout=0.0, radar_route_frame=True, plan_prior="route")
HIST = E2EConfig(**{**TINY.to_dict(), "history": True})


def _inputs(batch: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    straight = torch.stack([8.0 * torch.arange(1, 11, dtype=torch.float32), torch.zeros(10)], dim=1)
    radar = torch.zeros(batch, 32, 4)
    radar[:, :3] = torch.tensor([[20.0, 0.0, -2.0, 10.0], [35.0, 0.1, 1.0, 5.0], [8.0, -0.5, -8.0, 0.0]])
    return {"camera": torch.randint(0, 256, (batch, 3, 96, 192), generator=g, dtype=torch.uint8),
            "lidar_bev": torch.rand(batch, 2, 128, 128, generator=g), "speed": torch.tensor([[4.0], [10.0]])[:batch],
            "command": torch.zeros(batch, dtype=torch.long), "route": straight.expand(batch, 10, 2).clone(),
            "valid_camera": torch.ones(batch), "valid_lidar": torch.ones(batch), "radar": radar,
            "radar_count": torch.full((batch,), 3)}


def _history(x: dict[str, torch.Tensor], valid: float, speed_then: float = 6.0, gap_then: float = 25.0) -> dict:
    b = x["speed"].shape[0]
    past = x["radar"].clone()
    past[:, 0, 0] = gap_then
    return {"history_valid": torch.full((b,), valid), "speed_past": torch.full((b, 1), speed_then),
            "radar_past": past, "radar_past_count": x["radar_count"].clone(), "route_past": x["route"].clone()}


def test_the_frame_a_second_ago_is_found_by_time_on_either_frame_rate():
    np.testing.assert_array_equal(past_frames(np.arange(6, dtype=np.float32) * 0.5 + 0.3), [-1, -1, 0, 1, 2, 3])
    np.testing.assert_array_equal(past_frames(np.arange(8, dtype=np.float32) * 0.2), [-1, -1, -1, -1, -1, 0, 1, 2])
    np.testing.assert_array_equal(past_frames(np.array([0.0, 0.3, 0.7, 1.3])), [-1, -1, -1, 1])  # 0.3 s is 1 s back
    np.testing.assert_array_equal(past_frames(np.array([0.0, 0.7, 1.4])), [-1, -1, -1])  # no frame falls 1 s back
    assert past_frames(np.zeros(0)).shape == (0,)


def test_the_history_needs_the_radar():
    with pytest.raises(E2EConfigError, match="history=true needs the radar"):
        E2EConfig(history=True, radar_returns=0)


def test_without_a_frame_a_second_ago_the_history_changes_nothing():
    model = trained_like(HIST)
    torch.nn.init.normal_(model.history_embed.weight, std=1.0)
    x = _inputs()
    with torch.no_grad():
        none = model(**x)["plan"]
        invalid = model(**x, **_history(x, valid=0.0))["plan"]
        valid = model(**x, **_history(x, valid=1.0))["plan"]
        other_radar = model(**x, **_history(x, valid=1.0, gap_then=12.0))["plan"]
        other_speed = model(**x, **_history(x, valid=1.0, speed_then=1.0))["plan"]
    torch.testing.assert_close(none, invalid)
    assert not torch.allclose(none, valid, atol=1e-4)
    assert not torch.allclose(valid, other_radar, atol=1e-4)  # the car ahead was elsewhere a second ago
    assert not torch.allclose(valid, other_speed, atol=1e-4)  # the ego was slower then


def test_a_trained_model_given_the_history_starts_out_as_it_was_without_one(tmp_path):
    saved = trained_like(TINY)
    path = save_checkpoint(tmp_path / "m.safetensors", saved)
    grown = E2EModel(HIST).eval()
    added = load_grown_into(grown, path, TINY)
    assert added == ["past_radar_type (new)", "history_embed.weight (new)", "history_embed.bias (new)"]
    x = _inputs()
    with torch.no_grad():
        torch.testing.assert_close(grown(**x, **_history(x, valid=0.0))["plan"], saved(**x)["plan"])
        # the speed change goes through a zero-initialised layer; only the radar of a second ago moves the plan
        assert not torch.allclose(grown(**x, **_history(x, valid=1.0))["plan"], saved(**x)["plan"], atol=1e-5)


def test_the_ring_hands_back_the_tick_a_second_ago():
    h = InputHistory(dt_s=0.1)
    assert h.ticks == 10
    ticks = [{"speed": np.array([float(k)], np.float32), "radar": np.full((32, 4), k, np.float32),
              "radar_count": np.array(k % 32, np.int64), "route": np.full((10, 2), k, np.float32)} for k in range(13)]
    for k in range(10):  # the first second: none
        out = h.push(ticks[k])
        assert float(out["history_valid"]) == 0.0 and float(out["speed_past"][0]) == k
        assert int(out["radar_past_count"]) == 0 and not out["radar_past"].any()
    out = h.push(ticks[10])
    assert float(out["history_valid"]) == 1.0 and float(out["speed_past"][0]) == 0.0
    assert float(h.inputs(ticks[10])["speed_past"][0]) == 0.0  # asked again, the same tick: nothing advances
    ticks[1]["speed"][0] = 99.0  # the ring keeps copies
    assert float(h.push(ticks[11])["speed_past"][0]) == 1.0
    h.clear()
    assert float(h.push(ticks[12])["history_valid"]) == 0.0
    h.reset(0.5)
    assert h.ticks == 2
    h.reset(float("nan"))
    assert h.ticks == 10


def test_the_agent_feeds_its_last_second_to_a_history_model(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "h.safetensors", trained_like(HIST))
    agent = E2EAgent(path, guard=False, probe=False)
    seen = []
    forward = agent.model.forward

    def spy(**kw):
        seen.append({k: kw[k].clone() for k in ("history_valid", "speed_past")})
        return forward(**kw)

    monkeypatch.setattr(agent.model, "forward", spy)
    agent.reset({"dt_s": 0.2})  # 5 ticks make the second
    for k in range(7):
        obs = synthetic_observation(HIST, seed=k)
        obs["speed_mps"] = np.array([float(k)], np.float32)
        agent.act(obs)
    assert [float(s["history_valid"][0]) for s in seen] == [0, 0, 0, 0, 0, 1, 1]
    assert [float(s["speed_past"][0, 0]) for s in seen[-2:]] == [0.0, 1.0]
    agent.replan(obs)  # the same tick again: the same frame a second ago
    assert float(seen[-1]["speed_past"][0, 0]) == 1.0
    agent.reset({"dt_s": 0.2})
    agent.act(obs)
    assert float(seen[-1]["history_valid"][0]) == 0.0


def test_the_envs_say_their_tick():
    from dualdrive.world.env import DualDriveEnv
    _, info = DualDriveEnv("highway", {"dt_s": 0.05}).reset(seed=0)
    assert info["dt_s"] == 0.05
