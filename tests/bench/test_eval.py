"""The evaluation runner on a real local Ray cluster: determinism across worker counts, resuming
after a killed run, failing agents, reports and comparisons."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from dualdrive.bench.episode import EpisodeJob, run_job
from dualdrive.bench.evaluate import EvalConfig, evaluate, journal_path
from dualdrive.bench.report import compare_text, html_report, load_results
from dualdrive.world.scenarios import ConfigError, ScenarioConfig

HELPERS = str(Path(__file__).parent / "helpers")
SUITE = """name: tiny
version: 1
scenarios:
  - {name: hw, family: highway, config: {max_duration_s: 6}}
  - {name: park, family: parking, config: {max_duration_s: 6, start_in_spot: false}}
"""
BIN = str(Path(sys.executable).parent / "dualdrive")


@pytest.fixture(scope="module")
def suite_file(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("suite") / "tiny.yaml"
    p.write_text(SUITE)
    return p


@pytest.fixture(scope="module")
def runs(suite_file, tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("runs")
    out = {}
    for workers in (1, 2):
        cfg = EvalConfig("expert", range(0, 3), d / f"w{workers}.json", suite=str(suite_file), workers=workers)
        out[workers] = (evaluate(cfg), cfg.out)
    return out


def test_one_and_two_workers_give_identical_results(runs):
    (r1, _), (r2, _) = runs[1], runs[2]
    assert r1["summary"] == r2["summary"] and r1["by_scenario"] == r2["by_scenario"]
    strip = lambda rows: [{k: v for k, v in e.items() if k != "wall_s"} for e in rows]  # noqa: E731
    assert strip(r1["episodes"]) == strip(r2["episodes"])
    assert len(r1["episodes"]) == 6 and {e["scenario"] for e in r1["episodes"]} == {"hw", "park"}
    s = r1["summary"]
    for key in ("driving_score", "route_completion", "infraction_score", "success_rate", "pdms"):
        assert set(s[key]) >= {"mean", "std", "ci95"} and 0.0 <= s[key]["mean"] <= 100.0
        assert s[key]["ci95"][0] <= s[key]["mean"] <= s[key]["ci95"][1]
    meta = r1["meta"]
    assert meta["agent"] == "expert" and meta["seeds"] == "0:3" and meta["versions"]["ray"]


def test_rerunning_a_finished_run_repeats_nothing(runs, suite_file):
    r1, out = runs[1]
    lines_before = journal_path(out).read_text().splitlines()
    again = evaluate(EvalConfig("expert", range(0, 3), out, suite=str(suite_file), workers=1))
    assert again["summary"] == r1["summary"] and again["meta"]["resumed_episodes"] == 6
    assert journal_path(out).read_text().splitlines() == lines_before


def test_a_killed_run_resumes_without_losing_or_repeating_episodes(suite_file, tmp_path):
    out = tmp_path / "res.json"
    cmd = [BIN, "eval", "--agent", "expert", "--suite", str(suite_file), "--seeds", "0:4", "--workers", "1",
           "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    journal = journal_path(out)
    deadline = time.time() + 240
    while time.time() < deadline and (not journal.exists() or len(journal.read_text().splitlines()) < 3):
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray cluster it started, mid-run
    proc.wait()
    first = journal.read_text().splitlines()
    assert 3 <= len(first) < 9, "killed too late to test resuming"
    assert not out.exists()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    lines = journal.read_text().splitlines()
    assert lines[: len(first)] == first  # what was saved is kept as it was
    keys = [(json.loads(x)["scenario"], json.loads(x)["seed"]) for x in lines[1:]]
    assert len(keys) == len(set(keys)) == 8  # every episode exactly once
    res = load_results(out)
    assert res["meta"]["resumed_episodes"] == len(first) - 1 and len(res["episodes"]) == 8


@pytest.mark.parametrize("agent, reason", [("faulty_agents:Raises", "agent raised RuntimeError: boom"),
                                           ("faulty_agents:NanPlan", "NaN"),
                                           ("faulty_agents:NanControl", "not finite"),
                                           ("faulty_agents:ReturnsNone", "not a Plan or a Control")])
def test_a_failing_agent_fails_its_episode_with_the_reason(agent, reason, monkeypatch):
    monkeypatch.syspath_prepend(HELPERS)
    cfg = ScenarioConfig(family="highway", max_duration_s=3).to_dict()
    row = run_job(agent, EpisodeJob("hw", 0, cfg))
    assert row["status"] == "failed" and not row["success"] and reason in row["error"]
    assert row["driving_score"] <= row["route_completion"]  # scored on what was driven
    assert row["pdms"] == 0.0 and row["ep"] == 0.0  # no plan, no PDM score (not a perfect one)


def test_a_hanging_agent_is_timed_out_and_the_run_goes_on(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", HELPERS + os.pathsep + os.environ.get("PYTHONPATH", ""))  # for the Ray workers
    monkeypatch.syspath_prepend(HELPERS)
    (tmp_path / "s.yaml").write_text("name: one\nversion: 1\nscenarios:\n  - {name: hw, family: highway, config: {max_duration_s: 3}}\n")
    cfg = EvalConfig("faulty_agents:Hangs", range(0, 2), tmp_path / "r.json", suite=str(tmp_path / "s.yaml"),
                     workers=2, episode_timeout_s=8.0)
    res = evaluate(cfg)
    assert [e["status"] for e in res["episodes"]] == ["failed", "failed"]
    assert all("timed out" in e["error"] for e in res["episodes"])


def test_report_and_compare(runs, tmp_path):
    (r1, p1), (_, p2) = runs[1], runs[2]
    page = html_report([p1, p2])
    assert page.startswith("<!doctype html>") and "driving_score" in page and "<img" in page
    assert "hw" in page and "park" in page
    text = compare_text(p1, p2)
    assert "driving_score" in text and "significant" in text
    # a metric missing from some episodes of one run (as time to park is, where the car did not park) is no missing
    # episode
    res = json.loads(Path(p1).read_text())
    res["episodes"][0]["driving_score"] = None
    p3 = tmp_path / "fewer_parks.json"
    p3.write_text(json.dumps(res))
    assert "present in only one" not in compare_text(p1, p3)
    res["episodes"] = res["episodes"][1:]
    p3.write_text(json.dumps(res))
    assert "1 episode(s) present in only one of the runs" in compare_text(p1, p3)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="corrupt"):
        load_results(bad)
    bad.write_text(json.dumps({"something": "else"}))
    with pytest.raises(ConfigError, match="not a dualdrive results file"):
        load_results(bad)
    r = subprocess.run([BIN, "report", str(bad), "--out", str(tmp_path / "r.html")], capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr


@pytest.mark.parametrize("args, msg", [(["--suite", "nope"], "unknown suite"), (["--agent", "nope"], "unknown agent"),
                                       (["--env", "nope-v0"], "unknown env id"), (["--seeds", "5:2"], "need A < B"),
                                       (["--seeds", "x"], "must be A:B")])
def test_eval_bad_input_is_one_clear_line(args, msg, tmp_path):
    base = ["eval", "--suite", "highway", "--out", str(tmp_path / "r.json")]
    if "--env" in args:
        base.remove("--suite")
        base.remove("highway")
    r = subprocess.run([BIN, *base, *args], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and msg in r.stderr and "Traceback" not in r.stderr


def test_a_journal_of_another_run_is_refused(runs, suite_file):
    _, out = runs[1]
    with pytest.raises(ConfigError, match="different run"):
        evaluate(EvalConfig("idle", range(0, 3), out, suite=str(suite_file)))


def test_a_recorded_episode_rescores_to_the_same_metrics(tmp_path):
    from dualdrive.bench.log import EpisodeLog
    from dualdrive.bench.metrics import episode_metrics
    cfg = ScenarioConfig(family="urban", max_duration_s=8).to_dict()
    row = run_job("expert", EpisodeJob("u", 1, cfg), str(tmp_path))
    assert Path(row["video_path"]).stat().st_size > 0
    again = episode_metrics(EpisodeLog.load(row["log_path"]))
    assert {k: row[k] for k in again} == again
    r = subprocess.run([BIN, "score", row["log_path"]], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and json.loads(r.stdout)["driving_score"] == pytest.approx(row["driving_score"], abs=1e-3)


def test_compare_needs_two_episodes_for_an_interval():
    from dualdrive.bench.stats import compare_metric
    a = [{"scenario": "x", "seed": i, "m": 0.0} for i in range(10)]
    b = [{"scenario": "x", "seed": 0, "m": 50.0}] + [{"scenario": "y", "seed": i, "m": 100.0} for i in range(10)]
    c = compare_metric(a, b, "m")
    assert c["paired"] and c["n"] == 1 and (c["a"], c["b"]) == (0.0, 50.0)  # both means over the shared episode
    assert c["ci95"] == [None, None] and not c["significant"] and c["unshared"] == 19
    c = compare_metric([{"scenario": "x", "seed": 0, "m": 1.0}], [{"scenario": "y", "seed": k, "m": 2.0 + k}
                                                                   for k in range(2)], "m")
    assert not c["paired"] and c["ci95"] == [None, None] and not c["significant"]


def test_a_journal_torn_in_its_first_line_starts_afresh(tmp_path):
    from dualdrive.bench.evaluate import Journal
    p = tmp_path / "r.episodes.jsonl"
    p.write_bytes(b'{"run": {"agent": "exp')  # killed while writing the header
    j = Journal(p, {"agent": "expert"})
    assert j.rows == {} and json.loads(p.read_text().splitlines()[0]) == {"run": {"agent": "expert"}}
    other = tmp_path / "notes.episodes.jsonl"
    other.write_bytes(b"my own notes")  # not ours: never overwritten
    with pytest.raises(ConfigError, match="not a dualdrive results journal"):
        Journal(other, {"agent": "expert"})
    assert other.read_bytes() == b"my own notes"


def test_only_privileged_agents_see_the_world_handle():
    from dualdrive.agents.base import reset_info_for
    from dualdrive.agents.expert.agent import ExpertAgent
    from dualdrive.agents.simple import IdleAgent
    info = {"privileged_world": object(), "seed": 3}
    assert "privileged_world" in reset_info_for(ExpertAgent(), info)
    assert reset_info_for(IdleAgent(), info) == {"seed": 3}


def test_the_agents_weights_and_system_2_are_part_of_a_runs_identity(suite_file, tmp_path):
    from dualdrive.bench.evaluate import plan_jobs
    base = EvalConfig("dual", range(0, 1), tmp_path / "r.json", suite=str(suite_file))
    _, plain = plan_jobs(base)
    _, other = plan_jobs(EvalConfig("dual", range(0, 1), tmp_path / "r.json", suite=str(suite_file),
                                    meta_extra={"checkpoint": "a.safetensors", "vlm": "hf:/models/x"}))
    assert "vlm" not in plain and "checkpoint" not in plain
    assert other["vlm"] == "hf:/models/x" and other["checkpoint"] == "a.safetensors"


def test_a_planning_driver_drives_a_stock_env_through_the_follower():
    """A driver that returns Plans (here constant velocity, on the sensor suite's odometry) drives a stock
    env with continuous actions at 10 Hz; one whose env cannot take them is told which can."""
    from dualdrive.agents.base import Control
    from dualdrive.bench.episode import PLAN_DRIVEN_STOCK_ENVS, stock_action

    row = run_job("constant_velocity", EpisodeJob("highway-fast-v0", 0, None, "highway-fast-v0"))
    assert row["status"] == "ok", row["error"]
    assert row["duration_s"] > 1.0 and row["route_completion"] > 0
    row = run_job("constant_velocity", EpisodeJob("merge-v0", 0, None, "merge-v0"))
    assert row["status"] == "failed" and "continuous actions" in row["error"]
    assert all(e in row["error"] for e in PLAN_DRIVEN_STOCK_ENVS) and not row["error"].startswith("crashed")
    assert run_job("random", EpisodeJob("merge-v0", 0, None, "merge-v0"))["status"] == "ok"  # its own actions

    class Ranges:
        acceleration_range, steering_range = (-5.0, 5.0), (-np.pi / 4, np.pi / 4)
    np.testing.assert_allclose(stock_action(Control(0.0, 0.0), Ranges), [0.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(stock_action(Control(2.5, -np.pi / 8), Ranges), [0.5, -0.5], atol=1e-6)
    np.testing.assert_allclose(stock_action(Control(9.0, 1.0), Ranges), [1.0, 1.0])  # clipped to the range
    assert stock_action(Control(2.0, 0.0, gear=-1), Ranges)[0] < 0  # no reverse on a stock car: it brakes
