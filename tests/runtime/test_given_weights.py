"""Teachers (and students) that start from weights someone already has: torchvision's
pretrained weights (a local file stands in for the torch hub cache: nothing is downloaded), a
checkpoint file (its hash in the run id) and the final.pt of a run already in the store. One
spec with all three trains its students offline and reports them like any other."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from kdspec.cli import main
from kdspec.dsl import compile_text
from kdspec.runtime.models import build_model
from kdspec.tracking import schema
from tests.runtime.run_helpers import fresh_store, nested_runs

# The given weights are random ones of the right shapes (what is tested is that they are
# loaded, not what they know): the teachers accept chance.
STUDY = """
study {name} {{
  dataset digits {{ train_subset = 256  test_subset = 96 }}
  teacher {teacher} {{ {given} {recipe}  accept_chance = true }}
  student lenet5 {{ recipe = r }}
  distill {{ temperatures = [2]  loss = 0.2 * hard + 0.8 * soft }}
  seeds = 2
}}
"""
RECIPE = "recipe r { epochs = 1  batch_size = 64  lr = 0.05 }\n"


def _torchvision_cache(home: Path) -> None:
    """resnet18's IMAGENET1K_V1 file where torch.hub looks (random weights of the right
    shapes: what matters is that they are loaded, not what they know)."""
    checkpoints = home / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    from torchvision.models import resnet18

    torch.save(resnet18(weights=None).state_dict(), checkpoints / "resnet18-f37072fd.pth")


def test_a_checkpoint_teacher_has_its_hash_in_the_run_id(tmp_path: Path) -> None:
    path = tmp_path / "teacher.pt"
    torch.save(build_model("lenet5", in_channels=1, image_size=8, num_classes=10).state_dict(),
               path)
    text = RECIPE + STUDY.format(name="ckpt", teacher="lenet5",
                                 given='checkpoint = "teacher.pt"', recipe="")
    spec = tmp_path / "s.kdspec"
    first = compile_text(text, str(spec))
    teacher = first.runs_of(first.studies[0], "teacher")[0]
    assert teacher.recipe.epochs == 0 and teacher.init is not None
    assert teacher.init.kind == "checkpoint" and teacher.init.name == str(path)
    path.write_bytes(path.read_bytes() + b"\0")  # another file under the same name
    second = compile_text(text, str(spec))
    assert second.runs_of(second.studies[0], "teacher")[0].id != teacher.id


def test_bad_given_weights_are_diagnosed(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "bad.kdspec"
    spec.write_text(RECIPE + STUDY.format(name="bad", teacher="resnet18",
                                          given="pretrained = IMAGENET1K_V9", recipe=""))
    assert main(["check", str(spec)]) == 2
    assert "torchvision has no weights 'IMAGENET1K_V9' for resnet18" in capsys.readouterr().err
    spec.write_text(RECIPE + STUDY.format(name="bad", teacher="lenet5",
                                          given="pretrained = DEFAULT", recipe=""))
    assert main(["check", str(spec)]) == 2
    assert "lenet5 has no pretrained weights" in capsys.readouterr().err
    spec.write_text(RECIPE + STUDY.format(name="bad", teacher="lenet5",
                                          given='checkpoint = "missing.pt"', recipe=""))
    assert main(["check", str(spec)]) == 2
    assert "cannot read checkpoint" in capsys.readouterr().err
    spec.write_text(RECIPE + STUDY.format(name="bad", teacher="lenet5", given="",
                                          recipe="recipe = r  epochs = 0"))
    assert main(["check", str(spec)]) == 2
    assert "epochs = 0 means the model is not trained" in capsys.readouterr().err


@pytest.mark.integration
def test_pretrained_checkpoint_and_earlier_run_teachers_train_their_students_offline(
        tmp_path: Path, blank_store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    _torchvision_cache(tmp_path / "torch")
    uri = fresh_store(blank_store, tmp_path)
    logs = ["--tracking-uri", uri, "--quiet", "--log-dir", str(tmp_path / "logs")]
    # An earlier study whose teacher the third one takes over.
    earlier = tmp_path / "earlier.kdspec"
    earlier.write_text(RECIPE + STUDY.format(name="earlier", teacher="lenet5", given="",
                                             recipe="recipe = r"))
    assert main(["run", str(earlier), "--only", "teacher", *logs]) == 0
    from_run = next(r.info.run_id for r in nested_runs(uri)
                    if r.data.tags[schema.TAG_ROLE] == "teacher")
    torch.save(build_model("lenet5", in_channels=1, image_size=8, num_classes=10).state_dict(),
               tmp_path / "teacher.pt")
    spec = tmp_path / "given.kdspec"
    spec.write_text(RECIPE
                    + STUDY.format(name="pretrained", teacher="torchvision:resnet18",
                                   given="pretrained = IMAGENET1K_V1", recipe="")
                    + STUDY.format(name="checkpoint", teacher="lenet5",
                                   given='checkpoint = "teacher.pt"',
                                   recipe="recipe = r")  # fine-tuned from the file
                    + STUDY.format(name="earlier_run", teacher="lenet5",
                                   given=f'from_run = "{from_run}"', recipe=""))
    assert main(["run", str(spec), *logs]) == 0
    log = "".join(p.read_text() for p in (tmp_path / "logs").glob("*.log"))
    assert "torchvision weights resnet18:IMAGENET1K_V1" in log
    assert "the seed's values kept where the weights do not fit" in log  # stem and head
    assert "checkpoint weights" in log and f"run weights {from_run}" in log
    plan = compile_text(spec.read_text(), str(spec))
    by_id = {r.data.tags[schema.TAG_RUN_ID]: r for r in nested_runs(uri)
             if r.info.status == "FINISHED"}
    for study in plan.studies:
        assert set(study.run_ids) <= set(by_id)  # every run finished (the NDS: shared)
        teachers = [by_id[r.id] for r in plan.runs_of(study, "teacher")]
        epochs = {r.data.params["epochs"] for r in teachers}
        assert epochs == ({"1"} if study.name == "checkpoint" else {"0"})
        assert all(schema.METRIC_TEST_ACC in r.data.metrics for r in teachers)
    assert main(["report", str(spec), "--tracking-uri", uri, "--out",
                 str(tmp_path / "reports"), "--no-log", "--quiet"]) == 0
    assert (tmp_path / "reports" / "pretrained" / "report.md").exists()
