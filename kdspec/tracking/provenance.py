"""Where a result came from: the code (git commit, uncommitted changes), the versions that ran
it, the machine and the user, as tags on every run, read once per process."""

from __future__ import annotations

import getpass
import socket
import subprocess
from functools import cache
from importlib import metadata
from pathlib import Path

from kdspec.tracking import schema

#: Packages whose versions change results, recorded as ``kdspec.version.<name>``.
VERSIONED_PACKAGES = ("kdspec", "torch", "torchvision", "accelerate", "mlflow", "numpy")


def _git(*args: str, cwd: Path) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                              timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_state(folder: Path) -> tuple[str, bool] | None:
    """``(commit, dirty)`` of the checkout holding ``folder``, or None outside one (an
    installed kdspec, a machine without git)."""
    commit = _git("rev-parse", "HEAD", cwd=folder)
    if not commit:
        return None
    status = _git("status", "--porcelain", "--untracked-files=no", cwd=folder)
    return commit, bool(status)


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _cuda() -> str:
    import torch

    if not torch.cuda.is_available():
        return f"none (torch built with {torch.version.cuda or 'no CUDA'})"
    return f"{torch.version.cuda} on {torch.cuda.get_device_name(0)}"


@cache
def provenance_tags() -> dict[str, str]:
    """The tags every kdspec run gets: git commit and dirty flag of kdspec's own checkout (when
    it runs from one), package versions, CUDA, host and user."""
    tags = {f"{schema.TAG_VERSION_PREFIX}{p}": _version(p) for p in VERSIONED_PACKAGES}
    tags[f"{schema.TAG_VERSION_PREFIX}cuda"] = _cuda()
    tags[schema.TAG_HOST] = socket.gethostname()
    try:
        tags[schema.TAG_USER] = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        tags[schema.TAG_USER] = "unknown"
    tags[schema.TAG_SOURCE_NAME] = "kdspec"
    tags[schema.TAG_SOURCE_TYPE] = "LOCAL"
    state = git_state(Path(__file__).resolve().parent)
    if state is not None:
        tags[schema.TAG_GIT_COMMIT] = state[0]
        tags[schema.TAG_GIT_DIRTY] = "true" if state[1] else "false"
    return tags
