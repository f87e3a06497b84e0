"""The dual system (after DriveVLM-Dual): System 1 drives every tick; System 2, a VLM, runs in its
own thread at a few hertz with its real latency and guides System 1 with its latest decision.

A System 1 trained with a guidance input (``E2EConfig.guidance_classes``, see
:mod:`dualdrive.agents.e2e.guidance`) gets System 2's first meta-action as that input and plans with
it. A System 1 without one is guided through its plan: "stop", "wait" and "yield" brake along its
path to a standstill, "slow down" lowers the speed, "pull over" stops gently; everything else leaves
the plan alone. Either way a stop is checked before it is acted on: it is taken only where a
comfortable deceleration reaches it (a stop demanded at speed from a misreading is not an emergency
brake; a guided System 1 is then asked again without the guidance). Guidance older than ``max_guidance_age_s``
(simulation time since the frame it answers) is dropped. System 2 may hold the car at a standstill
against System 1's plan for at most ``max_hold_s``; then its stop-type decisions are set aside until
the car has driven ``release_distance_m`` (a scene its words do not resolve is one it misreads: on
longtail, a VLM that had learned "wait" in front of a stalled car said it for 85 s on end). "Slow
down" lowers the speed below what it was when System 2 first said it, so the same answer repeated
every second does not compound into a crawl. An answer that does not parse, a
backend that raises or stalls: logged, ignored, and System 1 drives on. Everything System 2 said
is kept in ``s2_log`` and shown in ``debug`` (the video's caption). For experiments,
``s2_sim_latency_s`` runs System 2 in step with the simulation at a fixed latency instead, so that
a run is reproducible.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from dualdrive.agents.base import Agent, Control, Plan
from dualdrive.agents.e2e.guidance import GUIDANCE, from_meta_action
from dualdrive.planning.retime import retime_plan

log = logging.getLogger(__name__)

POLICY_DT_S = 0.1
STOP_ACTIONS = ("stop", "wait", "yield")
STANDING_MPS = 0.3  # slower than this the car stands
STANDING_PLAN_M = 0.5  # a plan shorter than this keeps the car where it is


@dataclass
class DualConfig:
    system1: str = "e2e"  # any registered sensor agent that plans
    s2_rate_hz: float = 1.0  # System 2 is asked at most this often (simulation time)
    max_guidance_age_s: float = 3.0
    stop_decel_mps2: float = 3.0  # System 2's stop: braking at this rate along System 1's path
    max_check_decel_mps2: float = 4.0  # a stop that would need harder braking than this is not taken
    slow_down_factor: float = 0.7
    # "slow down" never takes the car below this (it is not a stop: from a standstill, 0.7 x 0 would hold it)
    slow_down_floor_mps: float = 2.0
    pull_over_decel_mps2: float = 1.5
    # how long System 2's stop / wait / yield may keep the car standing where System 1 would drive, and how
    # far the car then drives on System 1 alone before System 2 may stop it again. System 1 stops for what
    # it sees itself (lights, cars, pedestrians: it learned from the expert), so this never drives through
    # what System 1 would stop for; it ends a standstill only System 2 wants
    max_hold_s: float = 6.0
    release_distance_m: float = 15.0
    # the meta-actions handed to a System 1 with a guidance input (the others reach it as "none"): on
    # longtail, handing over System 2's lane changes and "park" too drove System 1 off the road (README)
    guidance_actions: tuple[str, ...] = ("stop", "yield", "wait", "slow down", "pull over")
    # the meta-actions the dual agent acts on through the plan of a System 1 without a guidance input (the
    # others leave System 1's plan as it is)
    plan_actions: tuple[str, ...] = ("stop", "yield", "wait", "slow down", "pull over")
    # System 2 (see dualdrive.vlm.backend.make_backend); None: $DUALDRIVE_VLM_BACKEND, else "builtin"
    s2_backend: str | None = None
    # None: System 2 answers in its own thread with its real latency (the car as it would run). A number: it is
    # asked in step with the simulation and its answer arrives this many seconds of simulation time after its
    # frame, so a run is reproducible and two variants can be compared episode by episode (with real latency,
    # which frames System 2 answers changes from run to run and one episode moved by 30 DS points between runs).
    # None here: $DUALDRIVE_S2_LATENCY_S if set
    s2_sim_latency_s: float | None = None
    # System 2's decisions are acted on only when the backend's confidence in its first meta-action is at least
    # this (the builtin VLM gives one: VLMReply.confidence; a backend that gives none is always acted on). An
    # unsure answer is logged and System 1 drives alone. On the VLM's held-out frames, its stop / wait / yield
    # were right 82 % of the time at any confidence and 92 % at >= 0.8 (recall 95 -> 78 %): `dualdrive eval-vlm`
    # reports the table. 0: every answer (None here: $DUALDRIVE_S2_MIN_CONFIDENCE if set, else 0)
    min_confidence: float | None = None


MAX_SIM_LATENCY_S = 10.0  # beyond max_guidance_age_s anyway: every answer would arrive stale
S2_LATENCY_ENV = "DUALDRIVE_S2_LATENCY_S"  # DualConfig.s2_sim_latency_s for agents built by name (and Ray workers)
S2_CONFIDENCE_ENV = "DUALDRIVE_S2_MIN_CONFIDENCE"  # DualConfig.min_confidence likewise


class _System2Thread:
    """One request at a time to a VLM backend, answered in a background thread."""

    def __init__(self, backend) -> None:
        self.backend = backend
        self.lock = threading.Lock()
        self.busy = False
        self.result: tuple[float, Any] | None = None  # (sim time of the frame, reply or exception)

    def submit(self, t_s: float, image: np.ndarray, prompt: str) -> bool:
        with self.lock:
            if self.busy:
                return False
            self.busy = True
        threading.Thread(target=self._run, args=(t_s, image, prompt), daemon=True).start()
        return True

    def _run(self, t_s: float, image: np.ndarray, prompt: str) -> None:
        try:
            out: Any = self.backend.ask(image, prompt)
        except Exception as e:  # noqa: BLE001 - a failing System 2 must never stop System 1
            out = e
        with self.lock:
            self.result, self.busy = (t_s, out), False

    def take(self, t_s: float) -> tuple[float, Any] | None:
        """The answer, if one has come (``t_s``, the simulation time now, does not matter here)."""
        with self.lock:
            r, self.result = self.result, None
        return r


class _System2InStep:
    """One request at a time, answered at once but handed over ``latency_s`` of simulation time after its
    frame: the same answers at the same ticks on every run."""

    def __init__(self, backend, latency_s: float) -> None:
        self.backend, self.latency_s = backend, latency_s
        self.pending: tuple[float, Any] | None = None

    def submit(self, t_s: float, image: np.ndarray, prompt: str) -> bool:
        if self.pending is not None:
            return False
        try:
            out: Any = self.backend.ask(image, prompt)
        except Exception as e:  # noqa: BLE001 - as in the thread: a failing System 2 never stops System 1
            out = e
        self.pending = (t_s, out)
        return True

    def take(self, t_s: float) -> tuple[float, Any] | None:
        if self.pending is None or t_s < self.pending[0] + self.latency_s - 1e-9:
            return None
        r, self.pending = self.pending, None
        return r


class DualAgent(Agent):
    name = "dual"
    uses_sensors = True
    privileged = False

    def __init__(self, config: DualConfig | None = None, system1: Agent | None = None, backend=None) -> None:
        self.cfg = config or DualConfig()
        if system1 is None:
            from dualdrive.agents.registry import load_agent
            system1 = load_agent(self.cfg.system1)
        if backend is None:
            import os

            from dualdrive.vlm.backend import BACKEND_ENV, make_backend
            backend = make_backend(self.cfg.s2_backend or os.environ.get(BACKEND_ENV) or "builtin")
        self.s1, self.backend = system1, backend
        self.s2_sim_latency_s = _sim_latency(self.cfg.s2_sim_latency_s)
        self.min_confidence = _min_confidence(self.cfg.min_confidence)
        # System 1 was trained with a guidance input (E2EConfig.guidance_classes): it plans with System 2's word
        self.s1_takes_guidance = bool(getattr(getattr(getattr(system1, "info", None), "config", None),
                                              "guidance_classes", 0))
        # what the passenger asked for, as understood and accepted (set by the instruction wrapper): it goes
        # into System 2's prompt
        self.passenger_request: str | None = None
        self._new_episode()

    @property
    def debug(self) -> dict:
        return {**getattr(self.s1, "debug", {}), "phase": self._caption}

    def reset(self, info: dict[str, Any]) -> None:
        self.s1.reset(info)
        self._new_episode()

    def _new_episode(self) -> None:
        # a new thread holder: an answer still on its way from the last episode lands in the old one
        self.t_s = 0.0
        self.s2 = _System2Thread(self.backend) if self.s2_sim_latency_s is None \
            else _System2InStep(self.backend, self.s2_sim_latency_s)
        self.last_asked_s = -np.inf
        self.guidance: tuple[float, tuple[str, ...], str] | None = None  # (frame time, meta-actions, decision)
        self.guidance_speed_mps = 0.0  # the speed when System 2's current decision first arrived ("slow down" is from it)
        self.odometer_m = 0.0  # distance driven this episode (odometry speed x tick)
        self.last_speed_mps = 0.0
        self.held_s = 0.0  # how long System 2 has kept the car standing against System 1's plan, this time
        self.released_at_m: float | None = None  # odometer when System 2's hold was set aside
        self.s2_log: list[dict] = []
        self._caption = ""
        self._guide_note = ""
        self._unsure = ""  # the caption while System 2's latest answer was too unsure to act on

    def _guided(self, observation: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The observation with System 2's latest fresh meta-action for a System 1 that takes it."""
        if not self.s1_takes_guidance:
            return observation
        idx = 0
        if self.guidance is not None and self.t_s - self.guidance[0] <= self.cfg.max_guidance_age_s and self.guidance[1] \
                and self.guidance[1][0] in self.cfg.guidance_actions \
                and not (self._released() and self.guidance[1][0] in STOP_ACTIONS):
            idx = from_meta_action(self.guidance[1][0])
        return {**observation, "guidance": np.array([idx], np.int64)}

    def _s1_again(self, observation: dict[str, np.ndarray]) -> Plan | Control:
        """System 1 asked a second time in one tick: its per-tick state (the leaving latch, the red-light rule, the
        parking assist's odometry) must advance once a tick, so an E2E System 1 is asked through ``replan``."""
        again = getattr(self.s1, "replan", None)
        return again(observation) if callable(again) else self.s1.act(observation)

    def act(self, observation: dict[str, np.ndarray]) -> Plan | Control:
        speed_now = self.last_speed_mps = _odometry_speed(observation)
        self.odometer_m += abs(speed_now) * POLICY_DT_S
        if self.released_at_m is not None and self.odometer_m - self.released_at_m >= self.cfg.release_distance_m:
            self.released_at_m = None  # driven far enough: a new scene, System 2 may stop the car again
        guided = self._guided(observation)
        plan = self.s1.act(guided)
        self._guide_note = ""
        if guided is not observation and int(guided["guidance"][0]) == GUIDANCE.index("stop") and isinstance(plan, Plan):
            if self._too_late_to_stop(plan, speed_now):
                plan = self._s1_again(observation)  # the check: no hard braking on System 2's word
                self._guide_note = " (stop not taken: too late to stop comfortably)"
        self._collect(speed_now)
        self._ask(observation)
        self.t_s += POLICY_DT_S
        if not isinstance(plan, Plan) or self.guidance is None:
            self._caption = (self._unsure or "S2: -") if self.guidance is None else self._caption
            self.held_s = 0.0
            return plan
        t_frame, actions, decision = self.guidance
        age = self.t_s - t_frame
        if age > self.cfg.max_guidance_age_s:
            self.guidance = None
            self._caption = f"S2: stale ({age:.1f} s) dropped"
            return plan
        if self.s1_takes_guidance:  # System 1 planned with it: its plan stands
            handed = GUIDANCE[int(guided["guidance"][0])] if guided is not observation else "none"
            if handed in STOP_ACTIONS and abs(speed_now) < STANDING_MPS and _path_length(plan) < STANDING_PLAN_M:
                own = self._s1_again(observation)  # what System 1 would do unguided: does System 2 alone hold the car?
                if isinstance(own, Plan) and self._holding(speed_now, plan, own):
                    plan, self._guide_note = own, " (hold set aside: System 1 drives)"
            else:
                self.held_s = 0.0
            self._caption = f"S2 ({age:.1f} s): {', '.join(actions)} -> System 1{self._guide_note}"
            return plan
        action = actions[0] if actions else "keep lane"
        if action not in self.cfg.plan_actions:
            self._caption = f"S2 ({age:.1f} s): {', '.join(actions)} (not acted on)"
            return plan
        if action in STOP_ACTIONS and self._released():
            self._caption = f"S2 ({age:.1f} s): {', '.join(actions)} (hold set aside: System 1 drives)"
            return plan
        guided, note = self._apply(plan, speed_now, action)
        if self._holding(speed_now, guided, plan):
            guided, note = plan, " (hold set aside: System 1 drives)"
        self._caption = f"S2 ({age:.1f} s): {', '.join(actions)}{note}"
        return guided

    # -- System 2 --------------------------------------------------------------------------------
    def _ask(self, obs: dict) -> None:
        if self.t_s - self.last_asked_s < 1.0 / self.cfg.s2_rate_hz - 1e-6:  # t_s sums 0.1 s ticks: rounding
            return
        image = obs.get("camera_front_rgb")
        if image is None or not int(np.asarray(obs.get("camera_front_valid", [1])).reshape(-1)[0]):
            return  # no frame to show System 2 this tick
        try:
            from dualdrive.vlm.prompt import make_prompt
            prompt = make_prompt(float(obs["speed_mps"][0]), int(obs["command"][0]), float(obs["command_distance_m"][0]),
                                 self.passenger_request)
        except (KeyError, ValueError):
            return  # bad odometry: System 1 handles it; nothing sensible to ask
        if self.s2.submit(self.t_s, np.asarray(image).copy(), prompt):
            self.last_asked_s = self.t_s

    def _released(self) -> bool:
        return self.released_at_m is not None

    def _holding(self, speed: float, guided: Plan, own: Plan) -> bool:
        """Count the time System 2 keeps the car standing where System 1's own plan moves; past
        ``max_hold_s``, set System 2's hold aside (True) until the car has driven ``release_distance_m``."""
        standing = abs(speed) < STANDING_MPS and _path_length(guided) < STANDING_PLAN_M
        if not (standing and _path_length(own) >= STANDING_PLAN_M):
            self.held_s = 0.0
            return False
        self.held_s += POLICY_DT_S
        if self.held_s < self.cfg.max_hold_s:
            return False
        self.released_at_m, self.held_s = self.odometer_m, 0.0
        self.s2_log.append({"t_s": round(self.t_s, 2), "released": f"System 2 held the car {self.cfg.max_hold_s:g} s "
                            f"against System 1's plan: its stops are set aside for {self.cfg.release_distance_m:g} m"})
        return True

    def _collect(self, speed_mps: float | None = None) -> None:
        """Take System 2's answer if one has come (``speed_mps``: the odometry's now, default the last seen)."""
        speed_mps = self.last_speed_mps if speed_mps is None else speed_mps
        got = self.s2.take(self.t_s)
        if got is None:
            return
        t_frame, reply = got
        entry: dict[str, Any] = {"t_s": round(self.t_s, 2), "frame_t_s": round(t_frame, 2)}
        if isinstance(reply, Exception):
            entry["error"] = f"{type(reply).__name__}: {reply}"
        elif reply.answer is None:
            entry.update(text=reply.text[:500], error=reply.error, latency_s=round(reply.latency_s, 3))
        elif reply.confidence is not None and reply.confidence < self.min_confidence:
            a = reply.answer
            entry.update(text=reply.text, meta_actions=list(a.meta_actions), confidence=round(reply.confidence, 3),
                         latency_s=round(reply.latency_s, 3),
                         unsure=f"confidence {reply.confidence:.2f} < {self.min_confidence:g}: System 1 drives alone")
            self.guidance = None  # an unsure answer replaces what System 2 said before: no decision at all
            self._unsure = f"S2 unsure ({reply.confidence:.2f}): {', '.join(a.meta_actions)} (not acted on)"
        else:
            a = reply.answer
            entry.update(text=reply.text, meta_actions=list(a.meta_actions), decision=a.decision,
                         latency_s=round(reply.latency_s, 3))
            if reply.confidence is not None:
                entry["confidence"] = round(reply.confidence, 3)
            self._unsure = ""
            first = a.meta_actions[0] if a.meta_actions else None
            if self.guidance is None or not self.guidance[1] or self.guidance[1][0] != first:
                self.guidance_speed_mps = abs(speed_mps)  # a new decision: "slow down" is from this speed on
            self.guidance = (t_frame, tuple(a.meta_actions), a.decision)
        if "error" in entry:
            log.info("System 2 answer ignored: %s", entry["error"])  # kept in s2_log; one a second would flood a run
        self.s2_log.append(entry)

    def _too_late_to_stop(self, plan: Plan, speed: float) -> bool:
        """The check of a stop: could the car stop where the plan goes, braking comfortably?"""
        return speed * speed / (2 * self.cfg.max_check_decel_mps2) > _path_length(plan) + 1.0 and speed > 1.0

    def _apply(self, plan: Plan, speed: float, action: str) -> tuple[Plan, str]:
        cfg = self.cfg
        if action in STOP_ACTIONS:
            if self._too_late_to_stop(plan, speed):
                return plan, " (stop not taken: too late to stop comfortably)"
            return retime_plan(plan, speed, decel_mps2=cfg.stop_decel_mps2), ""
        if action == "slow down":  # from the speed when System 2 first said it, not today's: repeats do not compound
            cap = max(cfg.slow_down_factor * self.guidance_speed_mps, cfg.slow_down_floor_mps)
            return retime_plan(plan, speed, max_speed_mps=cap), ""
        if action == "pull over":
            return retime_plan(plan, speed, decel_mps2=cfg.pull_over_decel_mps2), ""
        return plan, ""


def _sim_latency(configured: float | None) -> float | None:
    """System 2's simulated latency: the configured one, else ``$DUALDRIVE_S2_LATENCY_S``, else None (real)."""
    import os
    if configured is None:
        raw = os.environ.get(S2_LATENCY_ENV, "").strip()
        if not raw:
            return None
        try:
            configured = float(raw)
        except ValueError:
            raise ValueError(f"${S2_LATENCY_ENV}={raw!r} is not a number of seconds") from None
    if not 0.0 <= configured <= MAX_SIM_LATENCY_S:
        raise ValueError(f"System 2's simulated latency must be 0-{MAX_SIM_LATENCY_S:g} s of simulation time, not {configured!r}")
    return float(configured)


def _min_confidence(configured: float | None) -> float:
    """The confidence below which System 2 is not acted on: the configured one, else
    ``$DUALDRIVE_S2_MIN_CONFIDENCE``, else 0 (every answer)."""
    import os
    if configured is None:
        raw = os.environ.get(S2_CONFIDENCE_ENV, "").strip()
        if not raw:
            return 0.0
        try:
            configured = float(raw)
        except ValueError:
            raise ValueError(f"${S2_CONFIDENCE_ENV}={raw!r} is not a number in [0, 1]") from None
    if not 0.0 <= configured <= 1.0:
        raise ValueError(f"System 2's minimum confidence must be in [0, 1], not {configured!r}")
    return float(configured)


def _odometry_speed(observation: dict[str, Any]) -> float:
    try:
        v = float(np.asarray(observation.get("speed_mps", 0.0)).reshape(-1)[0])
    except (TypeError, ValueError, IndexError):
        return 0.0
    return v if np.isfinite(v) else 0.0


def _path_length(plan: Plan) -> float:
    pts = np.vstack([[0.0, 0.0], plan.poses[:, :2]])
    return float(np.linalg.norm(np.diff(pts, axis=0), axis=1).sum())
