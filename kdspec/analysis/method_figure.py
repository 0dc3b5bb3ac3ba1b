"""The method x class map of a methods block as a figure: one row per arm, one column per
class, the colour the mean change of the normalised class accuracy against the NDS where it is
significant after Holm over the classes (blank where it is not)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.figure import Figure

from kdspec.analysis.figures import LABELLED_CLASSES, FigureFile, save_figure

if TYPE_CHECKING:
    from kdspec.analysis.method_ledger import MethodsLedger

METHODS_MAP_FIGURE = "method_class_map.png"
METHODS_MAP_CSV = "method_class_map.csv"


def class_map_figure(ledger: MethodsLedger, path: Path) -> FigureFile | None:
    """The map as a heatmap (None without an arm)."""
    if not ledger.rows:
        return None
    values = ledger.class_map()
    classes = len(ledger.class_names)
    scale = float(np.nanmax(np.abs(values))) if np.isfinite(values).any() else 1.0
    fig = Figure(figsize=(min(1.6 + 0.32 * classes, 16.0), 1.2 + 0.38 * len(ledger.rows)),
                 layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(np.ma.masked_invalid(values), cmap="RdBu", vmin=-scale, vmax=scale,
                      aspect="auto", interpolation="nearest")
    ax.set_facecolor("#f2f2f2")
    ax.set_yticks(range(len(ledger.rows)), [r.arm.label for r in ledger.rows], fontsize=8)
    if classes <= LABELLED_CLASSES:
        ax.set_xticks(range(classes), ledger.class_names, rotation=60, ha="right", fontsize=7)
    else:
        ax.set_xlabel(f"class (0-{classes - 1})")
    colorbar = fig.colorbar(image, ax=ax, shrink=0.9)
    colorbar.set_label("change vs NDS", fontsize=8)
    save_figure(fig, path)
    caption = (f"Per arm (row) and class (column): the mean change of the "
               f"{ledger.normalization}-normalised class accuracy of the DS against the NDS "
               f"of the same seed, where it is significant (paired t-test over seeds, Holm "
               f"over the classes, alpha = {ledger.alpha:g}); grey: not significant. Blue: "
               f"higher after distillation. Values in {METHODS_MAP_CSV}.")
    return FigureFile(path.name, path, caption)
