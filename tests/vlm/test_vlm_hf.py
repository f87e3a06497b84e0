"""The `hf` backend on a tiny randomly initialised Hugging Face VLM made here (no download)."""
import json
import time
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dualdrive.vlm.answer import render_answer
from dualdrive.vlm.backend import BackendSpecError, BuiltinBackend, OpenAIBackend, make_backend
from dualdrive.vlm.hf import FORMAT_INSTRUCTIONS, HFBackend, HFBackendError
from dualdrive.vlm.prompt import make_prompt
from tests_vlm_support import ANSWER, make_tiny_hf_vlm

FRAME = np.random.default_rng(0).integers(0, 255, (96, 192, 3), dtype=np.uint8)
PROMPT = make_prompt(12.0, 0, 0.0)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_tiny_hf_vlm(tmp_path_factory.mktemp("tiny_vlm"))


@pytest.fixture(scope="module")
def backend(model_dir):
    return HFBackend(model_dir, max_new_tokens=24)


def test_a_local_model_directory_loads_and_answers(backend, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    r = backend.ask(FRAME, PROMPT)
    assert isinstance(r.text, str) and r.latency_s > 0
    # a random model talks nonsense: a reply without an answer, with the reason, never an exception
    assert (r.answer is None) == (r.error is not None)


def test_the_prompt_holds_the_image_the_format_and_the_question(backend):
    text = backend._chat_text(PROMPT)
    assert text.startswith("<|system|>" + FORMAT_INSTRUCTIONS) and PROMPT in text and text.endswith("<|assistant|>")
    inputs = backend.processor(text=[text], images=[Image.fromarray(FRAME)], return_tensors="pt")
    n_image = int((inputs["input_ids"] == backend.model.config.image_token_index).sum())
    assert n_image == (32 // 8) ** 2  # one token per patch of the 32 px crop, CLS dropped
    assert inputs["pixel_values"].shape == (1, 3, 32, 32)


def test_only_the_new_tokens_are_read_and_parsed(backend, monkeypatch):
    """A model that answers in our format is understood: generate's output is the prompt followed by
    the answer's tokens, and only those are decoded."""
    answer_ids = backend.processor.tokenizer(render_answer(ANSWER), add_special_tokens=False, return_tensors="pt")["input_ids"]

    def generate(input_ids, **kw):
        return torch.cat([input_ids, answer_ids], 1)
    monkeypatch.setattr(backend.model, "generate", generate)
    r = backend.ask(FRAME, PROMPT)
    assert r.error is None and r.answer is not None
    assert r.answer.meta_actions == ANSWER.meta_actions and r.answer.waypoints_m == ANSWER.waypoints_m


def test_a_failing_generation_is_a_reply_with_the_reason(backend, monkeypatch):
    def broken(**kw):
        raise RuntimeError("out of memory")
    monkeypatch.setattr(backend.model, "generate", broken)
    r = backend.ask(FRAME, PROMPT)
    assert r.answer is None and "generation failed" in r.error and "out of memory" in r.error


def test_bad_input_is_refused(backend):
    with pytest.raises(ValueError, match="uint8 camera frame"):
        backend.ask(FRAME.astype(np.float32), PROMPT)
    with pytest.raises(ValueError, match="non-empty"):
        backend.ask(FRAME, " ")


def test_a_directory_that_is_not_a_model_is_named(tmp_path):
    with pytest.raises(HFBackendError, match="no such directory"):
        HFBackend(tmp_path / "absent")
    with pytest.raises(HFBackendError, match="no config.json"):
        HFBackend(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "no-such-architecture"}))
    with pytest.raises(HFBackendError, match=f"{tmp_path.name}.*cannot load it"):
        HFBackend(tmp_path)


def test_backends_by_name(model_dir):
    assert isinstance(make_backend(f"hf:{model_dir}"), HFBackend)
    assert isinstance(make_backend("builtin"), BuiltinBackend)
    o = make_backend("openai:http://127.0.0.1:9/v1#qwen2-vl")
    assert isinstance(o, OpenAIBackend) and o.model == "qwen2-vl" and o.url == "http://127.0.0.1:9/v1/chat/completions"
    for bad in ("gpt", "hf:", "openai"):
        with pytest.raises(BackendSpecError, match="valid: builtin"):
            make_backend(bad)


def test_the_dual_agent_drives_with_an_hf_system_2(model_dir):
    from dualdrive.agents.dual.agent import DualAgent, DualConfig
    from dualdrive.run.drive import drive_episode
    from dualdrive.world.scenarios import ScenarioConfig
    agent = DualAgent(DualConfig(s2_rate_hz=2.0, s2_backend=f"hf:{model_dir}"))
    assert isinstance(agent.backend, HFBackend)
    summary = drive_episode(agent, "highway", 5000, config=ScenarioConfig(family="highway", max_duration_s=3.0),
                            video=False)
    time.sleep(1.0)
    agent._collect()
    assert summary["steps"] >= 29 and agent.s2_log
    assert all("error" in e or "meta_actions" in e for e in agent.s2_log)


@pytest.mark.parametrize("spec, message", [("gpt4", "valid forms are"), ("hf:/no/such/dir", "does not exist")])
def test_drive_names_a_bad_vlm(tmp_path, spec, message):
    r = subprocess.run([str(Path(sys.executable).parent / "dualdrive"), "drive", "--agent", "dual", "--vlm", spec,
                        "--out", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and message in r.stderr + r.stdout and "Traceback" not in r.stderr


def test_the_passengers_request_reaches_system_2_as_understood():
    from dualdrive.agents.dual.agent import DualAgent, DualConfig
    from dualdrive.instructions.agent import InstructedAgent
    from dualdrive.instructions.intent import Intent
    from dualdrive.vlm.prompt import make_prompt, without_passenger
    p = make_prompt(12.0, 0, 0.0, "drive gently")
    assert p == "passenger asks: drive gently. " + PROMPT and without_passenger(p) == PROMPT

    class Recorder:
        name = "recorder"
        prompts: list = []

        def ask(self, image, prompt):
            self.prompts.append(prompt)
            raise RuntimeError("no answer needed")

    class Still:  # a System 1 that stands
        uses_sensors, privileged, name = True, False, "still"

        def reset(self, info):
            pass

        def act(self, obs):
            from dualdrive.agents.e2e.agent import stop_plan
            return stop_plan(0.0)
    rec = Recorder()
    dual = DualAgent(DualConfig(s2_rate_hz=10.0), system1=Still(), backend=rec)
    car = InstructedAgent(dual, Intent(style="gentle"), from_s=0.25)
    obs = {"camera_front_rgb": FRAME, "camera_front_valid": np.array([1]), "speed_mps": np.array([12.0]),
           "command": np.array([0]), "command_distance_m": np.array([0.0])}
    car.reset({})
    for _ in range(5):
        car.act(obs)
        time.sleep(0.05)
    assert rec.prompts[0] == PROMPT  # before the passenger spoke
    assert rec.prompts[-1] == "passenger asks: drive gently. " + PROMPT
