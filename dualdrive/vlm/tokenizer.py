"""A word-level tokenizer for the driving VLM's prompts and answers.

Words, whole numbers and punctuation marks are tokens; the vocabulary is built from the training
text and saved with the checkpoint. Every whole number in ``NUMBER_RANGE`` is in the vocabulary
whether or not the training text used it, so a waypoint the model has not seen (an unusual speed)
can still be said; any other unknown word maps to ``<unk>``. Decoding joins tokens with spaces
except before ``. , ; : ) /`` and after ``( /``, which reproduces the answer format exactly.
"""
from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Iterable

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIALS = (PAD, BOS, EOS, UNK)
NUMBER_RANGE = range(-60, 161)  # waypoints: up to 4 s at 40 m/s ahead, a few lanes sideways
_TOKEN_RE = re.compile(r"-?\d+|[a-z]+|[^\sa-z\d]")
_NO_SPACE_BEFORE = set(".,;:)/")
_NO_SPACE_AFTER = set("(/")


class TokenizerError(ValueError):
    """A vocabulary file that cannot be read or does not fit the model."""


def split_words(text: str) -> list[str]:
    return _TOKEN_RE.findall(text.lower())


class WordTokenizer:
    def __init__(self, vocab: list[str]) -> None:
        if list(vocab[:len(SPECIALS)]) != list(SPECIALS):
            raise TokenizerError(f"a vocabulary starts with {', '.join(SPECIALS)}; got {vocab[:len(SPECIALS)]}")
        if len(set(vocab)) != len(vocab):
            raise TokenizerError("the vocabulary has duplicate tokens")
        self.vocab = list(vocab)
        self.index = {w: i for i, w in enumerate(self.vocab)}
        self.pad_id, self.bos_id, self.eos_id, self.unk_id = (self.index[s] for s in SPECIALS)

    @classmethod
    def build(cls, texts: Iterable[str], min_count: int = 1) -> "WordTokenizer":
        counts = Counter(w for t in texts for w in split_words(t))
        words = sorted(w for w, c in counts.items() if c >= min_count and w not in SPECIALS)
        numbers = [str(n) for n in NUMBER_RANGE]
        return cls(list(SPECIALS) + numbers + [w for w in words if w not in set(numbers)])

    def __len__(self) -> int:
        return len(self.vocab)

    def encode(self, text: str) -> list[int]:
        return [self.index.get(w, self.unk_id) for w in split_words(text)]

    def decode(self, ids: Iterable[int]) -> str:
        out = ""
        prev = ""
        for i in ids:
            i = int(i)
            if i == self.eos_id:
                break
            if i in (self.pad_id, self.bos_id):
                continue
            w = self.vocab[i] if 0 <= i < len(self.vocab) else UNK
            if out and w[0] not in _NO_SPACE_BEFORE and prev not in _NO_SPACE_AFTER:
                out += " "
            out += w
            prev = w
        return out

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps({"format": "dualdrive-vlm-vocab", "tokens": self.vocab}, indent=0))

    @classmethod
    def load(cls, path: str | Path) -> "WordTokenizer":
        p = Path(path)
        if not p.is_file():
            raise TokenizerError(f"vocabulary file {p} does not exist")
        try:
            d = json.loads(p.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise TokenizerError(f"vocabulary file {p} is not valid JSON: {e}") from None
        if not isinstance(d, dict) or d.get("format") != "dualdrive-vlm-vocab" or not isinstance(d.get("tokens"), list):
            raise TokenizerError(f"{p} is not a dualdrive VLM vocabulary (no 'tokens' list)")
        return cls([str(t) for t in d["tokens"]])
