"""Refuse to train on the CPU by accident on a machine that has NVIDIA GPUs.

When torch cannot use the GPUs it sees (a CPU-only wheel, a wheel built for a newer driver
than the machine's, a broken driver), ``torch.cuda.is_available()`` is simply False and a
naive runtime trains on the CPU, hours or days slower, with results that look normal. kdspec
instead stops before anything trains and says why, unless the user asked for the CPU
(``kdspec run --cpu``) or hid the GPUs (``CUDA_VISIBLE_DEVICES=""`` or ``-1``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch

from kdspec.errors import KdspecError

MSG_GPU_UNUSABLE = (
    "this machine has NVIDIA GPU device files ({devices}) but torch {version} cannot use them: "
    "{reason}. kdspec would train on the CPU instead. Install a torch build for this machine's "
    "driver (`nvidia-smi` shows the CUDA version it supports; pip index: "
    "https://download.pytorch.org/whl/), or pass --cpu to train on the CPU on purpose."
)


def nvidia_device_files(dev: Path = Path("/dev")) -> list[str]:
    """The ``/dev/nvidia<N>`` GPU device files present (not nvidiactl, nvidia-uvm, ...)."""
    if not dev.is_dir():
        return []
    return sorted(p.name for p in dev.glob("nvidia*") if p.name[len("nvidia"):].isdigit())


def cuda_unusable_reason() -> str:
    """Why torch cannot use CUDA here, in a phrase."""
    if torch.version.cuda is None:
        return "it is a CPU-only build"
    try:
        torch.cuda.init()
    except Exception as error:  # what torch says: driver too old, no device, ...
        return f"CUDA {torch.version.cuda} build, and initialising CUDA failed: {error}"
    return f"CUDA {torch.version.cuda} build, but torch.cuda.is_available() is False"


def check_gpu_usable(*, allow_cpu: bool, dev: Path = Path("/dev"),
                     cuda_available: Callable[[], bool] = torch.cuda.is_available,
                     environ: dict[str, str] | None = None) -> None:
    """Raise KdspecError when GPUs are present but torch cannot use them, unless the CPU was
    asked for (``allow_cpu``) or the GPUs are hidden through ``CUDA_VISIBLE_DEVICES``."""
    if allow_cpu or cuda_available():
        return
    env = os.environ if environ is None else environ
    if env.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return
    devices = nvidia_device_files(dev)
    if not devices:
        return
    raise KdspecError(MSG_GPU_UNUSABLE.format(
        devices=", ".join(f"{dev}/{d}" for d in devices), version=torch.__version__,
        reason=cuda_unusable_reason()))


__all__ = ["MSG_GPU_UNUSABLE", "check_gpu_usable", "cuda_unusable_reason",
           "nvidia_device_files"]
