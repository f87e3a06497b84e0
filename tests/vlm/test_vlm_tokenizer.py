"""The word tokenizer: round trip of answer texts, unknown words, the saved vocabulary."""
from __future__ import annotations

import pytest

from dualdrive.vlm.answer import render_answer
from dualdrive.vlm.prompt import make_prompt
from dualdrive.vlm.tokenizer import UNK, TokenizerError, WordTokenizer
from tests_vlm_support import ANSWER


def test_answer_text_round_trips_and_unknown_words_map_to_unk(tmp_path):
    text = render_answer(ANSWER)
    prompt = make_prompt(12.3, 1, 34.0)
    assert prompt == "speed 12 m/s. route: turn left in 30 m. describe the scene, analyse it and plan."
    tok = WordTokenizer.build([text, prompt])
    assert tok.decode(tok.encode(text)) == " ".join(text.split())  # line breaks become spaces
    assert tok.decode(tok.encode(prompt)) == prompt
    assert tok.decode(tok.encode("waypoints: 150 -60.")) == "waypoints: 150 -60."  # numbers are always known
    ids = tok.encode("the zebra jumps")
    assert tok.unk_id in ids and tok.decode(ids).count(UNK) == 2
    tok.save(tmp_path / "v.json")
    assert WordTokenizer.load(tmp_path / "v.json").vocab == tok.vocab


def test_a_bad_vocabulary_is_refused(tmp_path):
    (tmp_path / "v.json").write_text("{not json")
    with pytest.raises(TokenizerError, match="not valid JSON"):
        WordTokenizer.load(tmp_path / "v.json")
    with pytest.raises(TokenizerError, match="starts with"):
        WordTokenizer(["car", "lane"])
