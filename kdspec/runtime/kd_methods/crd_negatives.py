"""The contrast indices of CRD's "exact" mode (the authors' ``CIFAR100InstanceSample``): for
each training sample ``i`` of a batch, ``[i, n_1, ..., n_K]`` where the ``n_k`` are drawn
uniformly from the training samples of the *other* classes, without replacement when those
are at least ``K`` (else with replacement). The positive is the sample itself, whose row of
the memory bank holds its own past embeddings.

Pure functions of the training labels and a ``torch.Generator``: the runtime draws them with
the batch (any process, any order) and gives them to
:class:`~kdspec.runtime.kd_methods.crd.ContrastMemory`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ClassIndex:
    """The training samples grouped by class: ``order`` ``[N]`` holds the sample indices sorted
    by label (stable), class ``c`` occupying ``order[starts[c] : starts[c] + counts[c]]``."""

    order: torch.Tensor
    starts: torch.Tensor
    counts: torch.Tensor
    labels: torch.Tensor


def class_index(train_labels: torch.Tensor) -> ClassIndex:
    """Group ``train_labels`` (int64 ``[N]``, classes ``0..C-1``) by class."""
    labels = train_labels.to(torch.int64).cpu()
    order = torch.argsort(labels, stable=True)
    counts = torch.bincount(labels)
    starts = torch.cumsum(counts, 0) - counts
    return ClassIndex(order=order, starts=starts, counts=counts, labels=labels)


def draw_contrast_indices(index: torch.Tensor, classes: ClassIndex, nce_k: int, *,
                          generator: torch.Generator | None = None) -> torch.Tensor:
    """int64 ``[B, nce_k + 1]``: each row the sample's own index, then ``nce_k`` samples of
    other classes. index: int64 ``[B]``, rows of the training set."""
    rows = []
    total = len(classes.labels)
    for sample in index.tolist():
        label = int(classes.labels[sample])
        start, count = int(classes.starts[label]), int(classes.counts[label])
        others = total - count
        if others == 0:
            raise ValueError("CRD needs samples of at least two classes")
        if nce_k <= others:
            drawn = torch.randperm(others, generator=generator)[:nce_k]
        else:
            drawn = torch.randint(others, (nce_k,), generator=generator)
        # Positions past the sample's own class skip over it in the class-sorted order.
        positions = torch.where(drawn < start, drawn, drawn + count)
        rows.append(torch.cat([torch.tensor([sample]), classes.order[positions]]))
    return torch.stack(rows)
