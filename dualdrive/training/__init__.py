"""Training of the E2E model (apart from the model and the agent): config, loop, losses, metrics.

Entry points: ``run_training`` (dualdrive.training.loop) and ``python -m dualdrive.training``
(``torchrun --nproc-per-node N -m dualdrive.training`` for data-parallel training).
"""
