"""System 2 on any local Hugging Face vision-language model directory, through ``transformers``.

The directory is what ``save_pretrained`` writes for a model and its processor (config.json, the
weights, the tokenizer, the image processor and a chat template): LLaVA, Idefics, SmolVLM,
PaliGemma and the like, loaded with ``AutoProcessor`` and ``AutoModelForImageTextToText``. Nothing
is downloaded: loading is ``local_files_only`` with the hub switched off.

A general VLM was not trained on our answer format, so the frame goes with a system message that
spells the format out (:data:`FORMAT_INSTRUCTIONS`, built from the same vocabulary the parser
reads), then the same question our own model is asked (:func:`dualdrive.vlm.prompt.make_prompt`).
Greedy decoding; only the newly generated tokens are read. An answer that does not parse is a
reply with ``answer=None`` and the reason, as with every backend; a generation that fails is too,
so System 1 drives on.

Qwen2-VL's processor in transformers 5 needs torchvision (for its video processor), which the
CPU install here does not carry: such a directory fails to load with a message saying so.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from dualdrive.vlm.answer import FINDINGS, LIGHTS, META_ACTIONS, NOTHING_CRITICAL, OBJECT_KINDS, PLACES, ROADS
from dualdrive.vlm.backend import VLMReply, reply_from_text

FORMAT_INSTRUCTIONS = (
    "You are the reasoning system of a self-driving car. You see its front camera. Answer in exactly "
    "five lines and nothing else:\n"
    f"scene: <road: {' | '.join(ROADS.values())}>, <light: {' | '.join(LIGHTS.values())}>. "
    "objects: <up to 3 objects, each '<kind> <metres, multiple of 5> m <ahead | behind> <place>', separated by ';'>.\n"
    f"analysis: <one or two of these findings, separated by ';': {'; '.join(FINDINGS.values())}; "
    f"or '{NOTHING_CRITICAL}'>.\n"
    f"plan: <1 to 3 meta-actions from: {', '.join(META_ACTIONS)}; separated by ','>.\n"
    "decision: <one short sentence>.\n"
    "waypoints: <where the car will be 1, 2, 3 and 4 s from now, 'x y' in whole metres, x forward, y left, "
    "separated by ','>.\n"
    f"Object kinds: {', '.join(OBJECT_KINDS)}. Places: {', '.join(PLACES)}.\n"
    "A question may begin with what the passenger asks for: plan for it where the traffic rules and "
    "safety allow, never against them.\n"
    "Example:\nscene: urban road, red light. objects: car 20 m ahead in my lane.\n"
    "analysis: the light ahead is red.\nplan: slow down, stop.\ndecision: stop at the red light.\n"
    "waypoints: 8 0, 14 0, 15 0, 15 0.")


class HFBackendError(ValueError):
    """A model directory that cannot serve as System 2; the message names it and what is wrong."""


class HFBackend:
    """A local Hugging Face VLM directory behind the :class:`~dualdrive.vlm.backend.VLMBackend` protocol."""

    name = "hf"

    def __init__(self, model_dir: str | Path, device: str = "cpu", max_new_tokens: int = 160, threads: int = 1,
                 system_prompt: str | None = FORMAT_INSTRUCTIONS) -> None:
        d = Path(model_dir).expanduser()
        if not d.is_dir():
            raise HFBackendError(f"{d}: no such directory (give the folder a model's save_pretrained wrote)")
        if not (d / "config.json").is_file():
            raise HFBackendError(f"{d} is not a Hugging Face model directory: it has no config.json")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local folder only: never the hub
        from transformers import AutoModelForImageTextToText, AutoProcessor
        try:
            self.processor = AutoProcessor.from_pretrained(d, local_files_only=True)
            self.model = AutoModelForImageTextToText.from_pretrained(d, local_files_only=True).to(device).eval()
        except (OSError, ValueError, KeyError, TypeError, AttributeError, ImportError) as e:
            hint = " (this model's processor needs torchvision, which is not installed)" if "VIDEO_PROCESSOR" in str(e) \
                or "torchvision" in str(e) else ""
            raise HFBackendError(f"{d}: cannot load it as a vision-language model{hint}: {type(e).__name__}: {e}") from e
        if getattr(self.processor, "chat_template", None) is None:
            raise HFBackendError(f"{d}: the processor has no chat template, so there is no way to put the image "
                                 "and the question to the model (save one with the processor)")
        self.device, self.max_new_tokens, self.threads = device, max_new_tokens, threads
        self.system_prompt = system_prompt
        self.model_dir = d

    def _messages(self, prompt: str, with_system: bool) -> list[dict]:
        user = [{"type": "image"}, {"type": "text", "text": prompt}]
        if self.system_prompt and with_system:
            return [{"role": "system", "content": [{"type": "text", "text": self.system_prompt}]},
                    {"role": "user", "content": user}]
        if self.system_prompt:  # a template without a system role: the instructions lead the question
            user = [{"type": "image"}, {"type": "text", "text": self.system_prompt + "\n\n" + prompt}]
        return [{"role": "user", "content": user}]

    def _chat_text(self, prompt: str) -> str:
        try:
            return self.processor.apply_chat_template(self._messages(prompt, True), add_generation_prompt=True,
                                                      tokenize=False)
        except Exception:  # noqa: BLE001 - templates raise their own errors for a system role they do not know
            return self.processor.apply_chat_template(self._messages(prompt, False), add_generation_prompt=True,
                                                      tokenize=False)

    def ask(self, image: np.ndarray, prompt: str) -> VLMReply:
        import torch
        from PIL import Image
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"image must be an (H, W, 3) uint8 camera frame, got {image.shape} {image.dtype}")
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError("prompt must be a non-empty string (see dualdrive.vlm.prompt.make_prompt)")
        if self.device == "cpu":
            torch.set_num_threads(self.threads)
        t0 = time.perf_counter()
        try:
            inputs = self.processor(text=[self._chat_text(prompt)], images=[Image.fromarray(image)],
                                    return_tensors="pt").to(self.device)
            with torch.inference_mode():
                out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
            new = out[:, inputs["input_ids"].shape[1]:]
            text = self.processor.batch_decode(new, skip_special_tokens=True)[0].strip()
        except Exception as e:  # noqa: BLE001 - a model that fails to answer is no reason to stop driving
            return VLMReply("", None, time.perf_counter() - t0, f"{self.model_dir.name}: generation failed: "
                            f"{type(e).__name__}: {e}")
        return reply_from_text(text, time.perf_counter() - t0)
