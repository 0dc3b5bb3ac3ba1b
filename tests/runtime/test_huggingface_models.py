"""hf:NAME models: token ids in, logits out, padding ignored; published weights load into the
encoder while the new head keeps its seed; the plan's cost estimate; clear errors offline."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from kdspec.errors import DataError
from kdspec.plan import ModelInit
from kdspec.runtime import checkpoints
from kdspec.runtime.given_weights import fit_weights
from kdspec.runtime.models import build_model
from kdspec.runtime.models.cost import measured_text_flops
from tests.text_fixtures import write_tiny_models

pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_tiny_models(tmp_path_factory.mktemp("hf"))


def test_padding_does_not_change_a_posts_logits(models: tuple[Path, Path]) -> None:
    bert, distil = models
    for folder in (bert, distil):
        torch.manual_seed(0)
        model = build_model(f"hf:{folder}", in_channels=1, image_size=1, num_classes=3).eval()
        short = torch.tensor([[2, 9, 12, 3]])
        padded = torch.tensor([[2, 9, 12, 3, 0, 0, 0, 0]])
        with torch.no_grad():
            torch.testing.assert_close(model(short), model(padded), rtol=1e-5, atol=1e-5)
            assert model(short).shape == (1, 3)


def test_published_weights_load_and_the_new_head_keeps_its_seed(
        models: tuple[Path, Path]) -> None:
    from kdspec.runtime.models.huggingface import pretrained_weights

    bert, _ = models
    weights, revision = pretrained_weights(str(bert), num_classes=3)  # saved with 2 labels
    assert revision == ""  # a folder has no hub commit: its weights' sha256 is in the run id
    assert not any(key.startswith("model.classifier") for key in weights)
    torch.manual_seed(1)
    model = build_model(f"hf:{bert}", in_channels=1, image_size=1, num_classes=3)
    head = model.model.classifier.weight.detach().clone()
    fit = fit_weights(model, weights, ModelInit(kind="huggingface", name=str(bert)),
                      arch=f"hf:{bert}")
    assert len(fit.loaded) == len(weights) and all("classifier" in k for k in fit.missing)
    assert torch.equal(model.model.classifier.weight, head)
    encoder = "model.bert.encoder.layer.0.attention.self.query.weight"
    assert torch.equal(model.state_dict()[encoder], weights[encoder])


def test_the_cost_estimate_by_hand(models: tuple[Path, Path]) -> None:
    bert, distil = models
    d, ff, length = 32, 64, 16
    layer = 4 * d * d + 2 * d * ff  # q, k, v, output projections and the feed-forward pair
    head = d * d + 3 * d  # pooler (BERT) or pre-classifier (DistilBERT), then 3 classes
    attention = 4 * length ** 2 * d  # scores and weighted sum, per layer
    for folder, layers in ((bert, 2), (distil, 1)):
        expected = 2 * layer * layers * length + 2 * head + attention * layers
        assert measured_text_flops(f"hf:{folder}", sequence_length=length,
                                   num_classes=3) == expected


def test_a_model_that_is_nowhere_is_a_clear_error(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError, match="cannot load the configuration of /nowhere/model"):
        build_model("hf:/nowhere/model", in_channels=1, image_size=1, num_classes=3)
    assert measured_text_flops("hf:/nowhere/model", sequence_length=8, num_classes=3) is None


def test_dropout_masks_depend_on_the_run_alone(models: tuple[Path, Path],
                                               tmp_path: Path) -> None:
    """Transformers train with dropout: a distilled student trained in lockstep with others
    equals it trained alone, and a resumed one equals it trained straight through."""
    from kdspec.plan import Recipe
    from kdspec.runtime.data import load_dataset
    from kdspec.runtime.teacher_signal import LiveTeacher
    from kdspec.runtime.training import BatchStream, new_trainee, train_lockstep
    from tests.factories import dataset_spec, tiny_plan
    from tests.text_fixtures import write_hatexplain

    bert, distil = models
    recipe = Recipe(epochs=2, batch_size=16, optimizer="adamw", lr=0.005, weight_decay=0.01)
    plan = tiny_plan(teacher_arch=f"hf:{bert}", student_arch=f"hf:{distil}",
                     temperatures=(2.0, 4.0), seeds=(0,), teacher_recipe=recipe,
                     student_recipe=recipe,
                     dataset=dataset_spec("hatexplain", tokenizer=str(bert), max_length=16,
                                          root=str(write_hatexplain(tmp_path / "data"))))
    study = plan.studies[0]
    data = load_dataset(study.dataset, device=torch.device("cpu"), cache_dir=tmp_path / "c")

    def trainee(run):  # type: ignore[no-untyped-def]
        return new_trainee(run, in_channels=1, image_size=1, num_classes=3,
                           device=torch.device("cpu"))

    teacher = LiveTeacher(trainee(plan.runs_of(study, "teacher")[0]).model)
    first, second = plan.runs_of(study, "distilled")
    together = [trainee(first), trainee(second)]
    assert together[0].stochastic
    train_lockstep(together, BatchStream(data.train, seed=0, batch_size=16),
                   teacher=teacher, epochs=2)
    alone = trainee(first)
    torch.rand(7)  # whatever else the process drew meanwhile
    train_lockstep([alone], BatchStream(data.train, seed=0, batch_size=16),
                   teacher=teacher, epochs=1)
    path = checkpoints.save(checkpoints.resume_state(alone), tmp_path / "last.pt")
    resumed = trainee(first)
    checkpoints.restore_trainee(resumed, checkpoints.load(path))
    train_lockstep([resumed], BatchStream(data.train, seed=0, batch_size=16),
                   teacher=teacher, epochs=2)
    for a, b in zip(together[0].model.state_dict().values(),
                    resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_without_transformers_the_error_names_the_extra(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from kdspec.runtime.models.huggingface import transformers_module

    monkeypatch.setitem(sys.modules, "transformers", None)  # import fails as if not installed
    with pytest.raises(DataError, match=r"pip install 'kdspec\[text\]'"):
        transformers_module()


def test_a_tokenizer_beyond_the_models_vocabulary_is_named(models: tuple[Path, Path]) -> None:
    from kdspec.runtime.models.huggingface import vocabulary_problem

    bert, _ = models
    model = build_model(f"hf:{bert}", in_channels=1, image_size=1, num_classes=3)
    size = model.model.config.vocab_size
    assert vocabulary_problem(model, size - 1, "tok") is None
    problem = vocabulary_problem(model, size + 5, "roberta-base")
    assert problem is not None and f"up to {size + 5}" in problem and "roberta-base" in problem
    assert vocabulary_problem(torch.nn.Linear(2, 2), 10**6, "tok") is None  # not a text model
    assert vocabulary_problem(model, 5, "tok", pad_id=0) is None
    padding = vocabulary_problem(model, 5, "roberta-base", pad_id=1)
    assert padding is not None and "pads posts with id 1" in padding


def test_a_hub_name_loads_from_the_hugging_face_cache_offline_with_its_commit(
        models: tuple[Path, Path], tmp_path: Path) -> None:
    """``hf:ORG/NAME`` read from the local Hugging Face cache (its real layout: refs/main and
    snapshots/<commit>/), with the network off; the commit is what the run records."""
    import os
    import shutil
    import subprocess
    import sys

    bert, _ = models
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--kdspec-test--tiny-bert"
    shutil.copytree(bert, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    script = (
        "from kdspec.runtime.models.huggingface import build_huggingface, pretrained_weights\n"
        "model = build_huggingface('hf:kdspec-test/tiny-bert', num_classes=3)\n"
        "weights, revision = pretrained_weights('kdspec-test/tiny-bert', 3)\n"
        "print(revision, len(weights), type(model).__name__)\n")
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                         text=True, timeout=120, check=True).stdout.split()
    assert out[0] == commit and int(out[1]) > 30 and out[2] == "SequenceClassifier"
