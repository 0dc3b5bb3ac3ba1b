"""The study's runs arranged by seed, for the claims' paired tests.

A seed's NDS and its DS at every T share initial weights and batch order, and its DS learn from
that seed's teacher: the seed, not the run, is the independent unit. A :class:`SeedDesign` holds,
for the seeds that have a reference run (NDS or teacher) *and* a DS at every temperature the
study has DS runs for, the normalised class accuracies and overall accuracies side by side.
Seeds missing a partner are left out and named, never silently dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kdspec.analysis.accuracy import AccuracyResult, GroupAccuracy
from kdspec.analysis.significance import normalise_class_accuracy
from kdspec.plan import Normalization


@dataclass(frozen=True)
class SeedDesign:
    """Complete seeds of one comparison (reference vs DS), arrays in seed order.

    ``reference_x`` ``[n, C]`` and ``ds_x`` ``[n, K, C]``: normalised class accuracies;
    ``reference_acc`` ``[n]`` and ``ds_acc`` ``[n, K]``: overall accuracies (fractions);
    ``temperatures`` ``[K]``: the study's temperatures with at least one DS run.
    """

    reference: str  # "NDS" or "teacher"
    seeds: tuple[int, ...]
    temperatures: tuple[float, ...]
    reference_x: np.ndarray
    ds_x: np.ndarray
    reference_acc: np.ndarray
    ds_acc: np.ndarray
    left_out: tuple[str, ...]

    @property
    def n(self) -> int:
        return len(self.seeds)

    def left_out_note(self) -> str:
        """'' or one sentence naming the seeds left out and why."""
        if not self.left_out:
            return ""
        return "left out (no partner): " + "; ".join(self.left_out)


def seed_design(accuracy: AccuracyResult, *, reference: GroupAccuracy, label: str,
                normalization: Normalization) -> SeedDesign:
    """The complete seeds of ``reference`` vs the DS of every temperature with DS runs."""
    present = [g for g in accuracy.distilled if g.n]
    temperatures = tuple(float(g.key.temperature) for g in present
                         if g.key.temperature is not None)
    ref_by_seed = dict(zip(reference.seeds, range(reference.n), strict=True))
    ds_by_seed = [dict(zip(g.seeds, range(g.n), strict=True)) for g in present]
    all_seeds = sorted(set(reference.seeds).union(*(g.seeds for g in present)))
    complete, left_out = [], []
    for seed in all_seeds:
        missing = ([label] if seed not in ref_by_seed else []) + [
            f"DS T={t:g}" for t, by in zip(temperatures, ds_by_seed, strict=True)
            if seed not in by]
        if missing:
            left_out.append(f"seed {seed}: no {', '.join(missing)}")
        else:
            complete.append(seed)
    num_classes = reference.per_class.shape[1]
    n, k = len(complete), len(present)
    ref_x = normalise_class_accuracy(
        reference.per_class[[ref_by_seed[s] for s in complete]].reshape(n, num_classes),
        reference.overall[[ref_by_seed[s] for s in complete]], normalization=normalization)
    ds_x = np.empty((n, k, num_classes))
    ds_acc = np.empty((n, k))
    for j, (group, by) in enumerate(zip(present, ds_by_seed, strict=True)):
        rows = [by[s] for s in complete]
        ds_x[:, j] = normalise_class_accuracy(group.per_class[rows].reshape(n, num_classes),
                                              group.overall[rows], normalization=normalization)
        ds_acc[:, j] = group.overall[rows]
    return SeedDesign(reference=label, seeds=tuple(complete), temperatures=temperatures,
                      reference_x=ref_x, ds_x=ds_x,
                      reference_acc=reference.overall[[ref_by_seed[s] for s in complete]],
                      ds_acc=ds_acc, left_out=tuple(left_out))
