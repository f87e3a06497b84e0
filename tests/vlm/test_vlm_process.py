"""System 2 in a process of its own: answers, refusals, a dead or hung child, a child that cannot start."""
import numpy as np
import pytest

from dualdrive.vlm.backend import BackendSpecError, make_backend
from dualdrive.vlm.process import ProcessBackend, System2ProcessError
from dualdrive.vlm.prompt import make_prompt

FRAME = np.random.default_rng(0).integers(0, 255, (96, 192, 3), dtype=np.uint8)
PROMPT = make_prompt(12.0, 0, 0.0)


@pytest.fixture(scope="module")
def s2():
    b = make_backend("process:builtin")
    yield b
    b.close()


def test_the_builtin_model_answers_from_its_own_process(s2):
    from dualdrive.vlm.backend import BuiltinBackend
    assert isinstance(s2, ProcessBackend) and s2.name == "process:builtin"
    r = s2.ask(FRAME, PROMPT)
    same = BuiltinBackend().ask(FRAME, PROMPT)  # greedy decoding: the same text as in this process
    assert r.text == same.text and r.latency_s > 0


def test_bad_input_is_refused_as_in_process(s2):
    with pytest.raises(ValueError, match="uint8 camera frame"):
        s2.ask(FRAME[:10], PROMPT)
    assert s2.ask(FRAME, PROMPT).text  # and the child serves on


def test_a_slow_answer_is_dropped_and_the_child_replaced():
    b = ProcessBackend("builtin", timeout_s=0.001)
    try:
        first = b._proc.pid
        r = b.ask(FRAME, PROMPT)
        assert r.answer is None and "did not answer within" in r.error
        assert b._proc is not None and b._proc.pid != first  # a fresh child
        b.timeout_s = 30.0
        assert b.ask(FRAME, PROMPT).text  # the late answer to the first request is not mistaken for this one
    finally:
        b.close()


def test_a_dead_child_gives_replies_with_the_reason():
    b = ProcessBackend("builtin")
    b._proc.kill()
    b._proc.wait()
    r = b.ask(FRAME, PROMPT)
    assert r.answer is None and ("gone" in r.error or "failed" in r.error)
    b.close()


def test_a_child_that_cannot_start_says_why():
    with pytest.raises(System2ProcessError, match="could not start.*no such directory"):
        ProcessBackend("hf:/no/such/model")
    with pytest.raises(BackendSpecError):
        make_backend("process:gpt4")
