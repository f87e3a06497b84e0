"""What a passenger asked for, as the car acts on it: a few slots with fixed values.

The slots are the whole of what an instruction can change. None of them touches a traffic rule
or a safety check, so even an instruction the parser misreads cannot make the car run a light or
speed: the worst a misreading does is pick the wrong route preference, spot or driving style.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import Enum

SLOTS: dict[str, tuple[str, ...]] = {
    "route": ("avoid_motorway", "prefer_motorway", "next_exit"),
    "spot": ("near_entrance", "away_from_others"),
    "style": ("gentle", "brisk"),
    "stop": ("pull_over", "stop_now"),
}
# What the style and stop values ask of a drive: the driver wrapper acts on these and the
# benchmark scores against them, so both read them from here.
GENTLE_SPEED_OF_LIMIT = 0.75  # a gentle drive keeps under this share of the speed limit
GENTLE_ACCEL_MPS2 = 1.0  # and gains speed at most this fast
STOP_DECEL_MPS2 = {"stop_now": 4.0, "pull_over": 1.5}  # the braking each stop asks for
# the clause labels besides the slot values (see phrasings.yaml)
UNSAFE, OUT_OF_SCOPE, NONE = "unsafe", "out_of_scope", "none"

_SAY = {
    "avoid_motorway": "avoid the motorway",
    "prefer_motorway": "take the motorway",
    "next_exit": "take the next exit",
    "near_entrance": "park near the entrance",
    "away_from_others": "park away from other cars",
    "gentle": "drive gently",
    "brisk": "drive briskly, within the limits",
    "pull_over": "pull over where it is safe",
    "stop_now": "stop as soon as it is safe",
}


class Status(str, Enum):
    OK = "ok"  # everything asked for is understood and will be honoured
    CLARIFY = "clarify"  # something was not understood, or contradicts itself: the car asks
    REFUSED = "refused"  # something asked for breaks a rule: refused, the rest honoured


@dataclass(frozen=True)
class Intent:
    route: str | None = None
    spot: str | None = None
    style: str | None = None
    stop: str | None = None

    def __post_init__(self) -> None:
        for slot, values in SLOTS.items():
            value = getattr(self, slot)
            if value is not None and value not in values:
                raise ValueError(f"intent slot {slot!r} cannot be {value!r}; it takes one of {', '.join(values)}")

    def slots(self) -> dict[str, str]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    def describe(self) -> str:
        """The intent in words, as the car says it back."""
        return ", ".join(_SAY[v] for v in self.slots().values()) or "nothing to change"


@dataclass(frozen=True)
class ClauseReading:
    text: str
    label: str  # "<slot>.<value>", or UNSAFE, OUT_OF_SCOPE, NONE
    confidence: float  # the classifier's probability of the label


@dataclass(frozen=True)
class Understanding:
    text: str
    status: Status
    intent: Intent
    confidence: float  # the least confident clause that carries a request (1.0 with none)
    reply: str  # what the car says back
    clauses: tuple[ClauseReading, ...] = field(default_factory=tuple)

    def to_json(self) -> dict:
        return {"text": self.text, "status": self.status.value, "intent": self.intent.slots(),
                "confidence": round(self.confidence, 4), "reply": self.reply,
                "clauses": [{"text": c.text, "label": c.label, "confidence": round(c.confidence, 4)} for c in self.clauses]}
