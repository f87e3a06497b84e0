"""Helpers of the E2E model tests (not library code)."""
import torch

from dualdrive.agents.e2e.config import E2EConfig
from dualdrive.agents.e2e.model import E2EModel


def trained_like(cfg: E2EConfig, seed: int = 0) -> E2EModel:
    """A model of ``cfg`` in eval mode whose plan head is not zero (a fresh model plans "stand still", which would
    hide whether an input moves the plan)."""
    torch.manual_seed(seed)
    model = E2EModel(cfg).eval()
    torch.nn.init.normal_(model.plan_head[-1].weight, std=0.1)
    torch.nn.init.normal_(model.plan_head[-1].bias, std=0.1)
    return model
