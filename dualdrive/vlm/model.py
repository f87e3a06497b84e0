"""The driving VLM: a small CNN turns the camera frame into visual tokens, and a small causal
transformer reads them as a prefix (followed by the prompt) and writes the answer word by word.

This is the LLaVA layout (visual tokens prepended to the text) at toy scale: one block type, one
attention kind, and a key/value cache so that greedy decoding computes each new token from the
cache instead of re-running the whole sequence. The output layer shares the token embedding.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dualdrive.vlm.config import VLMConfig

IGNORE_INDEX = -100  # targets that carry no loss (the prompt, padding)
KVCache = list[tuple[torch.Tensor, torch.Tensor]]


class ImageEncoder(nn.Module):
    """(B, H, W, 3) uint8 frames -> (B, visual_tokens, d_model), one token per cell of the final grid."""

    def __init__(self, cfg: VLMConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for c in cfg.image_channels:
            layers += [nn.Conv2d(c_in, c, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c), nn.GELU()]
            c_in = c
        self.convs = nn.Sequential(*layers)
        self.proj = nn.Conv2d(c_in, cfg.d_model, 1)
        self.pos = nn.Parameter(torch.zeros(1, cfg.visual_tokens, cfg.d_model))
        nn.init.normal_(self.pos, std=0.02)
        self.hw = (cfg.image_height_px, cfg.image_width_px)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or tuple(images.shape[1:3]) != self.hw or images.shape[3] != 3:
            raise ValueError(f"images must be (B, {self.hw[0]}, {self.hw[1]}, 3) uint8 frames, got {tuple(images.shape)}")
        x = images.permute(0, 3, 1, 2).float() / 255.0 - 0.5
        x = self.proj(self.convs(x))
        return x.flatten(2).transpose(1, 2) + self.pos


class Block(nn.Module):
    """Pre-norm transformer block with causal self-attention; returns its keys and values for the cache."""

    def __init__(self, cfg: VLMConfig) -> None:
        super().__init__()
        self.n_heads = cfg.n_heads
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.out = nn.Linear(cfg.d_model, cfg.d_model)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.mlp = nn.Sequential(nn.Linear(cfg.d_model, cfg.ff_dim), nn.GELU(), nn.Linear(cfg.ff_dim, cfg.d_model))
        self.drop = nn.Dropout(cfg.dropout)
        self.p_drop = cfg.dropout

    def forward(self, x: torch.Tensor, past: tuple[torch.Tensor, torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, t, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        if past is not None:
            k, v = torch.cat([past[0], k], 2), torch.cat([past[1], v], 2)
        # a single new token may see every cached position; a whole sequence sees its past only
        causal = past is None and t > 1
        a = F.scaled_dot_product_attention(q, k, v, is_causal=causal, dropout_p=self.p_drop if self.training else 0.0)
        x = x + self.drop(self.out(a.transpose(1, 2).reshape(b, t, d)))
        x = x + self.drop(self.mlp(self.ln2(x)))
        return x, (k, v)


class DrivingVLM(nn.Module):
    def __init__(self, cfg: VLMConfig) -> None:
        super().__init__()
        if cfg.vocab_size < 1:
            raise ValueError("VLMConfig.vocab_size is 0: set it from the tokenizer before building the model")
        self.cfg = cfg
        self.encoder = ImageEncoder(cfg)
        self.tok = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos = nn.Embedding(cfg.max_positions, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)
        nn.init.normal_(self.tok.weight, std=0.02)
        nn.init.normal_(self.pos.weight, std=0.02)

    def _run(self, x: torch.Tensor, start: int, cache: KVCache | None) -> tuple[torch.Tensor, KVCache]:
        if start + x.shape[1] > self.cfg.max_positions:
            raise ValueError(f"sequence of {start + x.shape[1]} positions exceeds max_positions={self.cfg.max_positions}")
        pos = torch.arange(start, start + x.shape[1], device=x.device)
        x = self.drop(x + self.pos(pos))
        new: KVCache = []
        for i, blk in enumerate(self.blocks):
            x, kv = blk(x, None if cache is None else cache[i])
            new.append(kv)
        return self.ln_f(x), new

    def _logits(self, h: torch.Tensor) -> torch.Tensor:
        return h @ self.tok.weight.T

    def forward(self, images: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Logits (B, T, vocab) for every text position of ``tokens`` (B, T): prompt, <bos>, answer."""
        vis = self.encoder(images)
        h, _ = self._run(torch.cat([vis, self.tok(tokens)], 1), 0, None)
        return self._logits(h[:, vis.shape[1]:])

    def loss(self, images: torch.Tensor, tokens: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean next-token cross-entropy over the answer (``targets`` is IGNORE_INDEX elsewhere)."""
        logits = self(images, tokens)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE_INDEX)

    @torch.no_grad()
    def generate(self, image: torch.Tensor, prompt_ids: list[int], bos_id: int, eos_id: int,
                 max_tokens: int | None = None, probs: list[float] | None = None) -> list[int]:
        """Greedy answer token ids for one frame ``image`` (H, W, 3) uint8 and its prompt (without <eos>).

        ``probs``, if given, receives the model's probability of each returned token (its softmax at that
        step): how sure the model was of each word it said."""
        limit = min(max_tokens or self.cfg.max_answer_tokens, self.cfg.max_answer_tokens)
        if len(prompt_ids) > self.cfg.max_prompt_tokens:
            raise ValueError(f"prompt has {len(prompt_ids)} tokens; the model takes at most {self.cfg.max_prompt_tokens}")
        vis = self.encoder(image.unsqueeze(0))
        text = torch.tensor([list(prompt_ids) + [bos_id]], dtype=torch.long, device=vis.device)
        h, cache = self._run(torch.cat([vis, self.tok(text)], 1), 0, None)
        pos = h.shape[1]
        out: list[int] = []
        for _ in range(limit):
            logits = self._logits(h[:, -1])
            nxt = int(logits.argmax(-1))
            if nxt == eos_id:
                break
            out.append(nxt)
            if probs is not None:
                probs.append(float(torch.softmax(logits[0].float(), -1)[nxt]))
            h, cache = self._run(self.tok(torch.tensor([[nxt]], device=vis.device)), pos, cache)
            pos += 1
        return out


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
