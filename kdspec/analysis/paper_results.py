"""The numbers the paper reports, as data: what a study's claims are powered against.

Mohammadshahi & Ioannou, "What is Left After Distillation? How Knowledge Transfer Impacts
Fairness and Bias", TMLR 2025 (arXiv 2410.08407). Table 2 gives accuracy, EOD and DPD (all in
%) of the teacher, the NDS and the DS at T = 1..10 for two studies; a study of kdspec matches
one when its dataset, teacher and student architectures and sensitive attribute are the
paper's. Only mean values are published (DS sds 0.00-0.18), so the paper gives effect sizes
but not the seed-to-seed spread: power uses the study's own spread.
"""

from __future__ import annotations

from dataclasses import dataclass

from kdspec.plan import FairnessMetric

PAPER = ("Mohammadshahi & Ioannou, What is Left After Distillation? How Knowledge Transfer "
         "Impacts Fairness and Bias, TMLR 2025 (arXiv 2410.08407)")


@dataclass(frozen=True)
class PaperFairness:
    """One column of the paper's Table 2: values in %, DS per temperature."""

    dataset: str
    teacher: str
    student: str
    attribute: str
    nds: dict[FairnessMetric, float]
    distilled: dict[float, dict[FairnessMetric, float]]

    def ds_mean(self, metric: FairnessMetric, temperatures: tuple[float, ...]) -> float | None:
        """Mean DS value (%) over the temperatures both the paper and the study have."""
        shared = [t for t in temperatures if t in self.distilled]
        if not shared:
            return None
        return sum(self.distilled[t][metric] for t in shared) / len(shared)

    def slope(self, metric: FairnessMetric, temperatures: tuple[float, ...]) -> float | None:
        """Least-squares slope (% per unit of T) of the paper's DS values over the shared T."""
        shared = [t for t in temperatures if t in self.distilled]
        if len(shared) < 2:
            return None
        mean_t = sum(shared) / len(shared)
        values = [self.distilled[t][metric] for t in shared]
        mean_v = sum(values) / len(values)
        num = sum((t - mean_t) * (v - mean_v) for t, v in zip(shared, values, strict=True))
        return num / sum((t - mean_t) ** 2 for t in shared)


def _ds(rows: dict[float, tuple[float, float]]) -> dict[float, dict[FairnessMetric, float]]:
    return {t: {"eod": eod, "dpd": dpd} for t, (eod, dpd) in rows.items()}


TABLE_2 = (
    PaperFairness(
        dataset="trifeature", teacher="resnet20", student="lenet5", attribute="color",
        nds={"eod": 2.81, "dpd": 4.12},
        distilled=_ds({1: (1.67, 3.75), 2: (1.60, 3.56), 3: (1.38, 3.52), 4: (1.32, 3.48),
                       5: (1.25, 3.41), 6: (1.27, 3.48), 7: (1.21, 3.37), 8: (1.15, 3.29),
                       9: (1.08, 3.22), 10: (1.01, 3.10)})),
    PaperFairness(
        dataset="celeba", teacher="resnet50", student="resnet18", attribute="Young",
        nds={"eod": 6.11, "dpd": 10.60},
        distilled=_ds({1: (6.02, 9.97), 2: (5.67, 9.75), 3: (5.45, 9.63), 4: (5.36, 9.38),
                       5: (5.39, 9.30), 6: (5.30, 9.38), 7: (5.26, 9.17), 8: (5.22, 9.05),
                       9: (5.14, 9.01), 10: (4.98, 8.86)})),
)


def paper_fairness(dataset: str, teacher: str, student: str, attribute: str
                   ) -> PaperFairness | None:
    """The paper's Table 2 column for this design, if the paper has one."""
    for column in TABLE_2:
        if (column.dataset, column.teacher, column.student, column.attribute) == (
                dataset, teacher, student, attribute):
            return column
    return None


@dataclass(frozen=True)
class PaperIndividualFairness:
    """One column of the paper's Table 4 (individual fairness, lower is fairer; as published in
    the authors' summary of the paper, which does not state f, d or the pairs)."""

    dataset: str
    teacher_arch: str
    student_arch: str
    teacher: float
    nds: float
    distilled: dict[float, float]

    def slope(self, temperatures: tuple[float, ...]) -> float | None:
        """Least-squares slope per unit of T of the paper's DS values over the shared T."""
        shared = [t for t in temperatures if t in self.distilled]
        if len(shared) < 2:
            return None
        mean_t = sum(shared) / len(shared)
        values = [self.distilled[t] for t in shared]
        mean_v = sum(values) / len(values)
        num = sum((t - mean_t) * (v - mean_v) for t, v in zip(shared, values, strict=True))
        return num / sum((t - mean_t) ** 2 for t in shared)


def _table4(values: tuple[float, ...]) -> dict[float, float]:
    return {float(t): v for t, v in zip(range(1, 11), values, strict=True)}


TABLE_4 = (
    PaperIndividualFairness(
        dataset="celeba", teacher_arch="resnet50", student_arch="resnet18", teacher=0.0407,
        nds=0.1240, distilled=_table4((0.1130, 0.1040, 0.0908, 0.0906, 0.0886, 0.0799, 0.0753,
                                       0.0712, 0.0701, 0.0697))),
    PaperIndividualFairness(
        dataset="trifeature", teacher_arch="resnet20", student_arch="lenet5", teacher=0.016,
        nds=0.0462, distilled=_table4((0.0422, 0.0407, 0.0393, 0.0387, 0.0384, 0.0377, 0.0356,
                                       0.0349, 0.0341, 0.0338))),
    PaperIndividualFairness(
        dataset="hatexplain", teacher_arch="hf:bert-base-uncased",
        student_arch="hf:distilbert-base-uncased", teacher=0.0320, nds=0.1078,
        distilled=_table4((0.0994, 0.0985, 0.0927, 0.0882, 0.0823, 0.0768, 0.0727, 0.0689,
                           0.0681, 0.0654))),
)


def paper_individual_fairness(dataset: str, teacher: str, student: str
                              ) -> PaperIndividualFairness | None:
    """The paper's Table 4 column for this design, if the paper has one."""
    for column in TABLE_4:
        if (column.dataset, column.teacher_arch, column.student_arch) == (dataset, teacher,
                                                                          student):
            return column
    return None
