"""Given weights either fit or stop the run with what did not match: the wrappers training
scripts save (DataParallel/DDP and torch.compile prefixes, a state dict inside a dict), a whole
pickled model refused, partial loading only when asked, published weights that must set most
of the model. Real files and real models, no training."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from kdspec.errors import DataError
from kdspec.plan import ModelInit
from kdspec.runtime.given_weights import (
    compare,
    fit_weights,
    read_weight_file,
    strip_wrapper_prefixes,
)
from kdspec.runtime.models import build_model


def _lenet(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model("lenet5", in_channels=1, image_size=8, num_classes=10)


def _checkpoint(path: Path, *, partial: bool = False) -> ModelInit:
    return ModelInit(kind="checkpoint", name=str(path), digest="d", partial=partial)


@pytest.mark.parametrize("wrap", ["plain", "module.", "_orig_mod.", "_orig_mod.module.",
                                  "state_dict", "model", "model_state_dict"])
def test_the_usual_wrappers_load_completely(wrap: str, tmp_path: Path) -> None:
    """A DataParallel/DDP model's keys start with module., a compiled one's with _orig_mod.;
    training scripts save {"state_dict": ...}, {"model": ...}: all of them load every tensor."""
    trained = _lenet(seed=1).state_dict()
    if wrap.endswith("."):
        saved: object = {wrap + k: v for k, v in trained.items()}
    elif wrap == "plain":
        saved = trained
    else:
        saved = {wrap: trained, "epoch": torch.tensor(7)}
    path = tmp_path / "teacher.pt"
    torch.save(saved, path)
    model = _lenet(seed=0)
    fit = fit_weights(model, read_weight_file(path), _checkpoint(path), arch="lenet5")
    assert fit.complete and len(fit.loaded) == len(trained)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in trained.items())


def test_a_whole_pickled_model_is_refused_with_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    torch.save(_lenet(), path)  # torch.save(model): classes, not just tensors
    with pytest.raises(DataError) as err:
        read_weight_file(path)
    message = str(err.value)
    assert "holds a whole pickled model" in message and "LeNet5" in message
    assert "torch.save(m.state_dict()" in message


def test_a_file_without_a_state_dict_is_named(tmp_path: Path) -> None:
    path = tmp_path / "odd.pt"
    torch.save({"weights": [1, 2], "epoch": 3}, path)
    with pytest.raises(DataError, match="holds no state dict"):
        read_weight_file(path)


def test_weights_of_another_architecture_stop_the_run_naming_what_did_not_match(
        tmp_path: Path) -> None:
    other = build_model("resnet20", in_channels=1, image_size=8, num_classes=10).state_dict()
    model = _lenet()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(DataError) as err:
        fit_weights(model, other, _checkpoint(tmp_path / "x.pt"), arch="lenet5")
    assert "no tensor fits lenet5" in str(err.value) and "missing (" in str(err.value)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())  # untouched


def test_a_head_of_another_size_needs_partial(tmp_path: Path) -> None:
    """A checkpoint of a 4-class model given to a 10-class one: refused, unless the spec says
    partial = true; then the head keeps the seed's values and the rest is loaded."""
    four = build_model("lenet5", in_channels=1, image_size=8, num_classes=4).state_dict()
    model = _lenet()
    with pytest.raises(DataError) as err:
        fit_weights(model, four, _checkpoint(tmp_path / "x.pt"), arch="lenet5")
    assert "of another shape" in str(err.value) and "partial = true" in str(err.value)
    head = [k for k in model.state_dict() if model.state_dict()[k].shape != four[k].shape]
    kept = {k: model.state_dict()[k].clone() for k in head}
    fit = fit_weights(model, four, _checkpoint(tmp_path / "x.pt", partial=True), arch="lenet5")
    assert not fit.complete and len(fit.reshaped) == len(head) > 0
    assert all(torch.equal(model.state_dict()[k], v) for k, v in kept.items())
    body = [k for k in four if k not in head]
    assert all(torch.equal(model.state_dict()[k], four[k]) for k in body)


def test_published_weights_may_miss_the_head_but_not_most_of_the_model() -> None:
    pretrained = ModelInit(kind="torchvision", name="resnet18:IMAGENET1K_V1")
    model = build_model("resnet18", in_channels=3, image_size=32, num_classes=10)
    imagenet = build_model("resnet18", in_channels=3, image_size=32,
                           num_classes=1000).state_dict()
    fit = fit_weights(model, imagenet, pretrained, arch="resnet18")
    assert [name.split(" ")[0] for name in fit.reshaped] == ["fc.weight", "fc.bias"]
    assert fit.loaded_share > 0.99
    sliver = {k: v for k, v in imagenet.items() if k.startswith("conv1")}
    with pytest.raises(DataError, match="set only 0% of resnet18's values"):
        fit_weights(model, sliver, pretrained, arch="resnet18")


def test_prefixes_are_stripped_only_when_every_key_has_them() -> None:
    state = {"module.a": torch.zeros(1), "b": torch.zeros(1)}
    assert strip_wrapper_prefixes(state) == state
    fit = compare(torch.nn.Linear(2, 2), {"weight": torch.zeros(2, 2), "extra": torch.zeros(1)})
    assert fit.missing == ("bias",) and fit.unexpected == ("extra",)
