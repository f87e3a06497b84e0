"""torchrun entry for the data-parallel test: a few steps on the random dataset; every rank saves its
final weights as rank<R>.safetensors so the test can compare them."""
import os
import sys
from pathlib import Path

import torch
from e2e_datasets import RandomDemoDataset
from safetensors.torch import save_file

from dualdrive.agents.e2e.config import E2EConfig
from dualdrive.training.config import TrainConfig
from dualdrive.training.loop import run_training

TINY = E2EConfig(camera_channels=(8, 16, 16, 16), lidar_channels=(8, 16, 16, 16), d_model=32, n_layers=1, ff_dim=64,
                 bev_decoder_channels=8)

if __name__ == "__main__":
    torch.set_num_threads(1)
    out = Path(sys.argv[1])
    cfg = TrainConfig(epochs=2, batch_size=2, num_workers=0, warmup_steps=1, device="cpu", log_every_steps=1)
    result = run_training(RandomDemoDataset(8), RandomDemoDataset(5, seed=1), out, TINY, cfg, resume=False)
    state = {k: v.contiguous() for k, v in result.model.state_dict().items()}
    save_file(state, str(out / f"rank{os.environ['RANK']}.safetensors"))
