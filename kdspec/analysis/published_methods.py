"""The standard CIFAR-100 distillation benchmark's published top-1 accuracies, as data, shown
beside a study's accuracy where its design matches.

Each value is the mean of its authors' runs (top-1 %, CIFAR-100 test set) as published in the
README of the method's code: [1] the CRD code (HobbitLong/RepDistiller, the CRD paper's
Table 1), [2] the DKD code (megvii-research/mdistiller), [3] the logit-standardisation code
(sunshangquan/logit-standardization-KD). A study matches when its dataset is ``cifar100``, its
teacher -> student pair is one of the five below and its method is one the table has (for the
logit-standardisation rows, ``kd`` or ``dkd`` with ``logit_standardization = true``); the
teacher and the student alone (NDS) are matched by the pair. Reruns of these tables by others
land 0.1-0.5 points below them, so a study a few tenths below is in line with the benchmark.
"""

from __future__ import annotations

from dataclasses import dataclass

from kdspec.distillation_methods import DKD
from kdspec.plan import Study

SOURCES = {
    "1": "the CRD code's README (HobbitLong/RepDistiller; the CRD paper's Table 1)",
    "2": "the DKD code's README (megvii-research/mdistiller)",
    "3": "the logit-standardisation code's README (sunshangquan/logit-standardization-KD)",
}
MSG_CAVEAT = ("Published: the mean of the authors' runs as their code's README gives it (top-1 "
              "%, CIFAR-100); reruns by others land 0.1-0.5 points below these tables, so a "
              "study a few tenths below is in line with them.")
PAIRS = (("resnet56", "resnet20"), ("resnet110", "resnet32"), ("resnet32x4", "resnet8x4"),
         ("wrn_40_2", "wrn_16_2"), ("vgg13", "vgg8"))
#: Row -> (top-1 per pair, in the order of ``PAIRS``; source key).
TABLE: dict[str, tuple[tuple[float, float, float, float, float], str]] = {
    "teacher": ((72.34, 74.31, 79.42, 75.61, 74.64), "1"),
    "nds": ((69.06, 71.14, 72.50, 73.26, 70.36), "1"),
    "kd": ((70.66, 73.08, 73.33, 74.92, 72.98), "1"),
    "fitnet": ((69.21, 71.06, 73.50, 73.58, 71.02), "1"),
    "at": ((70.55, 72.31, 73.44, 74.08, 71.43), "1"),
    "crd": ((71.16, 73.48, 75.51, 75.48, 73.94), "1"),
    "dkd": ((71.97, 74.11, 76.32, 76.23, 74.68), "2"),
    "kd+ls": ((71.43, 74.17, 76.62, 76.11, 74.36), "3"),
    "dkd+ls": ((72.32, 74.29, 77.01, 76.39, 74.81), "3"),
}


@dataclass(frozen=True)
class PublishedTop1:
    """One published value: top-1 %, the row it comes from and its source."""

    value: float
    row: str
    source: str

    def describe(self) -> str:
        return f"{self.value:.2f} ({self.row}; {SOURCES[self.source]})"


def _standardized(study: Study) -> bool:
    if isinstance(study.method, DKD):
        return study.method.logit_standardization
    return study.loss.logit_standardization


def table_row(study: Study, population: str) -> str | None:
    """The table's row for a population of the study (``teacher``, ``nds``, or ``ds``: the
    study's method); None when the table has none."""
    if population != "ds":
        return population
    method = study.method.name
    if method in ("kd", "dkd") and _standardized(study):
        return f"{method}+ls"
    return method if method in TABLE else None


def published_top1(study: Study, population: str) -> PublishedTop1 | None:
    """The published top-1 for the study's design and population, or None when the design is
    not the benchmark's (another dataset, pair or method)."""
    if study.dataset.name != "cifar100":
        return None
    pair = (study.teacher.arch, study.student.arch)
    row = table_row(study, population)
    if pair not in PAIRS or row is None or row not in TABLE:
        return None
    values, source = TABLE[row]
    return PublishedTop1(values[PAIRS.index(pair)], row, source)
