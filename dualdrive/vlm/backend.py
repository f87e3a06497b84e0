"""Where System 2's answers come from: one small protocol that every VLM backend implements.

``ask(image, prompt)`` takes the front camera frame (H, W, 3) uint8 and the prompt
(:func:`dualdrive.vlm.prompt.make_prompt`) and returns a :class:`VLMReply`: the raw text and, when
the text parses, the structured :class:`~dualdrive.vlm.answer.VLMAnswer`. A model that talks
nonsense is not an exception (the dual agent decides what to do without an answer); bad input is.
:class:`BuiltinBackend` runs our own checkpoint on the CPU; other backends (a Hugging Face model,
an OpenAI-compatible server) plug in behind the same protocol.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from dualdrive.vlm.answer import VLMAnswer, VLMParseError, parse_answer


@dataclass(frozen=True)
class VLMReply:
    text: str
    answer: VLMAnswer | None  # None when the text does not parse
    latency_s: float
    error: str | None = None  # why the text did not parse
    # the model's probability of its first meta-action (the product over its words, greedy decoding), where
    # the backend can say (builtin); None otherwise. The dual agent may act only on answers it is sure of
    confidence: float | None = None


@runtime_checkable
class VLMBackend(Protocol):
    name: str

    def ask(self, image: np.ndarray, prompt: str) -> VLMReply:
        """Answer the prompt about one camera frame."""
        ...


def reply_from_text(text: str, latency_s: float) -> VLMReply:
    """The reply for a backend's raw text (shared by every backend)."""
    try:
        return VLMReply(text, parse_answer(text), latency_s)
    except VLMParseError as e:
        return VLMReply(text, None, latency_s, str(e))


class BuiltinBackend:
    """Our own small VLM (``dualdrive train-vlm``), greedy decoding on the CPU.

    The model was trained on the one question of :func:`~dualdrive.vlm.prompt.make_prompt` (ego speed,
    navigation command): it reads those from the prompt and answers that question, whatever else the
    prompt says."""

    name = "builtin"

    def __init__(self, checkpoint: str | Path | None = None, threads: int = 1) -> None:
        from dualdrive.vlm.checkpoint import load_checkpoint
        self.model, self.tokenizer, self.info = load_checkpoint(checkpoint)
        self.threads = threads
        cfg = self.model.cfg
        self.image_shape = (cfg.image_height_px, cfg.image_width_px, 3)

    def ask(self, image: np.ndarray, prompt: str) -> VLMReply:
        image = np.asarray(image)
        if image.shape != self.image_shape or image.dtype != np.uint8:
            raise ValueError(f"image must be a {self.image_shape} uint8 camera frame, got {image.shape} {image.dtype}")
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError("prompt must be a non-empty string (see dualdrive.vlm.prompt.make_prompt)")
        # our model was trained on the bare question: the passenger's request is for backends that
        # read language (hf, openai); the dual agent and the instruction wrapper act on it anyway
        from dualdrive.vlm.prompt import without_passenger
        prompt_ids = self.tokenizer.encode(without_passenger(prompt))[-self.model.cfg.max_prompt_tokens:]
        torch.set_num_threads(self.threads)
        t0 = time.perf_counter()
        probs: list[float] = []
        ids = self.model.generate(torch.tensor(image), prompt_ids, self.tokenizer.bos_id,
                                  self.tokenizer.eos_id, probs=probs)
        text = self.tokenizer.decode(ids)
        reply = reply_from_text(text, time.perf_counter() - t0)
        return replace(reply, confidence=first_meta_action_confidence([self.tokenizer.vocab[i] for i in ids], probs))


def first_meta_action_confidence(words: list[str], probs: list[float]) -> float | None:
    """The probability of the first meta-action of an answer: the product of the probabilities of its
    words, from after ``plan:`` to the next ``,`` or ``.`` (None when the answer has no such section)."""
    for i in range(len(words) - 1):
        if words[i] == "plan" and words[i + 1] == ":":
            p, j = 1.0, i + 2
            while j < len(words) and words[j] not in (",", "."):
                p *= probs[j]
                j += 1
            return p if j > i + 2 else None
    return None


class OpenAIBackend:
    """Any OpenAI-compatible chat-completions server with image input (vLLM, Ollama, llama.cpp's
    server, or our own ``dualdrive serve-vlm``). The frame goes as a PNG ``data:`` URL. A server that
    is down, slow, answers with an HTTP error, garbage or an oversized answer gives a reply with
    ``answer=None`` and the reason in ``error``: never an exception, so System 1 drives on."""

    name = "openai"

    def __init__(self, base_url: str = "http://127.0.0.1:8000/v1", model: str = "dualdrive-vlm",
                 api_key: str | None = None, timeout_s: float = 5.0, max_answer_chars: int = 4000,
                 max_tokens: int = 256) -> None:
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model, self.api_key, self.timeout_s = model, api_key, timeout_s
        self.max_answer_chars, self.max_tokens = max_answer_chars, max_tokens

    def ask(self, image: np.ndarray, prompt: str) -> VLMReply:
        import base64
        import io

        import requests
        from PIL import Image
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"image must be an (H, W, 3) uint8 camera frame, got {image.shape} {image.dtype}")
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format="PNG")
        url = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
        body = {"model": self.model, "max_tokens": self.max_tokens, "temperature": 0,
                "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                                          {"type": "text", "text": prompt}]}]}
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        t0 = time.perf_counter()
        try:
            r = requests.post(self.url, json=body, headers=headers, timeout=self.timeout_s)
        except requests.RequestException as e:
            return VLMReply("", None, time.perf_counter() - t0, f"VLM server unreachable or slow: {type(e).__name__}: {e}")
        latency = time.perf_counter() - t0
        if r.status_code != 200:
            return VLMReply("", None, latency, f"VLM server answered HTTP {r.status_code}: {r.text[:200]}")
        try:
            text = r.json()["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            return VLMReply("", None, latency, f"VLM server sent no chat completion: {r.text[:200]!r}")
        if not isinstance(text, str):
            return VLMReply("", None, latency, "VLM server's answer is not text")
        if len(text) > self.max_answer_chars:
            return VLMReply(text[: self.max_answer_chars], None, latency,
                            f"VLM answer of {len(text)} characters is over the {self.max_answer_chars} allowed")
        return reply_from_text(text, latency)


BACKEND_ENV = "DUALDRIVE_VLM_BACKEND"  # the dual agent's System 2 when none is given (inherited by Ray workers)
API_KEY_ENV = "DUALDRIVE_VLM_API_KEY"
BACKEND_SPECS = "builtin, builtin:CHECKPOINT, hf:MODEL_DIR, openai:BASE_URL, each optionally after process:"


class BackendSpecError(ValueError):
    """A System 2 backend named wrongly; the message lists the valid forms."""


def parse_backend_spec(spec: str) -> tuple[bool, str, str]:
    """``[process:]KIND[:ARG]`` -> (own process, kind, arg); a wrong form raises :class:`BackendSpecError`."""
    rest = spec.strip()
    own_process = rest.startswith("process:")
    kind, _, arg = rest.removeprefix("process:").partition(":")
    if kind not in ("builtin", "hf", "openai") or (kind != "builtin" and not arg):
        raise BackendSpecError(f"unknown System 2 backend {spec!r}; valid: {BACKEND_SPECS}")
    return own_process, kind, arg


def make_backend(spec: str) -> VLMBackend:
    """A backend from its one-string description (``--vlm``):

    - ``builtin``: our shipped driving VLM; ``builtin:PATH`` another checkpoint of it;
    - ``hf:DIR``: a local Hugging Face vision-language model directory (:mod:`dualdrive.vlm.hf`);
    - ``openai:URL``: an OpenAI-compatible server (e.g. ``openai:http://127.0.0.1:8000/v1``), the
      API key from ``$DUALDRIVE_VLM_API_KEY``; ``openai:URL#MODEL`` names the served model;
    - ``process:SPEC``: any of these in a process of its own (:mod:`dualdrive.vlm.process`), off
      System 1's interpreter.
    """
    own_process, kind, arg = parse_backend_spec(spec)
    if own_process:
        from dualdrive.vlm.process import ProcessBackend
        return ProcessBackend(spec.strip().removeprefix("process:"))
    if kind == "builtin":
        return BuiltinBackend(arg or None)
    if kind == "hf":
        from dualdrive.vlm.hf import HFBackend
        return HFBackend(arg)
    import os
    url, _, model = arg.partition("#")
    return OpenAIBackend(url, model or "dualdrive-vlm", api_key=os.environ.get(API_KEY_ENV) or None)
