"""Training pieces on constructed data: the split by episode, the learning-rate schedule, balanced epochs."""
from __future__ import annotations

import numpy as np
import torch

from dualdrive.vlm.config import TrainConfig
from dualdrive.vlm.train import Encoded, epoch_order, lr_at, split_keys


def test_validation_takes_whole_episodes():
    train, val = split_keys([f"ep_{i}" for i in range(10)], 0.2, seed=0)
    assert len(val) == 2 and not set(train) & set(val) and len(train) + len(val) == 10
    assert split_keys(["only"], 0.2, 0) == (["only"], [])


def test_the_learning_rate_warms_up_then_decays():
    cfg = TrainConfig(lr=1e-3, warmup_steps=10)
    assert lr_at(0, 100, cfg) == 1e-4 and lr_at(9, 100, cfg) == 1e-3
    assert abs(lr_at(100, 100, cfg) - 5e-5) < 1e-12  # 5 % of the peak at the end


def test_balanced_epochs_draw_rare_plans_more_often():
    actions = ["keep lane"] * 90 + ["change lane left"] * 10
    data = Encoded(torch.zeros(100, 1), torch.zeros(100, 1), torch.zeros(100, 1), actions)
    plain = epoch_order(data, 0, 0, 0.0)
    assert sorted(plain.tolist()) == list(range(100))  # a permutation
    rare = np.mean([np.isin(epoch_order(data, 0, e, 1.0).numpy(), np.arange(90, 100)).mean() for e in range(20)])
    assert 0.4 < rare < 0.6  # balance 1: both actions about equally often (10 % without)
    assert torch.equal(epoch_order(data, 0, 3, 1.0), epoch_order(data, 0, 3, 1.0))  # reproducible per epoch
