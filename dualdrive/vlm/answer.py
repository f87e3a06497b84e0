"""The driving VLM's answer: DriveVLM's chain of thought as a typed value, its text, and the parser back.

DriveVLM (arXiv 2402.12289) answers in three steps: a scene description (road, lights, the objects
that matter and where they are), a scene analysis (which of them matter and why) and a
hierarchical plan (meta-actions, a decision, coarse waypoints). :class:`VLMAnswer` holds those
fields; :func:`render_answer` writes the one text format the model learns and
:func:`parse_answer` reads it back, because the dual agent consumes the model's text, not its
tokens. The text looks like::

    scene: urban road, red light. objects: car 20 m ahead in my lane; pedestrian 10 m ahead on the left.
    analysis: the light ahead is red; the car ahead is stopped.
    plan: slow down, stop.
    decision: stop at the red light.
    waypoints: 8 0, 14 0, 15 0, 15 0.

Waypoints are the ego's positions 1, 2, 3 and 4 s ahead, ``x_m y_m`` in the ego frame at the time
of the frame (x forward, y left), rounded to whole metres; object distances are rounded to 5 m.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

ROADS = {"highway": "highway", "urban": "urban road", "parking": "parking lot"}
LIGHTS = {"none": "no light", "red": "red light", "yellow": "yellow light", "green": "green light"}
META_ACTIONS = ("keep lane", "accelerate", "slow down", "stop", "change lane left", "change lane right",
                "pull over", "yield", "wait", "park")
OBJECT_KINDS = ("car", "truck", "ambulance", "pedestrian", "stalled car", "cones", "free spot")
DIRECTIONS = ("ahead", "behind")
PLACES = ("in my lane", "in the left lane", "in the right lane", "on the left", "on the right")
DISTANCE_STEP_M = 5  # object distances are said to the nearest 5 m, as a driver would
WAYPOINT_HORIZONS_S = (1, 2, 3, 4)
MAX_OBJECTS = 3  # the answer stays short enough to decode in well under 150 ms on one core

# what the analysis can say: (subject, state) -> sentence. The subject is the critical object.
_LANE_STATES = {"my lane": "my lane", "left lane": "the left lane", "right lane": "the right lane"}
FINDINGS: dict[tuple[str, str], str] = {
    ("light", "red"): "the light ahead is red",
    ("light", "yellow"): "the light ahead is yellow",
    **{(veh, st): f"the {veh} ahead is {st}" for veh in ("car", "truck") for st in ("stopped", "braking", "slower", "close")},
    **{("car", f"cutting in {side}"): f"a car is cutting in from the {side}" for side in ("left", "right")},
    ("pedestrian", "crossing"): "a pedestrian is crossing ahead",
    ("pedestrian", "near"): "a pedestrian is near my path",
    **{("stalled car", k): f"a stalled car blocks {v}" for k, v in _LANE_STATES.items()},
    **{("cones", k): f"cones close {v}" for k, v in _LANE_STATES.items()},
    ("ambulance", "behind"): "an ambulance is approaching from behind",
    ("ambulance", "ahead"): "an ambulance is ahead",
    **{("free spot", side): f"the free spot is on the {side}" for side in ("left", "right")},
}
_FINDING_BY_TEXT = {v: k for k, v in FINDINGS.items()}
NOTHING_CRITICAL = "nothing critical"
SECTIONS = ("scene", "objects", "analysis", "plan", "decision", "waypoints")
_SECTION_RE = re.compile(r"\b(" + "|".join(SECTIONS) + r")\s*:")
_OBJECT_RE = re.compile(r"^(?P<kind>" + "|".join(sorted(OBJECT_KINDS, key=len, reverse=True)) + r")\s+(?P<d>\d+)\s*m\s+"
                        r"(?P<dir>ahead|behind)\s+(?P<place>" + "|".join(PLACES) + r")$")
_WAYPOINT_RE = re.compile(r"^(-?\d+)\s*[ ,]\s*(-?\d+)$")


class VLMParseError(ValueError):
    """Text that is not a driving answer; the message says which part is missing or wrong."""


@dataclass(frozen=True)
class SceneObject:
    kind: str  # OBJECT_KINDS
    distance_m: int  # rounded to DISTANCE_STEP_M
    direction: str  # DIRECTIONS
    place: str  # PLACES

    def __post_init__(self) -> None:
        _one_of("object kind", self.kind, OBJECT_KINDS)
        _one_of("object direction", self.direction, DIRECTIONS)
        _one_of("object place", self.place, PLACES)
        if not isinstance(self.distance_m, int) or self.distance_m < 0:
            raise ValueError(f"object distance_m must be a whole number of metres >= 0, got {self.distance_m!r}")

    def text(self) -> str:
        return f"{self.kind} {self.distance_m} m {self.direction} {self.place}"


@dataclass(frozen=True)
class Finding:
    """One line of the scene analysis: a critical object (``subject``) and why it matters (``state``)."""

    subject: str
    state: str

    def __post_init__(self) -> None:
        if (self.subject, self.state) not in FINDINGS:
            known = sorted({f"{s}/{t}" for s, t in FINDINGS})
            raise ValueError(f"unknown finding {self.subject}/{self.state}; known: {', '.join(known)}")

    def text(self) -> str:
        return FINDINGS[(self.subject, self.state)]


@dataclass(frozen=True)
class VLMAnswer:
    road: str  # ROADS key
    light: str  # LIGHTS key
    objects: tuple[SceneObject, ...] = ()
    analysis: tuple[Finding, ...] = ()
    meta_actions: tuple[str, ...] = ("keep lane",)
    decision: str = ""
    waypoints_m: tuple[tuple[int, int], ...] = ()  # (x_m, y_m) per WAYPOINT_HORIZONS_S, ego frame
    extra: dict[str, Any] = field(default_factory=dict, compare=False)  # e.g. items a tolerant parse skipped

    def __post_init__(self) -> None:
        _one_of("road", self.road, tuple(ROADS))
        _one_of("light", self.light, tuple(LIGHTS))
        object.__setattr__(self, "objects", tuple(self.objects))
        object.__setattr__(self, "analysis", tuple(self.analysis))
        object.__setattr__(self, "meta_actions", tuple(self.meta_actions))
        object.__setattr__(self, "waypoints_m", tuple((int(x), int(y)) for x, y in self.waypoints_m))
        if not self.meta_actions:
            raise ValueError("an answer needs at least one meta-action")
        for a in self.meta_actions:
            _one_of("meta-action", a, META_ACTIONS)
        if len(self.waypoints_m) > len(WAYPOINT_HORIZONS_S):
            raise ValueError(f"at most {len(WAYPOINT_HORIZONS_S)} waypoints (one per {WAYPOINT_HORIZONS_S} s), "
                             f"got {len(self.waypoints_m)}")
        if any(c in self.decision for c in ".:\n"):
            raise ValueError(f"the decision is one sentence without '.', ':' or line breaks, got {self.decision!r}")

    @property
    def critical_subjects(self) -> set[str]:
        return {f.subject for f in self.analysis}

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("extra")
        d["waypoints_m"] = [list(w) for w in self.waypoints_m]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "VLMAnswer":
        try:
            return cls(road=d["road"], light=d["light"], objects=tuple(SceneObject(**o) for o in d["objects"]),
                       analysis=tuple(Finding(**f) for f in d["analysis"]), meta_actions=tuple(d["meta_actions"]),
                       decision=d["decision"], waypoints_m=tuple(tuple(w) for w in d["waypoints_m"]))
        except (KeyError, TypeError) as e:
            raise ValueError(f"not a VLMAnswer dict ({type(e).__name__}: {e})") from None


def render_answer(a: VLMAnswer) -> str:
    """The answer as the text the model learns (the format in the module docstring)."""
    objects = "; ".join(o.text() for o in a.objects) or "none"
    analysis = "; ".join(f.text() for f in a.analysis) or NOTHING_CRITICAL
    waypoints = ", ".join(f"{x} {y}" for x, y in a.waypoints_m) or "none"
    return (f"scene: {ROADS[a.road]}, {LIGHTS[a.light]}. objects: {objects}.\n"
            f"analysis: {analysis}.\n"
            f"plan: {', '.join(a.meta_actions)}.\n"
            f"decision: {a.decision or 'none'}.\n"
            f"waypoints: {waypoints}.")


def parse_answer(text: str, strict: bool = False) -> VLMAnswer:
    """Read an answer back from text. Tolerant of case, spacing, section order, missing full stops and a
    missing objects/analysis/decision section; items it cannot read (an unknown object phrase, say) are
    skipped and listed in ``answer.extra["skipped"]``, or raise with ``strict``. Text without a readable
    scene, plan or waypoints section raises :class:`VLMParseError` naming what is wrong."""
    if not isinstance(text, str):
        raise VLMParseError(f"an answer must be text, got {type(text).__name__}")
    sections = _split_sections(text)
    skipped: list[str] = []
    road, light = _parse_scene(sections.get("scene"), text)
    objects = _items(sections.get("objects", ""), _parse_object, skipped, strict)
    analysis = _items(sections.get("analysis", ""), _parse_finding, skipped, strict)
    actions = _items(sections.get("plan", ""), _parse_action, skipped, strict, sep=",")
    if not actions:
        raise VLMParseError(f"no known meta-action in the 'plan:' section of {_clip(text)!r}; known: "
                            f"{', '.join(META_ACTIONS)}")
    if "waypoints" not in sections:
        raise VLMParseError(f"no 'waypoints:' section in {_clip(text)!r}")
    body = sections["waypoints"]
    if "(" in body:  # "(8, 0), (14, 0)": the pairs are the parentheses' contents
        body = ";".join(re.findall(r"\(([^)]*)\)", body))
    waypoints = _items(body.replace(",", ";") if "(" not in sections["waypoints"] else body, _parse_waypoint,
                       skipped, strict)[:len(WAYPOINT_HORIZONS_S)]
    decision = _strip(sections.get("decision", ""))
    decision = "" if decision == "none" else decision.replace(".", "").replace(":", "")
    return VLMAnswer(road, light, tuple(objects), tuple(analysis), tuple(actions), decision, tuple(waypoints),
                     extra={"skipped": skipped})


# -- parsing helpers -------------------------------------------------------------------------------
def _split_sections(text: str) -> dict[str, str]:
    low = " ".join(text.lower().split())
    marks = list(_SECTION_RE.finditer(low))
    if not marks:
        raise VLMParseError(f"no answer sections ({', '.join(s + ':' for s in SECTIONS)}) in {_clip(text)!r}")
    out: dict[str, str] = {}
    for k, m in enumerate(marks):
        end = marks[k + 1].start() if k + 1 < len(marks) else len(low)
        out.setdefault(m.group(1), low[m.end():end])  # a repeated section: the first one counts
    return out


def _parse_scene(body: str | None, text: str) -> tuple[str, str]:
    if body is None:
        raise VLMParseError(f"no 'scene:' section in {_clip(text)!r}")
    body = _strip(body)
    road = next((k for k, v in ROADS.items() if v in body), None) or next((k for k in ROADS if k in body), None)
    if road is None:
        raise VLMParseError(f"the scene {body!r} names no road type; expected one of {', '.join(ROADS.values())}")
    light = next((k for k, v in LIGHTS.items() if v in body), "none")
    return road, light


def _items(body: str, parse_one, skipped: list[str], strict: bool, sep: str = ";") -> list:
    out = []
    for raw in _strip(body).split(sep):
        item = _strip(raw)
        if not item or item in ("none", NOTHING_CRITICAL):
            continue
        try:
            out.append(parse_one(item))
        except ValueError as e:
            if strict:
                raise VLMParseError(str(e)) from None
            skipped.append(item)
    return out


def _parse_object(item: str) -> SceneObject:
    m = _OBJECT_RE.match(item)
    if not m:
        raise ValueError(f"cannot read object {item!r}; expected '<kind> <N> m <ahead|behind> <place>' with kind in "
                         f"{', '.join(OBJECT_KINDS)} and place in {', '.join(PLACES)}")
    return SceneObject(m["kind"], int(m["d"]), m["dir"], m["place"])


def _parse_finding(item: str) -> Finding:
    if item not in _FINDING_BY_TEXT:
        raise ValueError(f"cannot read analysis item {item!r}; it is not one of the known findings")
    return Finding(*_FINDING_BY_TEXT[item])


def _parse_action(item: str) -> str:
    if item not in META_ACTIONS:
        raise ValueError(f"unknown meta-action {item!r}; known: {', '.join(META_ACTIONS)}")
    return item


def _parse_waypoint(item: str) -> tuple[int, int]:
    m = _WAYPOINT_RE.match(item)
    if not m:
        raise ValueError(f"cannot read waypoint {item!r}; expected 'x_m y_m' in whole metres")
    return int(m[1]), int(m[2])


def _strip(s: str) -> str:
    return s.strip().strip(".").strip()


def _clip(text: str, n: int = 80) -> str:
    return text if len(text) <= n else text[:n] + "..."


def _one_of(what: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{what} {value!r} is not one of: {', '.join(allowed)}")
