"""Plugin registries: entries from installed distributions' entry points, found by the real
``importlib.metadata`` scan of ``sys.path`` (each test installs a distribution's metadata and
module into a temporary folder on the path)."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from kdspec.catalogue import registry as registry_module
from kdspec.catalogue.registry import ARCHITECTURE_GROUP, DATASET_GROUP, architecture, registry
from kdspec.cli import main
from kdspec.distillation_methods import FitNet
from kdspec.dsl import load_plan

QUICKSTART = Path(__file__).resolve().parents[1] / "specs" / "quickstart.kdspec"

GOOD_MODULE = '''
from kdspec.plugin import ArchFacts, ArchitectureEntry, DatasetEntry, DatasetFacts

def architectures():
    return [ArchitectureEntry(ArchFacts("wavelet_net", "test", 0.1, 2.0, 32, 8),
                              build="{module}:build")]

def datasets():
    return [DatasetEntry(DatasetFacts("spirals", 1, 16, ("in", "out"), 100, 50, "none",
                                      attributes=("arm",)), read="{module}:read")]
'''


def install(site: Path, dist: str, module: str, source: str,
            groups: dict[str, str]) -> None:
    """Write a distribution as pip installs it: its module and a ``.dist-info`` with
    ``METADATA`` and ``entry_points.txt``."""
    (site / f"{module}.py").write_text(textwrap.dedent(source.replace("{module}", module)))
    info = site / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("".join(
        f"[{group}]\n{dist} = {target}\n" for group, target in groups.items()))


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh folder on ``sys.path``; the registry is rebuilt before and after."""
    monkeypatch.syspath_prepend(str(tmp_path))
    registry_module.registry.cache_clear()
    yield tmp_path
    registry_module.registry.cache_clear()


def test_a_plugin_adds_names_with_their_source(site: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    install(site, "good-plugin", "good_plugin_mod", GOOD_MODULE,
            {ARCHITECTURE_GROUP: "good_plugin_mod:architectures",
             DATASET_GROUP: "good_plugin_mod:datasets"})
    found = registry()
    assert found.architectures["wavelet_net"].source == "plugin good-plugin"
    assert found.architectures["wavelet_net"].build == "good_plugin_mod:build"
    assert found.datasets["spirals"].facts.attributes == ("arm",)
    assert found.architectures["resnet20"].source == "built-in"
    assert found.warnings == []
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "wavelet_net" in out and "plugin good-plugin" in out and "spirals" in out


def test_a_plugin_that_fails_to_import_is_one_warning(site: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    install(site, "broken-plugin", "broken_plugin_mod", "import no_such_module_anywhere\n",
            {ARCHITECTURE_GROUP: "broken_plugin_mod:architectures"})
    assert main(["check", str(QUICKSTART)]) == 0
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if "warning" in line]
    assert len(warnings) == 1
    assert "'broken-plugin'" in warnings[0] and "no_such_module_anywhere" in warnings[0]
    assert main(["check", str(QUICKSTART)]) == 0  # once per process, not per command
    assert "warning" not in capsys.readouterr().err


def test_wrong_entries_and_name_clashes_are_warnings(site: Path) -> None:
    install(site, "wrong-plugin", "wrong_plugin_mod", "def architectures():\n    return [42]\n",
            {ARCHITECTURE_GROUP: "wrong_plugin_mod:architectures"})
    install(site, "clash-plugin", "clash_plugin_mod", """
        from kdspec.plugin import ArchFacts, ArchitectureEntry
        def architectures():
            return [ArchitectureEntry(ArchFacts("resnet20", "x", 1.0, 1.0, 32, 8), build="m:f")]
        """, {ARCHITECTURE_GROUP: "clash_plugin_mod:architectures"})
    found = registry()
    assert len(found.warnings) == 2
    assert any("'wrong-plugin'" in w and "not a ArchitectureEntry" in w for w in found.warnings)
    assert any("'resnet20' is already registered (by built-in)" in w for w in found.warnings)
    assert found.architectures["resnet20"].source == "built-in"


def test_did_you_mean_covers_plugin_names(site: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    install(site, "good-plugin", "good_plugin_mod", GOOD_MODULE,
            {ARCHITECTURE_GROUP: "good_plugin_mod:architectures",
             DATASET_GROUP: "good_plugin_mod:datasets"})
    spec = tmp_path / "typo.kdspec"
    spec.write_text(textwrap.dedent("""
        recipe r { epochs = 1  batch_size = 8  lr = 0.1 }
        study s {
          dataset spirls {}
          teacher wavelet_nett { recipe = r }
          student wavelet_net { recipe = r }
          distill { temperatures = [2] }
        }
        """))
    assert main(["check", str(spec)]) == 2
    err = capsys.readouterr().err
    assert "unknown dataset 'spirls'" in err and "did you mean 'spirals'?" in err
    assert "unknown architecture 'wavelet_nett'" in err and "did you mean 'wavelet_net'?" in err
    assert "Traceback" not in err


def test_unknown_names_point_to_torchvision_and_timm() -> None:
    with pytest.raises(registry_module.ArchitectureError) as raised:
        architecture("no_such_net")
    assert "torchvision:NAME / timm:NAME" in raised.value.help


def test_a_plugin_architecture_names_its_own_feature_points(site: Path, tmp_path: Path) -> None:
    install(site, "featured-plugin", "featured_plugin_mod", """
        from kdspec.plugin import ArchFacts, ArchitectureEntry
        def architectures():
            return [ArchitectureEntry(ArchFacts("stage_net", "test", 0.1, 2.0, 32, 8,
                                                feature_points=("stem", "body", "neck"),
                                                classifier="head"), build="m:f")]
        """, {ARCHITECTURE_GROUP: "featured_plugin_mod:architectures"})
    spec = tmp_path / "feature.kdspec"
    spec.write_text(textwrap.dedent("""
        # kdspec check
        recipe r { epochs = 1  batch_size = 8  lr = 0.1 }
        study s {
          dataset digits {}
          teacher resnet20 { recipe = r }
          student stage_net { recipe = r }
          distill { temperatures = [2]  loss = 0.5 * hard + 0.5 * soft  method = fitnet }
          seeds = 2
        }
        """))
    assert load_plan(spec).studies[0].method == FitNet(hint="layer2", guided="body")
