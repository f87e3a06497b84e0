"""Each metric on hand-built episode logs with known answers."""
import numpy as np
import pytest

from dualdrive.bench.log import ACTOR_KINDS, EpisodeLog, LogError
from dualdrive.bench.metrics import carla_scores, collision_at_fault, episode_metrics, parking_scores, pdm_scores

DT = 0.1


def _log(speed, limit=10.0, actors=None, infractions=(), off_road=None, family="highway", arrival=100.0,
         outcome=None, gear=None, lights=None, stop_lines=()):
    """A straight eastbound route along y=0; the ego drives it with the given speed profile."""
    v = np.asarray(speed, float)
    n = len(v)
    x = np.concatenate([[0.0], np.cumsum(v[:-1] * DT)])
    acc = np.gradient(v, DT)
    ego = np.column_stack([x, np.zeros(n), np.zeros(n), v, acc, np.zeros(n)])
    if actors is None:
        actors = np.zeros((n, 1, 6))
        kinds = np.full((n, 1), -1, np.int8)
    else:
        kinds = np.full(actors.shape[:2], ACTOR_KINDS.index("vehicle"), np.int8)
    route_x = np.arange(0.0, 300.0, 2.0)
    return EpisodeLog(
        meta={"family": family, "seed": 0, "dt_s": DT, "arrival_m": arrival, "ego_length_m": 5.0, "ego_width_m": 2.0,
              "infractions": list(infractions), "stop_lines": [list(s) for s in stop_lines],
              "outcome": outcome or {"success": True}},
        t_s=np.arange(n) * DT, ego=ego, gear=np.ones(n, np.int8) if gear is None else np.asarray(gear, np.int8),
        progress_m=x.copy(), speed_limit_mps=np.full(n, limit),
        off_road=np.zeros(n, bool) if off_road is None else np.asarray(off_road, bool), wrong_lane=np.zeros(n, bool),
        lights=np.full((n, 1), 2, np.int8) if lights is None else lights, actors=actors, actor_kind=kinds,
        actor_id=np.zeros(kinds.shape, np.int64), route_xy=np.column_stack([route_x, np.zeros_like(route_x)]),
        route_progress_m=route_x)


def test_partial_route_scores_its_share():
    log = _log(np.full(51, 10.0))  # 50 m of a 100 m route in 5 s
    s = carla_scores(log)
    assert s["route_completion"] == pytest.approx(50.0)
    assert s["infraction_score"] == 100.0 and s["driving_score"] == pytest.approx(50.0)


def test_infraction_penalties_multiply():
    inf = [{"type": "collision_pedestrian", "t_s": 1.0}, {"type": "red_light", "t_s": 2.0}]
    s = carla_scores(_log(np.full(101, 10.0), infractions=inf))
    assert s["infraction_score"] == pytest.approx(100 * 0.5 * 0.7)
    assert s["driving_score"] == pytest.approx(100 * 0.35)
    assert carla_scores(_log(np.full(101, 10.0), infractions=[{"type": "collision_static", "t_s": 1.0}]))[
        "infraction_score"] == pytest.approx(65.0)


def test_progress_made_off_road_does_not_count():
    off = np.zeros(101, bool)
    off[20:30] = True  # 10 m of the 100 m route driven off the road
    s = carla_scores(_log(np.full(101, 10.0), off_road=off))
    assert s["route_completion"] == pytest.approx(90.0, abs=1.1)
    assert pdm_scores(_log(np.full(101, 10.0), off_road=off))["dac"] < 100.0


def test_a_clean_drive_at_the_limit_scores_full_pdms():
    p = pdm_scores(_log(np.full(121, 10.0)))
    assert p == pytest.approx({"nc": 100, "dac": 100, "ttc": 100, "ep": 100, "comfort": 100, "pdms": 100}, abs=0.5)


def test_ego_progress_is_relative_to_what_the_road_allowed():
    half = pdm_scores(_log(np.full(121, 5.0)))  # half the limit, nothing ahead
    assert half["ep"] == pytest.approx(50.0, abs=2.0)
    # the same slow drive behind a vehicle doing 5 m/s 12 m ahead is all the road allowed
    n = 121
    actors = np.zeros((n, 1, 6))
    actors[:, 0] = np.column_stack([12.0 + 5.0 * np.arange(n) * DT, np.zeros(n), np.zeros(n), np.full(n, 5.0),
                                    np.full(n, 4.5), np.full(n, 1.9)])
    assert pdm_scores(_log(np.full(n, 5.0), actors=actors))["ep"] == pytest.approx(100.0, abs=1.0)
    # waiting at a red light 10 m ahead: no progress was possible
    lights = np.zeros((n, 1), np.int8)
    assert pdm_scores(_log(np.zeros(n), lights=lights, stop_lines=[(10.0, 0)]))["ep"] == 100.0
    assert pdm_scores(_log(np.zeros(n)))["ep"] == 0.0  # standing still on a free road


def test_time_to_collision_flags_closing_on_a_stopped_car():
    n = 41  # one 4 s window: 10 m/s towards a car standing 30 m ahead (gap closes at t=2.5 s)
    actors = np.zeros((n, 1, 6))
    actors[:, 0] = [30.0, 0.0, 0.0, 0.0, 4.5, 1.9]
    p = pdm_scores(_log(np.full(n, 10.0), actors=actors))
    assert p["ttc"] == 0.0
    actors[:, 0, 1] = 5.0  # the same car in the next lane is no threat
    assert pdm_scores(_log(np.full(n, 10.0), actors=actors))["ttc"] == 100.0


def test_comfort_breaks_on_an_emergency_stop():
    v = np.concatenate([np.full(40, 15.0), np.maximum(15.0 - 8.0 * DT * np.arange(1, 41), 0.0), np.zeros(40)])
    assert pdm_scores(_log(v))["comfort"] < 100.0
    assert pdm_scores(_log(np.full(120, 15.0)))["comfort"] == 100.0


def test_collision_at_fault_and_not():
    n = 41
    actors = np.zeros((n, 1, 6))
    actors[:, 0] = [6.0, 0.0, 0.0, 0.0, 4.5, 1.9]  # standing just ahead
    hit = {"type": "collision_vehicle", "t_s": 2.0, "id": 0}
    log = _log(np.full(n, 3.0), actors=actors, infractions=[hit])
    assert collision_at_fault(log, hit)
    windows = pdm_scores(log)
    assert windows["nc"] == 0.0 and windows["pdms"] == 0.0
    # rear-ended while waiting: not the ego's fault
    actors[:, 0] = [-4.0, 0.0, 0.0, 6.0, 4.5, 1.9]
    log = _log(np.zeros(n), actors=actors, infractions=[hit])
    assert not collision_at_fault(log, hit)
    assert pdm_scores(log)["nc"] == 100.0
    assert carla_scores(log)["infraction_score"] == 60.0  # the leaderboard penalises any collision


def test_a_collision_counts_only_in_its_window():
    hit = {"type": "collision_static", "t_s": 1.0, "id": 0}
    n = 81  # two 4 s windows; a static object hit in the first scores NC 0.5 there
    actors = np.zeros((n, 1, 6))
    actors[:, 0] = [200.0, 50.0, 0.0, 0.0, 1.0, 1.0]
    log = _log(np.full(n, 10.0), actors=actors, infractions=[hit])
    log.actor_kind[:] = ACTOR_KINDS.index("static")
    assert pdm_scores(log)["nc"] == pytest.approx(75.0)


def test_parking_metrics():
    gear = np.ones(101, np.int8)
    gear[30:60] = -1
    out = {"success": True, "parked": True, "parking_position_error_m": 0.2, "parking_heading_error_deg": 3.0}
    log = _log(np.full(101, 2.0), family="p2p", arrival=100.0, outcome=out, gear=gear)
    log.progress_m[50:] = 100.0  # arrived at the lot at t=5 s, parked at t=10 s
    p = parking_scores(log)
    assert p["gear_changes"] == 2 and p["time_to_park_s"] == pytest.approx(5.0)
    assert p["parking_position_error_m"] == 0.2
    m = episode_metrics(log)
    assert m["success"] and m["success_rate"] == 100.0


def test_log_round_trip_and_corrupt_file(tmp_path):
    log = _log(np.full(30, 10.0), infractions=[{"type": "red_light", "t_s": 1.0}])
    p = log.save(tmp_path / "ep.npz")
    back = EpisodeLog.load(p)
    assert np.array_equal(back.ego, log.ego) and back.infractions == log.infractions
    assert carla_scores(back) == carla_scores(log)
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(LogError, match="corrupt"):
        EpisodeLog.load(bad)
    with pytest.raises(LogError, match="not found"):
        EpisodeLog.load(tmp_path / "missing.npz")


def test_instruction_scores_check_the_drive_against_what_was_asked():
    from dualdrive.bench.metrics import instruction_scores
    ramp = lambda v0, v1, n: np.linspace(v0, v1, n)  # noqa: E731
    gentle = _log(np.concatenate([ramp(0, 7, 80), np.full(120, 7.0)]))  # 0.875 m/s^2 up to 70 % of the limit
    assert instruction_scores(gentle, {"style": "gentle"}, "ok")["instruction_honoured"] == 100.0
    brisk_start = _log(np.concatenate([ramp(0, 9.5, 40), np.full(160, 9.5)]))  # 2.4 m/s^2 to 95 %
    s = instruction_scores(brisk_start, {"style": "gentle"}, "ok")
    assert s["instruction_honoured"] == 0.0 and s["instruction_checks"] == {"gentle_speed": False, "gentle_accel": False}
    # asked to stop at 2 s while doing 10 m/s: 4 m/s^2 takes 2.5 s, +2 s slack
    stops = _log(np.concatenate([np.full(20, 10.0), ramp(10, 0, 26), np.zeros(60)]))
    assert instruction_scores(stops, {"stop": "stop_now"}, "ok", from_s=2.0)["instruction_honoured"] == 100.0
    late = _log(np.concatenate([np.full(20, 10.0), ramp(10, 0, 80), np.zeros(20)]))  # 8 s to stop
    assert instruction_scores(late, {"stop": "stop_now"}, "ok", from_s=2.0)["instruction_honoured"] == 0.0
    assert instruction_scores(late, {"stop": "pull_over"}, "ok", from_s=2.0)["instruction_honoured"] == 100.0
    moves_off = _log(np.concatenate([np.full(20, 10.0), ramp(10, 0, 26), np.zeros(20), ramp(0, 5, 40)]))
    assert instruction_scores(moves_off, {"stop": "stop_now"}, "ok", from_s=2.0)["instruction_checks"]["stop_now_held"] is False
    # a refused instruction is honoured by keeping to the rules; unbuilt preferences are not honoured
    lawful, speeding = _log(np.full(50, 9.0)), _log(np.full(50, 12.0))
    assert instruction_scores(lawful, {}, "refused")["instruction_honoured"] == 100.0
    assert instruction_scores(speeding, {}, "refused")["instruction_honoured"] == 0.0
    red = _log(np.full(50, 9.0), infractions=[{"type": "red_light", "t_s": 1.0}])
    assert instruction_scores(red, {}, "refused")["instruction_honoured"] == 0.0
    assert instruction_scores(lawful, {"route": "avoid_motorway"}, "ok")["instruction_honoured"] == 0.0
    assert instruction_scores(lawful, {}, "clarify")["instruction_honoured"] == 0.0


def test_the_instructions_suite_carries_its_instructions():
    from dualdrive.bench.suites import load_suite
    suite = load_suite("instructions")
    by_name = {s.name: s for s in suite.scenarios}
    assert by_name["urban_stop_now"].instruction == "stop the car right now"
    assert by_name["urban_stop_now"].instruction_at_s == 20.0
    assert "instruction" in suite.describe()["scenarios"]["urban_gentle"]


def test_a_bad_instruction_in_a_suite_file_is_a_clear_error(tmp_path):
    from dualdrive.bench.suites import load_suite
    from dualdrive.world.scenarios import ConfigError
    bad = tmp_path / "s.yaml"
    bad.write_text("name: s\nversion: 1\nscenarios:\n  - {name: a, family: urban, instruction: '', instruction_at_s: 2}\n")
    with pytest.raises(ConfigError, match="instruction must be a non-empty string"):
        load_suite(str(bad))
    bad.write_text("name: s\nversion: 1\nscenarios:\n  - {name: a, family: urban, instruction: go, instruction_at_s: -1}\n")
    with pytest.raises(ConfigError, match="instruction_at_s"):
        load_suite(str(bad))


def test_an_instructed_episode_is_driven_and_scored():
    from dualdrive.bench.episode import EpisodeJob, run_job
    from dualdrive.world.scenarios import ScenarioConfig
    cfg = ScenarioConfig.from_dict({"family": "urban", "max_duration_s": 15.0}).to_dict()
    row = run_job("expert", EpisodeJob("urban_stop", 1, cfg, instruction="stop the car right now", instruction_at_s=8.0))
    assert row["status"] == "ok", row.get("error")
    assert row["instruction_status"] == "ok" and row["instruction_intent"] == {"stop": "stop_now"}
    assert row["instruction_honoured"] == 100.0, row["instruction_checks"]
