"""The model: output shapes, a few steps learn a tiny batch, safetensors round trip, clear errors for a
checkpoint that does not fit."""
from __future__ import annotations

import json

import pytest
import torch

from dualdrive.agents.e2e.checkpoint import CheckpointError
from dualdrive.vlm.checkpoint import load_checkpoint, save_checkpoint, sidecar_path, vocab_path
from dualdrive.vlm.config import VLMConfig, VLMConfigError
from dualdrive.vlm.model import IGNORE_INDEX, DrivingVLM
from dualdrive.vlm.tokenizer import WordTokenizer

TINY = VLMConfig(image_channels=(8, 8, 16, 16), d_model=32, n_heads=2, n_layers=1, ff_dim=64, dropout=0.0,
                 max_answer_tokens=24)


@pytest.fixture
def tok() -> WordTokenizer:
    return WordTokenizer.build(["scene: highway, no light. plan: keep lane. waypoints: 20 0."])


def _model(tok: WordTokenizer, **kw) -> DrivingVLM:
    torch.manual_seed(0)
    return DrivingVLM(VLMConfig(**{**TINY.to_dict(), "vocab_size": len(tok), **kw}))


def test_shapes_and_greedy_decoding(tok):
    m = _model(tok)
    images = torch.randint(0, 256, (2, 96, 192, 3), dtype=torch.uint8)
    tokens = torch.randint(0, len(tok), (2, 17))
    assert m(images, tokens).shape == (2, 17, len(tok))
    assert m.encoder(images).shape == (2, TINY.visual_tokens, 32) and TINY.visual_tokens == 72
    m.eval()
    ids = m.generate(images[0], tok.encode("speed 3 m/s."), tok.bos_id, tok.eos_id, max_tokens=10)
    assert len(ids) <= 10 and all(0 <= i < len(tok) for i in ids)
    # the cache gives the same next-token logits as running the whole sequence
    seq = torch.tensor([tok.encode("speed 3 m/s.") + [tok.bos_id] + ids[:3]])
    full = m(images[:1], seq)[0, -1]
    vis = m.encoder(images[:1])
    h, cache = m._run(torch.cat([vis, m.tok(seq[:, :-1])], 1), 0, None)
    h, _ = m._run(m.tok(seq[:, -1:]), h.shape[1], cache)
    assert torch.allclose(m._logits(h[:, -1])[0], full, atol=1e-4)
    with pytest.raises(ValueError, match="images must be"):
        m(torch.zeros(1, 10, 10, 3, dtype=torch.uint8), tokens[:1])


def test_generate_reports_the_probability_of_each_word_it_says(tok):
    m = _model(tok).eval()
    image, prompt = torch.randint(0, 256, (96, 192, 3), dtype=torch.uint8), tok.encode("speed 3 m/s.")
    probs: list[float] = []
    ids = m.generate(image, prompt, tok.bos_id, tok.eos_id, max_tokens=6, probs=probs)
    assert ids == m.generate(image, prompt, tok.bos_id, tok.eos_id, max_tokens=6) and len(probs) == len(ids)
    # each is the softmax of the chosen (greedy: the most likely) token, recomputed from the full sequence
    seq = torch.tensor([prompt + [tok.bos_id] + ids])
    p_full = torch.softmax(m(image.unsqueeze(0), seq)[0, len(prompt):len(prompt) + len(ids)], -1)
    expected = p_full[torch.arange(len(ids)), torch.tensor(ids)]
    assert torch.allclose(torch.tensor(probs), expected, atol=1e-4)
    assert all(p >= 1.0 / len(tok) for p in probs)


def test_the_first_meta_actions_confidence_is_the_product_over_its_words():
    from dualdrive.vlm.backend import first_meta_action_confidence
    words = "road : urban . plan : change lane left , stop .".split()
    probs = [0.9] * 6 + [0.5, 0.8, 0.6] + [0.9] * 3
    assert first_meta_action_confidence(words, probs) == pytest.approx(0.5 * 0.8 * 0.6)
    assert first_meta_action_confidence("road : urban .".split(), [0.9] * 4) is None  # no plan section
    assert first_meta_action_confidence("plan : .".split(), [0.9] * 3) is None  # an empty one


def test_a_few_steps_reduce_the_loss_on_a_tiny_batch(tok):
    m = _model(tok)
    images = torch.randint(0, 256, (4, 96, 192, 3), dtype=torch.uint8)
    tokens = torch.randint(4, len(tok), (4, 12))
    targets = tokens.roll(-1, 1)
    targets[:, :3] = IGNORE_INDEX  # the prompt carries no loss
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        loss = m.loss(images, tokens, targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]  # random tokens: memorised, not learnt


def test_checkpoint_round_trip_and_mismatches(tok, tmp_path):
    m = _model(tok).eval()
    path = save_checkpoint(tmp_path / "model.safetensors", m, tok, {"note": "test"})
    loaded, tok2, info = load_checkpoint(path)
    assert tok2.vocab == tok.vocab and info.metadata == {"note": "test"} and info.config == m.cfg
    for k, v in m.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k])
    # a sidecar describing a wider model than the weights: named file, named mismatch
    side = json.loads(sidecar_path(path).read_text())
    side["config"]["d_model"] = 64
    sidecar_path(path).write_text(json.dumps(side))
    with pytest.raises(CheckpointError, match=r"model\.safetensors does not match the model .*shape"):
        load_checkpoint(path)
    side["config"]["d_model"] = 32
    side["config"]["vocab_size"] = len(tok) + 1
    sidecar_path(path).write_text(json.dumps(side))
    with pytest.raises(CheckpointError, match=r"model\.vocab\.json has \d+ tokens but model\.json says vocab_size"):
        load_checkpoint(path)
    side["config"]["vocab_size"] = len(tok)
    sidecar_path(path).write_text(json.dumps(side))
    path.write_bytes(b"\x80\x04garbage")
    with pytest.raises(CheckpointError, match="pickled"):
        load_checkpoint(path)
    vocab_path(path).unlink()
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nothing.safetensors")


def test_configs_refuse_bad_values():
    with pytest.raises(VLMConfigError, match="divisible by n_heads"):
        VLMConfig(d_model=30, n_heads=4)
    with pytest.raises(VLMConfigError, match="unknown model config key"):
        VLMConfig.from_dict({"d_modle": 3})
