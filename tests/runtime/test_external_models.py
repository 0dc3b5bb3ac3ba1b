"""torchvision:NAME and timm:NAME models: built with the study's classes, channels and size,
counted on PyTorch's meta device (nothing allocated, nothing downloaded)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from kdspec.catalogue.registry import ArchitectureError, architecture, probe_external
from kdspec.cli import main
from kdspec.runtime.models import build_model

ROOT = Path(__file__).resolve().parents[2]


def meta_params_millions(name: str, **shape: int) -> float:
    with torch.device("meta"):
        model = build_model(name, **shape)
    return sum(p.numel() for p in model.parameters()) / 1e6


@pytest.mark.parametrize(("name", "published"), [
    ("timm:vit_base_patch16_224", 86.6),   # ViT-B/16 (Dosovitskiy et al.; timm's model card)
    ("timm:tiny_vit_5m_224", 5.4),         # TinyViT-5M (Wu et al. 2022)
    ("torchvision:resnet50", 25.6),        # torchvision's documented figures
    ("torchvision:resnet18", 11.7),
])
def test_parameter_counts_match_the_published_figures(name: str, published: float) -> None:
    if name.startswith("timm:"):
        pytest.importorskip("timm")
    counted = meta_params_millions(name, in_channels=3, image_size=224, num_classes=1000)
    assert counted == pytest.approx(published, abs=0.05)


def test_the_study_shape_reaches_the_model() -> None:
    pytest.importorskip("timm")
    model = build_model("timm:tiny_vit_5m_224", in_channels=1, image_size=64, num_classes=10)
    assert model(torch.zeros(2, 1, 64, 64)).shape == (2, 10)
    tv = build_model("torchvision:mobilenet_v3_small", in_channels=1, image_size=32,
                     num_classes=7)
    assert tv(torch.zeros(2, 1, 32, 32)).shape == (2, 7)
    with torch.device("meta"):
        vit = build_model("torchvision:vit_b_16", in_channels=3, image_size=64, num_classes=5)
        assert vit(torch.empty(1, 3, 64, 64)).shape == (1, 5)


def test_probe_measures_cost_and_refuses_sizes_a_model_cannot_take() -> None:
    probe = probe_external("torchvision:resnet18", in_channels=3, image_size=224,
                           num_classes=1000)
    assert probe.problem is None
    assert probe.params_millions == pytest.approx(11.69, abs=0.01)
    assert probe.forward_mflops == pytest.approx(3638, rel=0.01)  # 2 x 1.82 G multiply-adds
    small = probe_external("torchvision:vit_b_16", in_channels=3, image_size=40,
                           num_classes=10)
    assert small.problem is not None and "cannot take 3x40x40 input" in small.problem


def test_unknown_external_names_get_suggestions() -> None:
    with pytest.raises(ArchitectureError) as raised:
        architecture("torchvision:resnet181")
    assert "torchvision has no classification model 'resnet181'" in raised.value.message
    assert "did you mean 'resnet18'?" in raised.value.help
    pytest.importorskip("timm")
    with pytest.raises(ArchitectureError) as raised:
        architecture("timm:tiny_vit_5m_22")
    assert "did you mean 'tiny_vit_5m_224'?" in raised.value.help


def test_input_size_error_points_at_the_model_in_the_spec(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "vit.kdspec"
    spec.write_text(textwrap.dedent("""
        recipe r { epochs = 1  batch_size = 8  lr = 0.1 }
        study s {
          dataset imagenet { root = "/nowhere"  image_size = 40 }
          teacher torchvision:vit_b_16 { recipe = r }
          student resnet18 { recipe = r }
          distill { temperatures = [2] }
        }
        """))
    assert main(["check", str(spec)]) == 2
    err = capsys.readouterr().err
    assert f"{spec}:5:11: error: torchvision:vit_b_16 cannot take 3x40x40 input" in err
    assert "^^^^^^^^^^^^^^^^^^^^" in err


def test_without_timm_the_vit_spec_says_how_to_install_it(tmp_path: Path) -> None:
    hidden = tmp_path / "hide" / "timm"
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text("raise ImportError('timm is hidden for this test')\n")
    env = {**os.environ, "PYTHONPATH": f"{hidden.parent}{os.pathsep}{ROOT}"}
    done = subprocess.run([sys.executable, "-m", "kdspec.cli", "check",
                           str(ROOT / "specs" / "imagenet_vit.kdspec")],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 2, done.stderr
    assert "'timm:vit_base_patch16_224' is a timm model and timm is not installed" in done.stderr
    assert "pip install 'kdspec[timm]'" in done.stderr
    help_line = next(line for line in done.stderr.splitlines() if "kdspec[timm]" in line)
    assert help_line.strip().removeprefix("= ") in (ROOT / "docs" / "plugins.md").read_text()
    assert "Traceback" not in done.stderr
