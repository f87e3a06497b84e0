"""The answer format: text round-trips through the parser, tolerant reading, clear errors on garbage."""
from __future__ import annotations

import pytest

from dualdrive.vlm.answer import Finding, SceneObject, VLMAnswer, VLMParseError, parse_answer, render_answer
from tests_vlm_support import ANSWER

def test_the_text_reads_as_the_format_says():
    assert render_answer(ANSWER) == (
        "scene: urban road, red light. objects: car 20 m ahead in my lane; pedestrian 10 m ahead on the left; "
        "ambulance 35 m behind in the left lane.\n"
        "analysis: the light ahead is red; the car ahead is stopped; an ambulance is approaching from behind.\n"
        "plan: slow down, stop, wait.\n"
        "decision: stop at the red light.\n"
        "waypoints: 8 0, 14 0, 15 -1, 15 -1.")


def test_answers_round_trip_through_the_parser():
    assert parse_answer(render_answer(ANSWER), strict=True) == ANSWER
    empty = VLMAnswer("highway", "none", meta_actions=("keep lane",), waypoints_m=((20, 0),))
    assert parse_answer(render_answer(empty), strict=True) == empty
    assert VLMAnswer.from_dict(ANSWER.to_dict()) == ANSWER


def test_the_parser_is_tolerant_of_form():
    text = ("PLAN: Slow down , stop\n waypoints: (8, 0), (14,0)\nScene:  Urban Road,  red light\n"
            "analysis: the light ahead is red; a unicorn is dancing")
    a = parse_answer(text)
    assert (a.road, a.light, a.meta_actions, a.waypoints_m) == ("urban", "red", ("slow down", "stop"), ((8, 0), (14, 0)))
    assert a.analysis == (Finding("light", "red"),) and a.extra["skipped"] == ["a unicorn is dancing"]
    with pytest.raises(VLMParseError, match="unicorn"):
        parse_answer(text, strict=True)


@pytest.mark.parametrize("text, message", [
    ("", "no answer sections"),
    ("the car drives on", "no answer sections"),
    ("scene: a nice day. plan: keep lane. waypoints: 1 0.", "names no road type"),
    ("scene: highway. plan: fly. waypoints: 1 0.", "no known meta-action"),
    ("scene: highway. plan: keep lane.", "no 'waypoints:' section"),
    ("plan: keep lane. waypoints: 1 0.", "no 'scene:' section"),
])
def test_garbage_raises_a_clear_error(text, message):
    with pytest.raises(VLMParseError, match=message):
        parse_answer(text)
    with pytest.raises(VLMParseError, match="must be text"):
        parse_answer(None)  # type: ignore[arg-type]


def test_bad_values_are_refused_where_made():
    with pytest.raises(ValueError, match="meta-action 'fly'"):
        VLMAnswer("highway", "none", meta_actions=("fly",))
    with pytest.raises(ValueError, match="object kind 'dragon'"):
        SceneObject("dragon", 10, "ahead", "in my lane")
    with pytest.raises(ValueError, match="unknown finding"):
        Finding("car", "flying")


def test_eval_vlm_scores_how_far_the_confidence_can_be_trusted():
    """score()'s calibration tables on hand-made records: accuracy per confidence bin, and per action the
    precision and recall of the answers at or above each threshold."""
    from dualdrive.vlm.evaluate import score

    def rec(truth: str, said: str, conf: float | None) -> dict:
        t, p = VLMAnswer("urban", "none", meta_actions=(truth,)), VLMAnswer("urban", "none", meta_actions=(said,))
        return {"truth": t.to_dict(), "truth_text": render_answer(t), "answer": p.to_dict(), "text": render_answer(p),
                "prompt": "speed 5 m/s.", "latency_s": 0.01, "cpu_s": 0.01, "confidence": conf}
    records = [rec("stop", "stop", 0.95), rec("keep lane", "stop", 0.6), rec("stop", "stop", 0.3),
               rec("keep lane", "keep lane", 0.8)]
    s = score(records)
    bins = {b["from"]: (b["frames"], b["accuracy"]) for b in s["confidence_bins"]}
    assert bins[0.0] == (1, 1.0) and bins[0.5] == (1, 0.0) and bins[0.7] == (1, 1.0) and bins[0.9] == (1, 1.0)
    stop = s["confidence_by_action"]["stop"]
    assert stop["support"] == 2
    assert stop["p>=0"] == {"said": 3, "precision": pytest.approx(2 / 3), "recall": 1.0}
    assert stop["p>=0.7"] == {"said": 1, "precision": 1.0, "recall": 0.5}
    # a backend that gives no confidence: no tables
    assert "confidence_bins" not in score([{**r, "confidence": None} for r in records])
