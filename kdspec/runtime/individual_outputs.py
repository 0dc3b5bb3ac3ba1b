"""What individual fairness needs from a trained model, measured once at its final evaluation.

Individual fairness (Dwork et al., 2012) asks that similar inputs get similar outputs:
``I(f) = mean over pairs (x, x') of D(f(x), f(x')) / d(x, x')``. The pairs and their input
distances depend only on the test set and the study's ``individual_fairness`` declaration; the
outputs depend on the model. Each finished run stores both in its ``predictions.npz`` (keys
``individual/...``, see :mod:`kdspec.tracking.schema`), so the analysis stage computes ``I(f)``
from what the run stored, and a report can say exactly which pairs it averaged.

An input is its pixels, or for text its bag of tokens (token counts, special tokens left out):
the declared distance (euclidean or cosine) is taken between those vectors.

Size per run: ``samples x classes`` float32 probabilities plus ``samples x neighbours`` pairs
(two int32 and one float32 each): 2,000 samples of 10 classes with 5 neighbours is 80 KB +
120 KB before compression; ImageNet's 1,000 classes make the probabilities 8 MB. While the pairs are found, the sampled
inputs are held on the host in float64: 2,000 images of 3 x 32 x 32 take 49 MB, of
3 x 224 x 224 2.4 GB (lower ``samples`` for such inputs).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import torch

from kdspec.plan import IndividualFairnessSpec
from kdspec.runtime.interfaces import AutocastFactory, EvalSource
from kdspec.tracking import schema

#: The sampled test images and random partners come from this seed, so every run of a study
#: (and every study with the same declaration and test set) uses the same pairs.
PAIR_SEED = 0
#: Rows of the distance matrix computed at once (memory: rows x samples floats).
DISTANCE_ROWS = 512
EVAL_BATCH_SIZE = 512


@dataclass(frozen=True)
class IndividualOutputs:
    """A model's outputs on the sampled test images and the pairs to compare them over.

    indices: int64 ``[n]`` test-sample indices (sorted); probabilities: float32 ``[n, C]``
    softmax outputs; pairs: int32 ``[P, 2]`` positions into ``indices``; distances: float32
    ``[P]`` input distances of the pairs; declaration: the spec's declaration as JSON.
    """

    indices: np.ndarray
    probabilities: np.ndarray
    pairs: np.ndarray
    distances: np.ndarray
    declaration: str

    def arrays(self) -> dict[str, np.ndarray]:
        """The ``individual/...`` entries of ``predictions.npz``."""
        prefix = schema.PRED_INDIVIDUAL_PREFIX
        return {f"{prefix}indices": self.indices.astype(np.int64),
                f"{prefix}probabilities": self.probabilities.astype(np.float32),
                f"{prefix}pairs": self.pairs.astype(np.int32),
                f"{prefix}distances": self.distances.astype(np.float32),
                f"{prefix}declaration": np.array(self.declaration)}


def sample_indices(num_samples: int, wanted: int) -> np.ndarray:
    """``min(wanted, num_samples)`` distinct test indices drawn with :data:`PAIR_SEED`, sorted."""
    rng = np.random.default_rng(PAIR_SEED)
    take = min(wanted, num_samples)
    return np.sort(rng.choice(num_samples, size=take, replace=False)).astype(np.int64)


def _distance_rows(x: torch.Tensor, rows: slice, distance: str) -> torch.Tensor:
    """Distances from ``x[rows]`` to every row of ``x``; for ``cosine``, ``x`` holds unit
    rows already."""
    if distance == "euclidean":
        return torch.cdist(x[rows], x)
    return (1.0 - x[rows] @ x.T).clamp_min(0.0)


def similar_pairs(inputs: torch.Tensor, spec: IndividualFairnessSpec
                  ) -> tuple[np.ndarray, np.ndarray]:
    """The declaration's pairs over ``inputs`` (``[n, D]``, computed in float64 so that the
    neighbour order is the same on every CPU): int32 ``[P, 2]`` and their float32 distances. ``nearest``: each row with its ``neighbours`` nearest other rows (ties broken
    by index); ``random``: each row with ``neighbours`` distinct random other rows."""
    x = inputs.reshape(inputs.shape[0], -1).to(torch.float64)
    n = x.shape[0]
    k = min(spec.neighbours, n - 1)
    if k < 1:
        return np.zeros((0, 2), np.int32), np.zeros(0, np.float32)
    firsts, seconds, dists = [], [], []
    if spec.pairs == "nearest":
        space = x if spec.distance == "euclidean" else torch.nn.functional.normalize(x, dim=1)
        for start in range(0, n, DISTANCE_ROWS):
            rows = slice(start, min(start + DISTANCE_ROWS, n))
            block = _distance_rows(space, rows, spec.distance)
            block[torch.arange(block.shape[0]), torch.arange(rows.start, rows.stop)] = \
                float("inf")
            # A stable sort keeps equal distances in index order on every machine.
            order = torch.sort(block, dim=1, stable=True).indices[:, :k]
            firsts.append(torch.arange(rows.start, rows.stop).repeat_interleave(k))
            seconds.append(order.reshape(-1))
            dists.append(torch.gather(block, 1, order).reshape(-1))
    else:
        rng = np.random.default_rng(PAIR_SEED + 1)
        partners = np.stack([rng.choice(n - 1, size=k, replace=False) for _ in range(n)])
        partners = partners + (partners >= np.arange(n)[:, None])  # skip the row itself
        first = torch.arange(n).repeat_interleave(k)
        second = torch.as_tensor(partners.reshape(-1))
        for start in range(0, first.numel(), DISTANCE_ROWS):
            a, b = first[start:start + DISTANCE_ROWS], second[start:start + DISTANCE_ROWS]
            if spec.distance == "euclidean":
                d = (x[a] - x[b]).norm(dim=1)
            else:
                d = (1.0 - torch.nn.functional.cosine_similarity(x[a], x[b], dim=1)
                     ).clamp_min(0.0)
            dists.append(d)
        firsts, seconds = [first], [second]
    pairs = torch.stack([torch.cat(firsts), torch.cat(seconds)], dim=1)
    return pairs.numpy().astype(np.int32), torch.cat(dists).numpy().astype(np.float32)


def bag_of_tokens(ids: torch.Tensor, *, ignore: tuple[int, ...] = ()) -> torch.Tensor:
    """Token counts ``[n, V']`` of posts given as ids ``[n, L]``, over the ``V'`` distinct ids
    they use (every other vocabulary entry is 0 in all of them, so distances are those over
    the whole vocabulary), leaving out ``ignore`` (padding, [CLS], [SEP])."""
    vocabulary, position = torch.unique(ids, return_inverse=True)
    counts = torch.zeros(ids.shape[0], vocabulary.numel(), dtype=torch.float32)
    counts.scatter_add_(1, position, torch.ones_like(position, dtype=torch.float32))
    keep = ~torch.isin(vocabulary, torch.tensor(ignore, dtype=vocabulary.dtype))
    return counts[:, keep]


def individual_outputs(model: torch.nn.Module, test: EvalSource, spec: IndividualFairnessSpec,
                       *, autocast: AutocastFactory = contextlib.nullcontext,
                       batch_size: int = EVAL_BATCH_SIZE) -> IndividualOutputs:
    """One pass over the test split (eval mode, no grad): the sampled images' inputs (for the
    pairs) and the model's softmax probabilities on them (computed in float32)."""
    indices = sample_indices(test.num_samples, spec.samples)
    wanted = np.zeros(test.num_samples, dtype=bool)
    wanted[indices] = True
    was_training = model.training
    model.eval()
    inputs: list[torch.Tensor] = []
    probabilities: list[torch.Tensor] = []
    with torch.no_grad():
        for batch in test.batches(batch_size=batch_size):
            keep = torch.as_tensor(wanted[batch.index.cpu().numpy()]).nonzero().squeeze(1)
            if keep.numel() == 0:
                continue
            images = batch.inputs[keep.to(batch.inputs.device)]
            with autocast():
                logits = model(images)
            probabilities.append(torch.softmax(logits.float(), dim=1).cpu())
            inputs.append(images.reshape(images.shape[0], -1).cpu())
    model.train(was_training)
    x = torch.cat(inputs)
    if x.is_floating_point():
        x = x.float()
    else:  # token ids: a post is its bag of tokens
        x = bag_of_tokens(x, ignore=tuple(getattr(test, "special_ids", ())))
    pairs, distances = similar_pairs(x, spec)
    return IndividualOutputs(indices=indices, probabilities=torch.cat(probabilities).numpy(),
                             pairs=pairs, distances=distances,
                             declaration=spec.model_dump_json())

