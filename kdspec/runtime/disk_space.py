"""Disk space for what a plan writes: checked before training, and a full disk stops the plan
at its first failed write instead of failing every later run after training it.

What a run leaves in a local artifact store, from its parameter count P (4-byte floats):
``checkpoints/last.pt`` (weights and optimizer state: 3 x 4P with momentum or Adam's two
moments counted as at most two more copies) and ``checkpoints/final.pt`` (4P), so about 16P
bytes; the working folder holds one epoch's ``last.pt`` per member of the group in training
until it is uploaded. Predictions and small tables are ignored (kilobytes to a few megabytes).
Architectures whose size the catalogue does not know (``torchvision:``, ``timm:``, ``hf:``,
plugins without a count) are left out of the estimate, which then says so.
"""

from __future__ import annotations

import errno
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from kdspec.catalogue.registry import ArchitectureError, architecture
from kdspec.plan import Run

#: Bytes a run leaves in a local artifact store per parameter (module docstring).
ARTIFACT_BYTES_PER_PARAMETER = 16
#: Bytes one epoch's checkpoint takes in the working folder per parameter.
WORKDIR_BYTES_PER_PARAMETER = 12
#: errno values that mean "this disk takes no more writes".
OUT_OF_SPACE = (errno.ENOSPC, errno.EDQUOT)
MSG_OUT_OF_SPACE = (
    "out of disk space while writing {what}: {error}. Nothing more is trained; finished runs "
    "are kept and interrupted ones resume from their last checkpoint: free space (or point "
    "--tracking-uri at a store with room) and run the same command again"
)
MSG_NO_ROOM = (
    "{folder} has {free} free, and training the next group needs about {need} there ({what}); "
    "free space or choose another {option}"
)
MSG_LITTLE_ROOM = (
    "{folder} has {free} free; the runs of this plan will write about {need} of checkpoints "
    "there{unknown}: the plan stops when the disk is full"
)


def human(size: float) -> str:
    """Bytes as a person reads them: ``1.5 GB``, ``320 MB``."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size:.0f} B"


def parameters(arch: str) -> float | None:
    """The catalogue's parameter count of ``arch`` (None: not known)."""
    try:
        millions = architecture(arch).facts.params_millions
    except (ArchitectureError, AttributeError):
        return None
    return millions * 1e6 if millions else None


@dataclass(frozen=True)
class SpaceNeed:
    """What runs will write: bytes in the artifact store over all of them, bytes in the
    working folder for the largest group at once, and the architectures left out."""

    artifacts: float
    workdir: float
    unknown: tuple[str, ...]


def space_need(runs: Sequence[Run], largest_group: Sequence[Run]) -> SpaceNeed:
    unknown = sorted({r.arch for r in runs if parameters(r.arch) is None})
    artifacts = sum(ARTIFACT_BYTES_PER_PARAMETER * (parameters(r.arch) or 0) for r in runs)
    workdir = sum(WORKDIR_BYTES_PER_PARAMETER * (parameters(r.arch) or 0)
                  for r in largest_group)
    return SpaceNeed(artifacts, workdir, tuple(unknown))


def free_bytes(folder: Path) -> int:
    """Free bytes on the disk that holds ``folder`` (its nearest existing parent)."""
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return shutil.disk_usage(probe).free


def is_out_of_space(err: BaseException) -> bool:
    """Whether ``err``, or what caused it, is a write refused by a full disk or quota."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in OUT_OF_SPACE:
            return True
        if "No space left on device" in str(current) or "Disk quota exceeded" in str(current):
            return True
        current = current.__cause__ or current.__context__
    return False
