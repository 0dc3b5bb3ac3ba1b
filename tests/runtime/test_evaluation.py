"""Accuracy, per-class accuracy, confusion and the predictions artifact, by hand."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import numpy as np
import torch

from kdspec.runtime.evaluation import confusion_matrix, evaluate
from kdspec.runtime.interfaces import Batch
from kdspec.tracking import schema


class FixedLogits(torch.nn.Module):
    """Predicts class ``int(x[0, 0, 0])`` for each image (the test writes it into the pixel)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.one_hot(x[:, 0, 0, 0].long(), 3).float()


class TinyTest:
    def __init__(self, preds: list[int], labels: list[int]):
        self.num_samples = len(labels)
        self.labels = np.array(labels, dtype=np.int64)
        self.attributes = {"color": np.arange(len(labels), dtype=np.int64) % 2}
        self._images = torch.tensor(preds, dtype=torch.float32).view(-1, 1, 1, 1)

    def batches(self, *, batch_size: int) -> Iterator[Batch]:
        for start in range(0, self.num_samples, batch_size):
            idx = torch.arange(start, min(start + batch_size, self.num_samples))
            yield Batch(self._images[idx], torch.from_numpy(self.labels[idx.numpy()]), idx)


def test_evaluation_by_hand() -> None:
    labels = [0, 0, 1, 1, 1, 2]
    preds = [0, 1, 1, 1, 2, 2]
    result = evaluate(FixedLogits(), TinyTest(preds, labels), num_classes=3, batch_size=4)
    assert result.accuracy == 4 / 6
    np.testing.assert_array_equal(result.confusion, [[1, 1, 0], [0, 2, 1], [0, 0, 1]])
    np.testing.assert_allclose(result.class_accuracy, [0.5, 2 / 3, 1.0])
    with np.load(io.BytesIO(result.predictions_npz())) as npz:
        assert set(npz.files) == {schema.PRED_Y_TRUE, schema.PRED_Y_PRED, "attr/color"}
        np.testing.assert_array_equal(npz[schema.PRED_Y_PRED], preds)
        assert npz[schema.PRED_Y_TRUE].dtype == np.int64
    payload = json.loads(result.class_accuracy_json(("a", "b", "c")))
    assert payload["classes"] == ["a", "b", "c"] and payload["support"] == [2, 3, 1]
    assert payload["overall"] == 4 / 6


def test_class_without_test_samples_has_no_accuracy() -> None:
    result = evaluate(FixedLogits(), TinyTest([0, 1], [0, 1]), num_classes=3)
    assert np.isnan(result.class_accuracy[2])
    assert json.loads(result.class_accuracy_json(("a", "b", "c")))["accuracy"][2] is None


def test_confusion_matrix_counts_pairs() -> None:
    m = confusion_matrix(np.array([2, 2, 0]), np.array([2, 0, 0]), 3)
    assert m.tolist() == [[1, 0, 0], [0, 0, 0], [1, 0, 1]]
