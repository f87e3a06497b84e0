"""``dualdrive serve-vlm``: a VLM backend served on an OpenAI-compatible chat-completions API.

``POST /v1/chat/completions`` takes the OpenAI message format with one image (a ``data:`` URL of a
PNG or JPEG, as vision clients send it) and the prompt text, and answers with the backend's text as
the assistant message; ``GET /v1/models`` lists the one model. Any OpenAI-compatible client (and
our own ``openai`` backend) can talk to it. Bound to 127.0.0.1 unless asked otherwise; an optional
API key (``Authorization: Bearer``); requests over ``max_request_bytes`` are refused (413) before
they are read whole, malformed ones get 400 with the reason, and an answer that takes longer than
``timeout_s`` gets 504.
"""
from __future__ import annotations

import asyncio
import base64
import io
import json
import threading
import time
import uuid
from dataclasses import dataclass

import numpy as np
from fastapi import FastAPI, Request  # at module level: FastAPI resolves the handlers' annotations here
from fastapi.responses import JSONResponse

LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None
    max_request_bytes: int = 4 * 1024 * 1024  # a 192 x 96 PNG is ~30 kB; leave room, refuse abuse
    timeout_s: float = 10.0
    model_name: str = "dualdrive-vlm"
    allow_remote: bool = False  # binding beyond loopback must be asked for

    def __post_init__(self) -> None:
        if self.host not in LOOPBACK and not self.allow_remote:
            raise ValueError(f"refusing to bind {self.host}: serve-vlm binds 127.0.0.1 unless --allow-remote is given")
        if self.max_request_bytes < 1024 or self.timeout_s <= 0:
            raise ValueError("max_request_bytes must be >= 1024 and timeout_s > 0")


class RequestError(ValueError):
    """A malformed request: the message says what is wrong (HTTP 400)."""


def decode_image(url: str) -> np.ndarray:
    """An RGB uint8 array from a ``data:image/...;base64,`` URL."""
    from PIL import Image, UnidentifiedImageError
    if not isinstance(url, str) or not url.startswith("data:image/") or ";base64," not in url:
        raise RequestError("image_url.url must be a data:image/...;base64,... URL (remote URLs are not fetched)")
    try:
        raw = base64.b64decode(url.split(";base64,", 1)[1], validate=True)
        img = Image.open(io.BytesIO(raw))
        img.load()
    except (ValueError, UnidentifiedImageError, OSError) as e:
        raise RequestError(f"the image does not decode: {e}") from None
    return np.asarray(img.convert("RGB"), np.uint8)


def parse_request(body: dict) -> tuple[np.ndarray, str]:
    """(image, prompt) from an OpenAI chat-completions request body."""
    msgs = body.get("messages") if isinstance(body, dict) else None
    if not isinstance(msgs, list) or not msgs:
        raise RequestError("the request needs a non-empty `messages` list")
    user = [m for m in msgs if isinstance(m, dict) and m.get("role") == "user"]
    if not user:
        raise RequestError("the request needs a message with role `user`")
    content = user[-1].get("content")
    parts = content if isinstance(content, list) else [{"type": "text", "text": content}]
    texts = [p.get("text") for p in parts if isinstance(p, dict) and p.get("type") == "text"]
    images = [p.get("image_url") for p in parts if isinstance(p, dict) and p.get("type") == "image_url"]
    if len(images) != 1:
        raise RequestError(f"the user message needs exactly one image_url part, got {len(images)}")
    url = images[0].get("url") if isinstance(images[0], dict) else images[0]
    prompt = " ".join(t for t in texts if isinstance(t, str)).strip()
    if not prompt:
        raise RequestError("the user message needs a text part (the prompt)")
    return decode_image(url), prompt


def make_app(backend, config: ServerConfig | None = None):
    """The FastAPI app serving ``backend`` (anything with ``ask(image, prompt) -> VLMReply``)."""
    cfg = config or ServerConfig()
    app = FastAPI(title="dualdrive VLM", docs_url=None, redoc_url=None)
    lock = threading.Lock()  # one answer at a time: the model is not re-entrant, and CPU is the limit

    def error(status: int, message: str, kind: str) -> JSONResponse:
        return JSONResponse({"error": {"message": message, "type": kind}}, status_code=status)

    @app.middleware("http")
    async def guard(request: Request, call_next):
        if cfg.api_key is not None and request.headers.get("authorization") != f"Bearer {cfg.api_key}":
            return error(401, "missing or wrong API key (Authorization: Bearer ...)", "authentication_error")
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > cfg.max_request_bytes):
            return error(413, f"request over {cfg.max_request_bytes} bytes", "request_too_large")
        return await call_next(request)

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": cfg.model_name, "object": "model", "owned_by": "dualdrive"}]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = b""
        async for chunk in request.stream():  # counted as it arrives: a missing Content-Length is no way round
            body += chunk
            if len(body) > cfg.max_request_bytes:
                return error(413, f"request over {cfg.max_request_bytes} bytes", "request_too_large")
        try:
            image, prompt = parse_request(json.loads(body))
        except (RequestError, ValueError) as e:
            return error(400, str(e), "invalid_request_error")

        def answer():
            with lock:
                return backend.ask(image, prompt)
        try:
            reply = await asyncio.wait_for(asyncio.to_thread(answer), cfg.timeout_s)
        except asyncio.TimeoutError:
            return error(504, f"no answer within {cfg.timeout_s} s", "timeout")
        except ValueError as e:  # the backend refuses the input (e.g. a frame of the wrong size)
            return error(400, str(e), "invalid_request_error")
        return {"id": f"chatcmpl-{uuid.uuid4().hex[:16]}", "object": "chat.completion", "created": int(time.time()),
                "model": cfg.model_name,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": reply.text}, "finish_reason": "stop"}],
                "usage": {"latency_s": round(reply.latency_s, 4)}}

    return app


def serve(backend, config: ServerConfig) -> None:
    import uvicorn
    uvicorn.run(make_app(backend, config), host=config.host, port=config.port, log_level="info")
