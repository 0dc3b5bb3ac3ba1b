"""Every study in specs/: its architectures build for its dataset, and offline data loads."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from kdspec.dsl import load_plan
from kdspec.plan import Study
from kdspec.runtime.data import check_dataset_available, load_dataset
from kdspec.runtime.data.locations import DEBIAN_FASHION_MNIST
from kdspec.runtime.models import build_model

SPECS = sorted((Path(__file__).parents[2] / "specs").glob("*.kdspec"))
#: Datasets that need no user files (generated, bundled, or from the Debian package).
OFFLINE = ("trifeature", "digits", "fashion_mnist")


def studies() -> list[tuple[str, Study]]:
    return [(f"{path.name}:{study.name}", study)
            for path in SPECS for study in load_plan(path).studies]


@pytest.mark.parametrize(("label", "study"), studies(), ids=lambda v: v if isinstance(v, str)
                         else "")
def test_spec_architectures_build_for_the_spec_dataset(label: str, study: Study) -> None:
    data = study.dataset
    if data.is_text:  # hub models need their configuration from the Hugging Face hub
        pytest.skip("hf: hub models are not here (nothing downloads); tiny local ones are "
                    "built in tests/runtime/test_huggingface_models.py")
    for arch in (study.teacher.arch, study.student.arch):
        with torch.device("meta"):
            model = build_model(arch, in_channels=data.channels, image_size=data.image_size,
                                num_classes=data.num_classes)
        logits = model(torch.empty(2, data.channels, data.image_size, data.image_size,
                                   device="meta"))
        assert tuple(logits.shape) == (2, data.num_classes), label


@pytest.mark.integration
@pytest.mark.parametrize(("label", "study"),
                         [(label, s) for label, s in studies() if s.dataset.name in OFFLINE
                          and s.dataset.image_size <= 32],
                         ids=lambda v: v if isinstance(v, str) else "")
def test_offline_spec_datasets_load(label: str, study: Study, tmp_path: Path) -> None:
    if study.dataset.name == "fashion_mnist" and not DEBIAN_FASHION_MNIST.is_dir():
        pytest.skip("Debian package dataset-fashion-mnist is not installed")
    check_dataset_available(study.dataset, cache_dir=tmp_path)
    data = load_dataset(study.dataset, device=torch.device("cpu"), cache_dir=tmp_path)
    assert data.num_classes == study.dataset.num_classes
    assert data.train.num_samples == (study.dataset.train_subset
                                      or study.dataset.generated_train_size
                                      or data.train.num_samples)
    batch = next(data.train.epoch(seed=0, epoch=0, batch_size=64))
    assert batch.inputs.shape[1:] == (study.dataset.channels, study.dataset.image_size,
                                      study.dataset.image_size)
    if study.fairness is not None:
        assert set(study.fairness.sensitive) <= set(data.test.attributes)
