"""A System 2 backend in a process of its own.

In a thread beside System 1, the builtin VLM slows System 1's decisions down (the VLM decodes
token by token in Python between small torch calls, and both share one interpreter). Behind
:class:`ProcessBackend` any backend (``builtin``, ``hf:DIR``, ``openai:URL``) runs in a spawned
child process with its own interpreter and torch threads; ``ask`` sends the frame and the prompt
through a pipe and waits for the reply, which releases the caller's interpreter lock. The dual
agent's System 2 thread is what waits, so System 1 keeps its core.

A child that dies, hangs past ``timeout_s`` or cannot start gives replies without an answer and
the reason (and a hung child is replaced), never an exception that would stop System 1; bad
input is refused by the child's backend with the same ``ValueError`` as in-process.
"""
from __future__ import annotations

import itertools
import socket
import subprocess
import sys
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from dualdrive.vlm.backend import VLMReply

START_TIMEOUT_S = 120.0  # importing torch and loading a model in a fresh interpreter


class System2ProcessError(RuntimeError):
    """The child process could not start its backend; the message is the child's."""


def _serve(spec: str, threads: int, conn) -> None:
    """The child: build the backend, then answer requests until told to stop (None) or orphaned."""
    try:
        import torch
        torch.set_num_threads(threads)
        from dualdrive.vlm.backend import make_backend
        backend = make_backend(spec)
    except Exception as e:  # noqa: BLE001 - reported to the parent, which raises it with the spec
        conn.send(("failed", f"{type(e).__name__}: {e}"))
        return
    conn.send(("ready", backend.name))
    while True:
        try:
            msg = conn.recv()
        except EOFError:  # the parent is gone
            return
        if msg is None:
            return
        rid, image, prompt = msg
        try:
            conn.send(("reply", rid, backend.ask(image, prompt)))
        except ValueError as e:
            conn.send(("refused", rid, str(e)))
        except Exception as e:  # noqa: BLE001 - a failing model gives a reply with the reason
            conn.send(("reply", rid, VLMReply("", None, 0.0, f"System 2 failed: {type(e).__name__}: {e}")))


class ProcessBackend:
    """``spec``'s backend (see :func:`dualdrive.vlm.backend.make_backend`) in a child process."""

    def __init__(self, spec: str, threads: int = 1, timeout_s: float = 30.0,
                 start_timeout_s: float = START_TIMEOUT_S) -> None:
        self.spec, self.threads, self.timeout_s, self.start_timeout_s = spec, threads, timeout_s, start_timeout_s
        self._ids = itertools.count()
        self._lock = threading.Lock()
        self._proc: Any = None
        self.name = f"process:{self._start()}"

    def _start(self) -> str:
        # a fresh interpreter (`python -m dualdrive.vlm.process`) on one end of a socket pair: unlike
        # multiprocessing's spawn it does not re-import the caller's __main__ (a Ray worker, a script)
        mine, theirs = socket.socketpair()
        self._proc = subprocess.Popen([sys.executable, "-m", "dualdrive.vlm.process", str(theirs.fileno()), self.spec,
                                       str(self.threads)], pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL)
        theirs.close()
        self._conn = Connection(mine.detach())
        if not self._conn.poll(self.start_timeout_s):
            self.close()
            raise System2ProcessError(f"System 2 ({self.spec}) did not start within {self.start_timeout_s:.0f} s")
        try:
            kind, text = self._conn.recv()
        except EOFError:
            kind, text = "failed", f"the process exited (code {self._proc.wait()})"
        if kind != "ready":
            self.close()
            raise System2ProcessError(f"System 2 ({self.spec}) could not start: {text}")
        return text

    def ask(self, image: np.ndarray, prompt: str) -> VLMReply:
        with self._lock:  # one request at a time: the pipe carries one conversation
            t0 = time.perf_counter()
            if self._proc is None or self._proc.poll() is not None:
                return VLMReply("", None, 0.0, f"System 2's process is gone (exit code "
                                f"{None if self._proc is None else self._proc.returncode})")
            rid = next(self._ids)
            try:
                self._conn.send((rid, np.asarray(image), prompt))
                while True:  # a late reply to an earlier request that timed out is dropped
                    if not self._conn.poll(max(self.timeout_s - (time.perf_counter() - t0), 0.0)):
                        self._restart()
                        return VLMReply("", None, time.perf_counter() - t0,
                                        f"System 2 did not answer within {self.timeout_s:.0f} s; its process was restarted")
                    kind, got, payload = self._conn.recv()
                    if got == rid:
                        break
            except (EOFError, OSError, BrokenPipeError) as e:
                return VLMReply("", None, time.perf_counter() - t0, f"System 2's process failed: {type(e).__name__}: {e}")
            if kind == "refused":
                raise ValueError(payload)
            return payload

    def _restart(self) -> None:
        self.close()
        try:
            self._start()
        except System2ProcessError:
            self._proc = None  # every later ask says the process is gone

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            self._conn.send(None)
        except (OSError, BrokenPipeError):
            pass
        try:
            proc.wait(timeout=2.0)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=2.0)
        self._conn.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


if __name__ == "__main__":  # the child: python -m dualdrive.vlm.process FD SPEC THREADS
    _serve(sys.argv[2], int(sys.argv[3]), Connection(int(sys.argv[1])))
