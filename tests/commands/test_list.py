"""``kdspec list``: built-in, torchvision and timm architectures; datasets with how to get them."""

from __future__ import annotations

import pytest

from kdspec.cli import main


def test_list_shows_every_source(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ")
            and len(line.split()) > 2}
    assert "built-in" in rows["resnet56"] and "built-in" in rows["tiny_imagenet"]
    assert "apt-get install dataset-fashion-mnist" in rows["fashion_mnist"]
    assert "torchvision: " in out and "vit_b_16" in out and "mobilenet_v3_small" in out
    assert "text" in rows["hatexplain"] and "post_id_divisions.json" in rows["hatexplain"]
    assert "as hf:NAME" in out and "hf:distilbert-base-uncased" in out
    timm = pytest.importorskip("timm")
    assert f"timm: {len(timm.list_models())} models, as timm:NAME:" in out
    assert "(--all lists them)" in out


def test_list_kinds_and_all(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "datasets"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("datasets:") and "architectures:" not in out
    pytest.importorskip("timm")
    assert main(["list", "architectures", "--all"]) == 0
    out = capsys.readouterr().out
    assert "tiny_vit_5m_224" in out and "vit_base_patch16_224" in out
    assert "--all lists them" not in out


def test_list_shows_the_benchmark_architectures_with_their_measured_cost(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "architectures"]) == 0
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()
            if line.startswith("  ") and len(line.split()) > 4}
    for arch in ("resnet8x4", "resnet32x4", "wrn_40_2", "wrn_16_2", "vgg8", "vgg13"):
        assert rows[arch][1] == "built-in"
    assert rows["resnet32x4"][2:4] == ["7.43", "2166.1"]


def test_list_methods_shows_their_keys_defaults_and_papers(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "methods"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("methods") and "architectures:" not in out
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ")}
    kinds = {name: rows[name].split()[1] for name in rows if name != "name"}
    assert kinds == {"kd": "method", "dkd": "method", "dist": "method", "fitnet": "method",
                     "at": "method", "crd": "method", "label_smoothing": "control",
                     "self": "control", "random_teacher": "control"}
    assert "alpha = 1, beta = 8, warmup = 20" in rows["dkd"] and "CVPR 2022" in rows["dkd"]
    assert "nce_k = 16384, nce_t = 0.07, nce_m = 0.5" in rows["crd"]
    assert "epsilon = matched" in rows["label_smoothing"]
    assert "distill's loss" in rows["self"] and "ICML 2018" in rows["self"]
