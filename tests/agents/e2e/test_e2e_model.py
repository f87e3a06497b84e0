"""The E2E model and its config: shapes, the stand-still start, missing sensors, config validation."""
import pytest
import torch

from dualdrive.agents.e2e.config import E2EConfig, E2EConfigError
from dualdrive.agents.e2e.model import HEADING_STEP_SCALE_RAD, E2EModel, count_parameters

TINY = E2EConfig(camera_channels=(8, 16, 16, 16), lidar_channels=(8, 16, 16, 16), d_model=32, n_layers=1, ff_dim=64,
                 bev_decoder_channels=8, dropout=0.0)
CHECKPOINT_BUDGET_BYTES = 20e6
FLOAT32_BYTES = 4


def _inputs(batch: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"camera": torch.randint(0, 256, (batch, 3, 96, 192), generator=g, dtype=torch.uint8),
            "lidar_bev": torch.rand(batch, 2, 128, 128, generator=g), "speed": torch.rand(batch, 1, generator=g) * 10,
            "command": torch.randint(0, 10, (batch,), generator=g), "route": torch.randn(batch, 10, 2, generator=g) * 20,
            "valid_camera": torch.ones(batch), "valid_lidar": torch.ones(batch)}


def test_default_model_output_shapes_and_size_budget():
    model = E2EModel(E2EConfig()).eval()
    with torch.no_grad():
        out = model(**_inputs())
    assert out["plan"].shape == (2, 8, 3) and out["gear_logits"].shape == (2, 2)
    assert out["bev_logits"].shape == (2, 6, 64, 64) and out["light_logits"].shape == (2, 4)
    assert count_parameters(model) * FLOAT32_BYTES < CHECKPOINT_BUDGET_BYTES
    with torch.no_grad():
        assert set(model(**_inputs(), with_aux=False)) == {"plan", "plans", "gear_logits"}
    assert out["plans"].shape == (2, 2, 8, 3)


def test_the_plan_driven_is_the_plan_of_the_gear_the_model_chooses():
    model = E2EModel(TINY).eval()
    torch.nn.init.normal_(model.plan_head[-1].bias)  # the two gears' plans differ
    torch.nn.init.normal_(model.gear_head[-1].weight, std=1.0)
    with torch.no_grad():
        out = model(**_inputs(batch=8))
    chosen = out["gear_logits"].argmax(dim=1)
    assert 0 < int(chosen.sum()) < 8, "the test needs both gears chosen in the batch"
    for b in range(8):
        assert torch.equal(out["plan"][b], out["plans"][b, chosen[b]])
    assert not torch.equal(out["plans"][:, 0], out["plans"][:, 1])


def test_the_loss_scores_the_experts_gears_plan_only():
    from dualdrive.training.losses import compute_losses
    model = E2EModel(TINY).eval()
    with torch.no_grad():
        out = model(**_inputs(batch=2))
    target = torch.ones(2, 8, 3)
    batch = {"plan": target, "gear": torch.tensor([0, 1]), "bev_semantic": torch.full((2, 64, 64), -1),
             "light": torch.full((2,), -1)}
    perfect = out["plans"].clone()
    perfect[0, 0], perfect[1, 1] = target[0], target[1]  # right where the expert's gear is, wrong elsewhere
    assert float(compute_losses({**out, "plans": perfect}, batch, TINY)["plan_loss"]) == 0.0
    swapped = torch.tensor([1, 0])
    assert float(compute_losses({**out, "plans": perfect}, {**batch, "gear": swapped}, TINY)["plan_loss"]) > 0.5


def test_a_sidecar_without_the_newer_keys_is_a_single_plan_model_without_radar():
    """Checkpoints shipped before the key keep loading as what they are."""
    d = E2EConfig().to_dict()
    del d["plan_per_gear"], d["radar_returns"]
    assert E2EConfig.from_dict(d).plan_per_gear is False and E2EConfig.from_dict(d).radar_returns == 0
    assert E2EConfig().plan_per_gear is True
    newer = ("plan_per_gear", "radar_returns")
    legacy_tiny = E2EConfig.from_dict({k: v for k, v in TINY.to_dict().items() if k not in newer})
    model = E2EModel(legacy_tiny)
    assert model.radar_embed is None
    with torch.no_grad():
        out = model(**_inputs())
    assert "plans" not in out and out["plan"].shape == (2, 8, 3)


def _radar(batch: int, n: int, seed: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    rows = torch.rand(batch, 32, 4, generator=g) * torch.tensor([60.0, 1.0, 10.0, 20.0])
    return rows, torch.full((batch,), n)


def test_radar_returns_move_the_plan_and_padding_rows_do_not():
    model = E2EModel(TINY).eval()
    torch.nn.init.normal_(model.plan_head[-1].weight, std=0.1)
    x = _inputs(batch=1)
    radar, count = _radar(1, 5)
    other, _ = _radar(1, 5, seed=4)
    padded_differently = torch.cat([radar[:, :5], other[:, 5:]], dim=1)
    faster = radar.clone()
    faster[0, 0, 2] -= 8.0  # the first return closes 8 m/s faster
    with torch.no_grad():
        base = model(**x, radar=radar, radar_count=count)["plan"]
        assert torch.allclose(base, model(**x, radar=padded_differently, radar_count=count)["plan"], atol=1e-6)
        assert not torch.allclose(base, model(**x, radar=faster, radar_count=count)["plan"], atol=1e-4)
        none = model(**x, radar=radar, radar_count=torch.zeros(1, dtype=torch.long))["plan"]
        assert torch.allclose(none, model(**x)["plan"], atol=1e-6)  # no returns: as if no radar was given


def test_one_decision_without_padding_equals_its_row_of_a_padded_batch():
    model = E2EModel(TINY).eval()
    torch.nn.init.normal_(model.plan_head[-1].weight, std=0.1)
    x = _inputs(batch=2)
    radar, _ = _radar(2, 0)
    count = torch.tensor([3, 11])
    with torch.no_grad():
        batched = model(**x, radar=radar, radar_count=count)
        for b in range(2):
            one = model(**{k: v[b:b + 1] for k, v in x.items()}, radar=radar[b:b + 1], radar_count=count[b:b + 1])
            torch.testing.assert_close(one["plan"][0], batched["plan"][b], rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(one["bev_logits"][0], batched["bev_logits"][b], rtol=1e-4, atol=1e-4)


def test_the_trimmed_radar_of_a_decision_equals_the_masked_radar_of_training():
    model = E2EModel(TINY)  # dropout 0: train() and eval() differ only in how the radar padding is handled
    torch.nn.init.normal_(model.plan_head[-1].weight, std=0.1)
    x = _inputs(batch=3)
    radar, _ = _radar(3, 0)
    count = torch.tensor([4, 4, 9])
    with torch.no_grad():
        masked = model.train()(**x, radar=radar, radar_count=count)
        trimmed = model.eval()(**x, radar=radar, radar_count=count)
        same_count = model(**{k: v[:2] for k, v in x.items()}, radar=radar[:2], radar_count=count[:2])
    torch.testing.assert_close(trimmed["plan"], masked["plan"], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(trimmed["bev_logits"], masked["bev_logits"], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(same_count["plan"], masked["plan"][:2], rtol=1e-4, atol=1e-5)  # no mask at all


def test_one_frame_shared_by_several_rows_equals_the_frame_repeated():
    model = E2EModel(TINY).eval()
    torch.nn.init.normal_(model.plan_head[-1].weight, std=0.1)
    x = _inputs(batch=1)
    rows = {k: torch.cat([v, v]) for k, v in x.items()}
    rows["speed"][1] = 13.0  # the same frame asked at another speed (the speed probe)
    radar, count = _radar(1, 5)
    radar2, count2 = torch.cat([radar, radar]), torch.cat([count, count])
    with torch.no_grad():
        repeated = model(**rows, radar=radar2, radar_count=count2)
        shared = model(**{**rows, "camera": x["camera"], "lidar_bev": x["lidar_bev"]}, radar=radar2,
                       radar_count=count2)
    for key in ("plan", "gear_logits", "light_logits", "bev_logits"):
        torch.testing.assert_close(shared[key], repeated[key], rtol=1e-4, atol=1e-5)
    assert not torch.allclose(shared["plan"][0], shared["plan"][1], atol=1e-4)  # the speed reached the plan
    with pytest.raises(ValueError, match="one frame shared"):
        model(**{**rows, "camera": torch.cat([rows["camera"]] * 3)})


def test_a_fresh_model_plans_to_stand_still():
    with torch.no_grad():
        plan = E2EModel(TINY).eval()(**_inputs())["plan"]
    assert torch.equal(plan, torch.zeros_like(plan))


def test_plan_is_the_cumulative_sum_of_its_steps():
    model = E2EModel(TINY).eval()
    torch.nn.init.normal_(model.plan_head[-1].bias)  # the output weights are zero: every step is the bias
    with torch.no_grad():
        plans = model(**_inputs(batch=1))["plans"][0]
    for gear, plan in enumerate(plans):
        steps = torch.diff(plan, dim=0, prepend=torch.zeros(1, 3))
        scale = torch.tensor([TINY.plan_step_scale_m, TINY.plan_step_scale_m, HEADING_STEP_SCALE_RAD])
        expected = model.plan_head[-1].bias.view(2, 8, 3)[gear] * scale
        torch.testing.assert_close(steps, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("sensor, key", [("valid_camera", "camera"), ("valid_lidar", "lidar_bev")])
def test_an_invalid_sensor_frame_does_not_influence_the_plan(sensor, key):
    model = E2EModel(TINY).eval()
    torch.nn.init.normal_(model.plan_head[-1].weight, std=0.1)
    a, b = _inputs(batch=1, seed=1), _inputs(batch=1, seed=2)
    b = {**a, key: b[key]}
    for x in (a, b):
        x[sensor] = torch.zeros(1)
    with torch.no_grad():
        pa, pb = model(**a)["plan"], model(**b)["plan"]
        assert torch.equal(pa, pb)
        a[sensor] = torch.ones(1)  # once valid, the frame's content matters
        b[sensor] = torch.ones(1)
        assert not torch.allclose(model(**a)["plan"], model(**b)["plan"])


def test_config_round_trip_and_errors_that_name_the_key():
    cfg = E2EConfig(d_model=64, camera_channels=(8, 8, 8, 8))
    assert E2EConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(E2EConfigError, match="unknown e2e config key.*d_modle"):
        E2EConfig.from_dict({"d_modle": 64})
    with pytest.raises(E2EConfigError, match="e2e.n_layers"):
        E2EConfig.from_dict({"n_layers": 0})
    with pytest.raises(E2EConfigError, match="e2e.d_model.*has type str"):
        E2EConfig.from_dict({"d_model": "big"})
    with pytest.raises(E2EConfigError, match="divisible by e2e.n_heads"):
        E2EConfig(d_model=30, n_heads=4)
    with pytest.raises(E2EConfigError, match="camera_height_px"):
        E2EConfig(camera_height_px=90)
    with pytest.raises(E2EConfigError, match="bev_out_px"):
        E2EConfig(bev_out_px=48)
    with pytest.raises(E2EConfigError, match="plan_loss_weight"):
        E2EConfig(plan_loss_weight=-1.0)
