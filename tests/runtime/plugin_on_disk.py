"""A kdspec plugin written by a test into a folder (a package and its ``.dist-info`` with the
entry points), found by ``importlib.metadata`` once the folder is on ``PYTHONPATH``: no pip."""

from __future__ import annotations

import textwrap
from pathlib import Path


def write_plugin(folder: Path, package: str, source: str, *, architectures: str = "",
                 datasets: str = "") -> Path:
    """``folder/package/__init__.py`` holding ``source`` and the dist-info naming its entry
    point functions (``"package:function"``); returns ``folder`` (put it on PYTHONPATH)."""
    (folder / package).mkdir(parents=True, exist_ok=True)
    (folder / package / "__init__.py").write_text(textwrap.dedent(source))
    info = folder / f"{package}-0.1.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: 0.1\n")
    points = ""
    if architectures:
        points += f"[kdspec.architectures]\n{package} = {architectures}\n"
    if datasets:
        points += f"[kdspec.datasets]\n{package} = {datasets}\n"
    (info / "entry_points.txt").write_text(points)
    return folder
