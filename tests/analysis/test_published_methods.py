"""The published CIFAR-100 benchmark table as data: the same numbers as the table in
docs/reproduction.md, and shown only where a study's design matches."""

from __future__ import annotations

from pathlib import Path

import pytest

from kdspec.analysis.published_methods import PAIRS, SOURCES, TABLE, published_top1
from kdspec.distillation_methods import DIST, DKD, DeclaredMethod, LabelSmoothing
from kdspec.plan import KD_METHOD, KDLoss, Study
from tests.factories import dataset_spec, tiny_plan

DOC = Path(__file__).resolve().parents[2] / "docs" / "reproduction.md"
#: The doc's row names -> the table's rows.
DOC_ROWS = {"teacher": "teacher", "student alone": "nds", "KD": "kd", "FitNet": "fitnet",
            "AT": "at", "CRD": "crd", "DKD": "dkd", "KD + logit standardization": "kd+ls",
            "DKD + logit standardization": "dkd+ls"}


def _doc_table() -> dict[str, tuple[tuple[float, ...], str]]:
    section = DOC.read_text().split("## KD methods on the standard CIFAR-100 benchmark")[1]
    out = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) != 7:
            continue
        name = cells[0].split(" (")[0]
        if name in DOC_ROWS:
            out[DOC_ROWS[name]] = (tuple(float(v) for v in cells[1:6]), cells[6].strip("[]"))
    return out


def test_the_data_is_the_documented_table() -> None:
    assert _doc_table() == TABLE
    header = next(line for line in DOC.read_text().splitlines()
                  if line.startswith("| method | resnet56 -> resnet20"))
    assert [tuple(c.strip().split(" -> ")) for c in header.strip("|").split("|")[1:6]] == \
        list(PAIRS)
    assert set(SOURCES) == {source for _, source in TABLE.values()}


def _study(dataset: str = "cifar100", teacher: str = "resnet56", student: str = "resnet20",
           method: DeclaredMethod = KD_METHOD) -> Study:
    return tiny_plan(dataset=dataset_spec(dataset), teacher_arch=teacher, student_arch=student,
                     method=method).studies[0]


@pytest.mark.parametrize(("teacher", "student", "value"),
                         [("resnet56", "resnet20", 70.66), ("resnet110", "resnet32", 73.08),
                          ("resnet32x4", "resnet8x4", 73.33), ("wrn_40_2", "wrn_16_2", 74.92),
                          ("vgg13", "vgg8", 72.98)])
def test_kd_on_each_pair(teacher: str, student: str, value: float) -> None:
    found = published_top1(_study(teacher=teacher, student=student), "ds")
    assert found is not None and found.value == value and found.source == "1"


def test_rows_by_method_and_logit_standardization() -> None:
    dkd = published_top1(_study(method=DKD()), "ds")
    assert dkd is not None and (dkd.value, dkd.row, dkd.source) == (71.97, "dkd", "2")
    standardized = published_top1(_study(method=DKD(logit_standardization=True)), "ds")
    assert standardized is not None and standardized.value == 72.32
    loss = KDLoss(hard_weight=0.1, soft_weight=0.9, convention="test",
                  logit_standardization=True)
    kd = published_top1(_study().model_copy(update={"loss": loss}), "ds")
    assert kd is not None and (kd.value, kd.row, kd.source) == (71.43, "kd+ls", "3")
    teacher = published_top1(_study(), "teacher")
    assert teacher is not None and teacher.value == 72.34
    assert "RepDistiller" in teacher.describe()


def test_no_number_where_the_design_is_not_the_benchmark_s() -> None:
    assert published_top1(_study(method=DIST()), "ds") is None
    assert published_top1(_study(method=LabelSmoothing()), "ds") is None
    assert published_top1(_study(dataset="cifar10"), "ds") is None
    assert published_top1(_study(teacher="resnet56", student="resnet32"), "ds") is None
