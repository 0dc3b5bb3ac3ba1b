"""Test-split evaluation: overall and per-class accuracy, the confusion matrix and the predictions
that the analysis stage reads back (see :mod:`kdspec.tracking.schema`).
"""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass, replace

import numpy as np
import torch

from kdspec.plan import IndividualFairnessSpec
from kdspec.runtime.individual_outputs import IndividualOutputs, individual_outputs
from kdspec.runtime.interfaces import AutocastFactory, EvalSource
from kdspec.tracking import schema

#: Test batches are forward-only, so they can be larger than training batches.
EVAL_BATCH_SIZE = 512


@dataclass(frozen=True)
class Evaluation:
    """A model's results on the test split.

    y_true, y_pred: int64 ``[N]`` aligned by test-sample index.
    confusion: int64 ``[C, C]``, ``confusion[i, j]`` = samples of true class i predicted j.
    class_accuracy: float64 ``[C]``, ``confusion[c, c] / confusion[c].sum()`` (NaN for a class
    with no test sample).
    attributes: every per-sample attribute of the test split, int64 ``[N]`` each.
    """

    y_true: np.ndarray
    y_pred: np.ndarray
    confusion: np.ndarray
    class_accuracy: np.ndarray
    attributes: dict[str, np.ndarray]
    #: Outputs and pairs for individual fairness, when the study declares it.
    individual: IndividualOutputs | None = None

    @property
    def accuracy(self) -> float:
        """Overall top-1 accuracy, ``mean(y_pred == y_true)``."""
        return float(np.mean(self.y_pred == self.y_true)) if len(self.y_true) else float("nan")

    def predictions_npz(self) -> bytes:
        """``predictions.npz`` in the tracking layout: ``y_true``, ``y_pred`` and ``attr/<name>``."""
        arrays = {schema.PRED_Y_TRUE: self.y_true, schema.PRED_Y_PRED: self.y_pred}
        for name, values in self.attributes.items():
            arrays[f"{schema.PRED_ATTRIBUTE_PREFIX}{name}"] = np.asarray(values, dtype=np.int64)
        if self.individual is not None:
            arrays.update(self.individual.arrays())
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)  # type: ignore[arg-type]
        return buffer.getvalue()

    def class_accuracy_json(self, class_names: tuple[str, ...]) -> str:
        """``class_accuracy.json``: class names, per-class accuracy and support, overall accuracy.
        A class without test samples has accuracy ``null``."""
        support = self.confusion.sum(axis=1)
        payload = {
            "classes": list(class_names),
            "accuracy": [None if np.isnan(a) else float(a) for a in self.class_accuracy],
            "support": [int(s) for s in support],
            "overall": self.accuracy,
        }
        return json.dumps(payload, indent=2)


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """int64 ``[C, C]`` counts of (true, predicted) pairs."""
    flat = y_true.astype(np.int64) * num_classes + y_pred.astype(np.int64)
    counts = np.bincount(flat, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def evaluate(
    model: torch.nn.Module,
    test: EvalSource,
    *,
    num_classes: int,
    autocast: AutocastFactory = contextlib.nullcontext,
    batch_size: int = EVAL_BATCH_SIZE,
) -> Evaluation:
    """Predict every test sample (eval mode, no grad, under ``autocast``) and tabulate the results.

    The model is put back in the training mode it was in. Predictions stay on the device until
    the end: one host transfer per evaluation.
    """
    was_training = model.training
    model.eval()
    predictions: list[torch.Tensor] = []
    with torch.no_grad(), autocast():
        for batch in test.batches(batch_size=batch_size):
            predictions.append(model(batch.inputs).argmax(dim=1))
    model.train(was_training)
    y_pred = torch.cat(predictions).cpu().numpy().astype(np.int64) if predictions \
        else np.zeros(0, dtype=np.int64)
    y_true = np.asarray(test.labels, dtype=np.int64)
    confusion = confusion_matrix(y_true, y_pred, num_classes)
    support = confusion.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        class_accuracy = np.where(support > 0, np.diag(confusion) / np.maximum(support, 1), np.nan)
    return Evaluation(
        y_true=y_true,
        y_pred=y_pred,
        confusion=confusion,
        class_accuracy=class_accuracy.astype(np.float64),
        attributes={k: np.asarray(v, dtype=np.int64) for k, v in test.attributes.items()},
    )


def with_individual_outputs(evaluation: Evaluation, model: torch.nn.Module, test: EvalSource,
                            spec: IndividualFairnessSpec | None, *,
                            autocast: AutocastFactory = contextlib.nullcontext) -> Evaluation:
    """``evaluation`` plus the model's individual-fairness outputs (one more pass over the test
    split) when ``spec`` declares them; unchanged otherwise."""
    if spec is None:
        return evaluation
    return replace(evaluation, individual=individual_outputs(model, test, spec,
                                                             autocast=autocast))
