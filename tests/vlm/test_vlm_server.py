"""serve-vlm for real on 127.0.0.1, and the openai backend talking to it: answers, refusals, faults."""
from __future__ import annotations

import socket
import threading
import time

import numpy as np
import pytest
import requests

from dualdrive.vlm.backend import BuiltinBackend, OpenAIBackend, VLMReply
from dualdrive.vlm.server import ServerConfig, make_app


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Server:
    def __init__(self, backend, **kw) -> None:
        import uvicorn
        self.port = _free_port()
        cfg = ServerConfig(port=self.port, **kw)
        self.server = uvicorn.Server(uvicorn.Config(make_app(backend, cfg), host="127.0.0.1", port=self.port,
                                                    log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        for _ in range(100):
            if self.server.started:
                return self
            time.sleep(0.05)
        raise RuntimeError("server did not start")

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(5)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"


class _Slow:
    name = "slow"

    def ask(self, image, prompt):
        time.sleep(2.0)
        return VLMReply("late", None, 2.0)


@pytest.fixture(scope="module")
def builtin():
    return BuiltinBackend()


def _frame(backend) -> np.ndarray:
    """A real front-camera frame of a highway scene."""
    from dualdrive.sensors.camera import Camera
    from dualdrive.sensors.scene import scene_from_world
    from dualdrive.world.scenarios import ScenarioConfig
    from dualdrive.world.world import World
    return Camera().render(scene_from_world(World(ScenarioConfig(family="highway"), 4321)))


def test_the_openai_backend_gets_the_builtin_models_answer_over_http(builtin):
    from dualdrive.vlm.prompt import make_prompt
    prompt = make_prompt(25.0, 0, 50.0)
    local = builtin.ask(_frame(builtin), prompt)
    with _Server(builtin, api_key="k") as srv:
        remote = OpenAIBackend(srv.url, api_key="k").ask(_frame(builtin), prompt)
        assert remote.error is None and remote.text == local.text  # the same greedy answer, through HTTP
        assert remote.answer is not None and remote.answer.meta_actions
        wrong = OpenAIBackend(srv.url, api_key="nope").ask(_frame(builtin), prompt)
        assert wrong.answer is None and "401" in wrong.error
        assert requests.get(srv.url + "/models", headers={"Authorization": "Bearer k"}).json()["data"][0]["id"]


def test_the_server_refuses_malformed_and_oversized_requests(builtin):
    with _Server(builtin, max_request_bytes=64 * 1024) as srv:
        url = srv.url + "/chat/completions"
        r = requests.post(url, json={"messages": [{"role": "user", "content": "no image here"}]})
        assert r.status_code == 400 and "image_url" in r.json()["error"]["message"]
        bad = {"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"},
                                                         {"type": "image_url", "image_url": {"url": "http://x/y.png"}}]}]}
        r = requests.post(url, json=bad)
        assert r.status_code == 400 and "data:image" in r.json()["error"]["message"]
        r = requests.post(url, data=b"{" * 100, headers={"Content-Type": "application/json"})
        assert r.status_code == 400
        r = requests.post(url, data=b"x" * (65 * 1024), headers={"Content-Type": "application/json"})
        assert r.status_code == 413
        small = OpenAIBackend(srv.url).ask(np.zeros((20, 30, 3), np.uint8), "speed 1 m/s.")  # a frame of another size
        assert small.answer is None and "400" in small.error


def test_a_slow_or_absent_server_is_an_answerless_reply_not_an_exception(builtin):
    with _Server(_Slow(), timeout_s=0.5) as srv:
        late = OpenAIBackend(srv.url, timeout_s=5.0).ask(_frame(builtin), "speed 1 m/s.")
        assert late.answer is None and "504" in late.error
        impatient = OpenAIBackend(srv.url, timeout_s=0.2).ask(_frame(builtin), "speed 1 m/s.")
        assert impatient.answer is None and "unreachable or slow" in impatient.error
    down = OpenAIBackend(f"http://127.0.0.1:{_free_port()}/v1", timeout_s=1.0).ask(_frame(builtin), "speed 1 m/s.")
    assert down.answer is None and "unreachable" in down.error


def test_the_server_binds_loopback_unless_asked():
    with pytest.raises(ValueError, match="allow-remote"):
        ServerConfig(host="0.0.0.0")
    assert ServerConfig(host="0.0.0.0", allow_remote=True).host == "0.0.0.0"
