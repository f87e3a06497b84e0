"""Two open-loop runs compared per clip, with the interval drawn over vehicles, not the clips that repeat them."""
import json

import pytest
from typer.testing import CliRunner

from dualdrive.cli import app
from dualdrive.human.compare import compare_openloop, vehicle_key
from dualdrive.human.pack import HumanDataError


def _run(errors: dict[str, float]) -> dict:
    return {"per_clip": [{"clip": c, "e2e": {"l2_3s_m": e}, "constant_velocity": {"l2_3s_m": 3.0}}
                         for c, e in errors.items()]}


def test_copies_of_one_recording_are_one_vehicle():
    assert vehicle_key("USA_Lanker-1_1_T-1/1214@10") == vehicle_key("USA_Lanker-1_15_T-1/1214@30") == "Lanker-1/1214"
    assert vehicle_key("USA_US101-3_5_T-1/7@10") != vehicle_key("USA_US101-4_5_T-1/7@10")


def test_the_interval_is_over_vehicles():
    # 20 vehicles, each in two files (the repeats); B is 0.1 m better on every clip but one vehicle's
    a = {f"USA_Lanker-1_{cfg}_T-1/{v}@10": 2.0 for v in range(20) for cfg in (1, 15)}
    b = {k: 1.9 for k in a}
    res = compare_openloop(_run(a), _run(b))
    assert res["diff"] == pytest.approx(-0.1) and res["clips"] == 40 and res["vehicles"] == 20
    assert res["significant"] and res["ci95"][1] < 0
    noisy = {k: (1.9 if i % 4 < 2 else 2.1) for i, k in enumerate(a)}  # half the vehicles better, half worse
    res = compare_openloop(_run(a), _run(noisy))
    assert not res["significant"] and res["ci95"][0] < 0 < res["ci95"][1]


def test_bad_runs_are_clear_errors(tmp_path):
    with pytest.raises(HumanDataError, match="no per-clip scores"):
        compare_openloop({"summary": {}}, _run({"USA_a-1_1_T-1/1@10": 1.0}))
    with pytest.raises(HumanDataError, match="no planner 'modular'"):
        compare_openloop(_run({"USA_a-1_1_T-1/1@10": 1.0}), _run({"USA_a-1_1_T-1/1@10": 1.0}), method="modular")
    with pytest.raises(HumanDataError, match="share no clip"):
        compare_openloop(_run({"USA_a-1_1_T-1/1@10": 1.0}), _run({"USA_a-1_1_T-1/2@10": 1.0}))
    good = tmp_path / "a.json"
    good.write_text(json.dumps(_run({f"USA_a-1_1_T-1/{v}@10": 1.0 + 0.01 * v for v in range(5)})))
    better = tmp_path / "b.json"
    better.write_text(json.dumps(_run({f"USA_a-1_1_T-1/{v}@10": 0.5 for v in range(5)})))
    out = CliRunner().invoke(app, ["compare-openloop", str(good), str(better)])
    assert out.exit_code == 0 and "over 5 clips of 5 vehicles (significant)" in out.output
    (tmp_path / "bad.json").write_text("{not json")
    out = CliRunner().invoke(app, ["compare-openloop", str(good), str(tmp_path / "bad.json")])
    assert out.exit_code != 0 and "cannot read an eval-openloop results file" in out.output
