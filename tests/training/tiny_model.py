"""A tiny E2E model config for fast tests (a test helper, not library code)."""
from dualdrive.agents.e2e.config import E2EConfig

TINY = E2EConfig(camera_channels=(8, 16, 16, 16), lidar_channels=(8, 16, 16, 16), d_model=32, n_layers=1, ff_dim=64,
                 bev_decoder_channels=8)
