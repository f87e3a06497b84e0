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
from dataclasses import dataclass
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
        prompt_ids = self.tokenizer.encode(prompt)[-self.model.cfg.max_prompt_tokens:]
        torch.set_num_threads(self.threads)
        t0 = time.perf_counter()
        ids = self.model.generate(torch.tensor(image), prompt_ids, self.tokenizer.bos_id,
                                  self.tokenizer.eos_id)
        text = self.tokenizer.decode(ids)
        return reply_from_text(text, time.perf_counter() - t0)
