"""The synthetic CIFAR-shaped dataset: deterministic, balanced, CIFAR's shapes, learnable but
not trivial; specs name it like any generated dataset."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kdspec.catalogue.plan_checks import plan_problems
from kdspec.dsl import compile_text
from kdspec.errors import SpecError
from kdspec.runtime.data import load_dataset
from kdspec.runtime.data.synthetic import class_templates, generate_split

SPEC = """
study bench {
  dataset synthetic { generated_train = 1000  generated_test = 500 }
  teacher resnet20 { epochs = 1  batch_size = 128  lr = 0.1 }
  student lenet5 { epochs = 1  batch_size = 128  lr = 0.01 }
  distill { temperatures = [4]  loss = 0.2 * hard + 0.8 * soft }
  seeds = 2
}
"""


def test_the_same_sizes_give_the_same_bytes_and_splits_differ() -> None:
    templates = class_templates()
    a, labels_a = generate_split(300, 0, templates)
    b, labels_b = generate_split(300, 0, templates)
    test, _ = generate_split(300, 1, templates)
    assert a.dtype == np.uint8 and a.shape == (300, 3, 32, 32)
    assert np.array_equal(a, b) and np.array_equal(labels_a, labels_b)
    assert not np.array_equal(a, test)
    assert np.bincount(labels_a, minlength=10).tolist() == [30] * 10  # balanced


def test_learnable_but_not_trivial() -> None:
    """The nearest class template on raw pixels (the generator's own patterns) is far above
    chance (10 %) and far below perfect: mixing, shifts and noise leave a model work to do."""
    templates = class_templates()
    images, labels = generate_split(1000, 1, templates)
    pixels = images.reshape(1000, -1).astype(np.float32) / 255.0
    distance = ((pixels[:, None, :] - templates.reshape(10, -1)[None]) ** 2).sum(-1)
    accuracy = float((distance.argmin(1) == labels).mean())
    assert 0.4 < accuracy < 0.9, accuracy


def test_a_spec_names_it_and_the_runtime_loads_it() -> None:
    plan = compile_text(SPEC)
    data = plan.studies[0].dataset
    assert (data.num_classes, data.channels, data.image_size) == (10, 3, 32)
    assert (data.generated_train_size, data.generated_test_size) == (1000, 500)
    assert data.generated_combinations is None and data.augment == "crop_flip"
    assert plan_problems(plan) == []
    loaded = load_dataset(data, device=torch.device("cpu"))
    assert (loaded.train.num_samples, loaded.test.num_samples) == (1000, 500)
    batch = next(loaded.train.epoch(seed=0, epoch=0, batch_size=64))
    assert batch.inputs.shape == (64, 3, 32, 32)


def test_defaults_are_cifar10s_sizes_and_combinations_are_refused() -> None:
    plan = compile_text(SPEC.replace("generated_train = 1000  generated_test = 500", ""))
    data = plan.studies[0].dataset
    assert (data.generated_train_size, data.generated_test_size) == (50_000, 10_000)
    with pytest.raises(SpecError) as caught:
        compile_text(SPEC.replace("generated_test = 500", "generated_test = 500  "
                                  "combinations = balanced"))
    assert [d.message for d in caught.value.diagnostics] == [
        "synthetic has no feature combinations"]
