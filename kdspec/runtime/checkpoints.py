"""Checkpoint files: ``checkpoints/last.pt`` (everything needed to resume a run after epoch k)
and ``checkpoints/final.pt`` (the trained model, which is how a distilled run gets its teacher).

Both are plain ``torch.save`` dictionaries of tensors and numbers, loaded with
``weights_only=True``. No RNG state is stored: batches depend only on ``(seed, epoch)``, so a run
resumed at epoch k sees exactly the batches it would have seen.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from kdspec.runtime.models import build_model
from kdspec.runtime.training import Trainee

CHECKPOINT_FORMAT = 1


def resume_state(trainee: Trainee, epoch_metrics: dict[str, float] | None = None
                 ) -> dict[str, Any]:
    """What ``last.pt`` holds: model, optimizer, scheduler (and fp16 scaler) after
    ``trainee.epochs_done`` epochs, and that epoch's metrics, so a run killed after its checkpoint
    was saved but before the metrics reached MLflow can log them when it resumes. A run whose
    method keeps state (fitnet's regressor, crd's heads and memory bank, label smoothing's
    epsilon) has it under ``"method"``; the optimizer's state covers the learned modules."""
    method = {} if trainee.method is None else {"method": trainee.method.checkpoint()}
    return {
        **method,
        "epoch_metrics": dict(epoch_metrics or {}),
        "format": CHECKPOINT_FORMAT,
        "kdspec_run_id": trainee.run.id,
        "epochs_done": trainee.epochs_done,
        "model": trainee.model.state_dict(),
        "optimizer": trainee.optimizer.state_dict(),
        "scheduler": trainee.scheduler.state_dict(),
        "scaler": trainee.scaler.state_dict() if trainee.scaler is not None else None,
    }


def restore_trainee(trainee: Trainee, state: dict[str, Any]) -> None:
    """Load a ``last.pt`` state into a freshly built trainee of the same run."""
    if state.get("kdspec_run_id") != trainee.run.id:
        raise ValueError(
            f"checkpoint belongs to run {state.get('kdspec_run_id')}, not {trainee.run.id}"
        )
    trainee.model.load_state_dict(state["model"])
    if trainee.method is not None:
        if "method" not in state:
            raise ValueError(f"checkpoint of run {trainee.run.id} holds no state of its "
                             f"method {trainee.run.method}")
        trainee.method.restore(state["method"])
    trainee.optimizer.load_state_dict(state["optimizer"])
    trainee.scheduler.load_state_dict(state["scheduler"])
    if trainee.scaler is not None and state.get("scaler") is not None:
        trainee.scaler.load_state_dict(state["scaler"])
    trainee.epochs_done = int(state["epochs_done"])


def final_state(trainee: Trainee, *, in_channels: int, image_size: int,
                num_classes: int) -> dict[str, Any]:
    """What ``final.pt`` holds: the architecture and how to build it, and the trained weights
    (the student's alone: a method's own modules stay in ``last.pt``)."""
    return {
        "format": CHECKPOINT_FORMAT,
        "kdspec_run_id": trainee.run.id,
        "arch": trainee.run.arch,
        "in_channels": in_channels,
        "image_size": image_size,
        "num_classes": num_classes,
        "model": trainee.model.state_dict(),
    }


def save(state: dict[str, Any], path: Path) -> Path:
    """Write ``state`` atomically (temp file + rename), so a kill never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(state, tmp)
    tmp.replace(path)
    return path


def load(path: Path) -> dict[str, Any]:
    """Read a checkpoint onto the CPU (the caller moves what it needs)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a kdspec checkpoint (format {CHECKPOINT_FORMAT})")
    return state


def load_model(path: Path, *, device: torch.device) -> torch.nn.Module:
    """The trained model stored in a ``final.pt``, in eval mode on ``device``."""
    state = load(path)
    model = build_model(state["arch"], in_channels=int(state["in_channels"]),
                        image_size=int(state["image_size"]),
                        num_classes=int(state["num_classes"]))
    model.load_state_dict(state["model"])
    return model.to(device).eval()
