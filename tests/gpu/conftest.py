"""The device the GPU suite runs on: ``$KDSPEC_GPU_CHECK_DEVICE`` (default ``cuda``; ``cpu`` is
``make gpu-check``'s CPU mode, which CI runs). Without CUDA the suite is skipped with the reason;
``$KDSPEC_GPU_CHECK_QUICK=1`` keeps to the small architectures (the CPU mode and ``--quick``)."""

from __future__ import annotations

import os

import pytest
import torch

DEVICE_VARIABLE = "KDSPEC_GPU_CHECK_DEVICE"
QUICK_VARIABLE = "KDSPEC_GPU_CHECK_QUICK"


def gpu_check_device() -> torch.device:
    return torch.device(os.environ.get(DEVICE_VARIABLE, "cuda"))


def quick() -> bool:
    return os.environ.get(QUICK_VARIABLE, "") == "1"


@pytest.fixture
def device() -> torch.device:
    wanted = gpu_check_device()
    if wanted.type == "cuda" and not torch.cuda.is_available():
        pytest.skip("CUDA is not available here: the GPU suite runs with `make gpu-check` on a "
                    "GPU machine, or on the CPU with `make gpu-check GPU_CHECK_ARGS=--cpu`")
    return wanted
