"""HateXplain from the authors' layout: majority labels, posts without one dropped, communities
named by enough annotators, tokenising once, and the errors a broken release gets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from kdspec.catalogue.facts import HATEXPLAIN_CLASSES, HATEXPLAIN_COMMUNITIES
from kdspec.dsl import compile_source
from kdspec.errors import DataError
from kdspec.plan import DatasetSpec
from kdspec.runtime.data.hatexplain import communities, majority_label, read_hatexplain

pytest.importorskip("transformers")


def _post(post_id: str, labels: list[object], targets: list[list[str]],
          words: str = "a b") -> dict[str, object]:
    return {"post_id": post_id, "rationales": [], "post_tokens": words.split(),
            "annotators": [{"label": label, "annotator_id": i, "target": target}
                           for i, (label, target) in enumerate(zip(labels, targets,
                                                                  strict=True))]}


def _release(folder: Path, posts: list[dict[str, object]], train: list[str],
             test: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "dataset.json").write_text(json.dumps({p["post_id"]: p for p in posts}))
    (folder / "post_id_divisions.json").write_text(json.dumps(
        {"train": train, "val": [], "test": test}))
    return folder


def _spec(root: Path, votes: int = 2, tokenizer: str = "bert-base-uncased") -> DatasetSpec:
    return DatasetSpec(name="hatexplain", root=str(root), image_size=1, channels=1,
                       num_classes=3, class_names=HATEXPLAIN_CLASSES, augment="none",
                       tokenizer=tokenizer, max_length=16, community_votes=votes)


def test_the_majority_label_wins_and_a_three_way_split_has_none() -> None:
    assert majority_label(["offensive", "hatespeech", "offensive"], post="p") == 2
    assert majority_label(["normal", "normal", "normal"], post="p") == 1
    assert majority_label([0, 0, 1], post="p") == 0  # re-releases code labels as integers
    assert majority_label(["hatespeech", "normal", "offensive"], post="p") is None
    with pytest.raises(DataError, match="post p7 has the label 'spam'"):
        majority_label(["spam", "normal", "normal"], post="p7")


def test_a_community_counts_when_enough_annotators_name_it() -> None:
    annotators = [{"target": ["Women", "Islam"]}, {"target": ["Women"]},
                  {"target": ["Islam", "Women"]}, ]
    assert communities(annotators, 2) == {"Women", "Islam"}
    assert communities(annotators, 3) == {"Women"}
    assert communities([{"target": ["Women", "Women"]}, {"target": []}], 2) == set()


def test_the_reader_keeps_majority_posts_with_their_communities(tmp_path: Path) -> None:
    posts = [
        _post("t1", ["normal", "normal", "offensive"], [["None"]] * 3, "have a nice day"),
        _post("t2", ["hatespeech", "normal", "offensive"], [["Women"]] * 3),  # no majority
        _post("e1", ["hatespeech", "hatespeech", "normal"],
              [["Women", "Islam"], ["Women"], ["Islam"]], "vile words"),
        _post("e2", ["offensive", "offensive", "offensive"], [["Women"], ["None"], ["None"]]),
    ]
    folder = _release(tmp_path / "Data", posts, ["t1", "t2"], ["e1", "e2"])
    splits = read_hatexplain(_spec(folder), None)
    assert splits.train_texts == ("have a nice day",) and splits.dropped == 1
    assert splits.train_labels.tolist() == [1]
    assert splits.test_labels.tolist() == [0, 2]
    assert set(splits.test_attributes) == set(HATEXPLAIN_COMMUNITIES)
    assert splits.test_attributes["Women"].tolist() == [1, 0]
    assert splits.test_attributes["Islam"].tolist() == [1, 0]
    assert splits.test_attributes["African"].tolist() == [0, 0]
    one_vote = read_hatexplain(_spec(folder, votes=1), None)
    assert one_vote.test_attributes["Women"].tolist() == [1, 1]


def test_a_broken_release_is_an_error_naming_what_is_wrong(tmp_path: Path) -> None:
    posts = [_post("t1", ["normal"] * 3, [["None"]] * 3)]
    folder = _release(tmp_path / "a", posts, ["t1", "missing"], [])
    with pytest.raises(DataError, match="post missing of the train split is not in"):
        read_hatexplain(_spec(folder), None)
    (folder / "dataset.json").write_text("{not json")
    with pytest.raises(DataError, match="cannot read .*dataset.json"):
        read_hatexplain(_spec(folder), None)


def test_posts_are_tokenised_once_and_batched_by_seed_and_epoch(tmp_path: Path) -> None:
    from kdspec.runtime.data import load_dataset
    from kdspec.runtime.data.tokenized import tokens_digest
    from tests.text_fixtures import write_hatexplain, write_tiny_models

    data = write_hatexplain(tmp_path / "data", train=40, test=16)
    bert, _ = write_tiny_models(tmp_path / "models", weights=False)
    spec = _spec(data, tokenizer=str(bert))
    cache = tmp_path / "cache"
    first = load_dataset(spec, device=torch.device("cpu"), cache_dir=cache)
    cached = sorted((cache / "tokens").glob("*.npz"))
    assert len(cached) == 2  # train and test, each tokenised once
    stamps = [p.stat().st_mtime_ns for p in cached]
    again = load_dataset(spec, device=torch.device("cpu"), cache_dir=cache)
    assert [p.stat().st_mtime_ns for p in cached] == stamps  # read back, not made again
    assert first.digest == again.digest and first.sequence_length == 16
    batch = next(first.train.epoch(seed=3, epoch=1, batch_size=8))
    other = next(again.train.epoch(seed=3, epoch=1, batch_size=8))
    assert batch.inputs.dtype == torch.int64 and batch.inputs.shape == (8, 16)
    assert torch.equal(batch.inputs, other.inputs) and torch.equal(batch.index, other.index)
    assert batch.view is not None
    assert torch.equal(first.train.render(batch.index, batch.view), batch.inputs)
    assert (batch.inputs[:, 0] == 2).all()  # [CLS] first; padding (0) at the end
    assert first.test.num_samples == 14  # 16 posts, every eighth without a majority
    assert set(first.test.attributes) == set(HATEXPLAIN_COMMUNITIES)
    texts = ("a", "b")
    assert tokens_digest(texts, "x", 16) != tokens_digest(texts, "x", 32)


def test_a_text_dataset_takes_only_hugging_face_models(tmp_path: Path) -> None:
    source = """study s {
      dataset hatexplain { max_length = 64 }
      teacher ARCH { epochs = 1 batch_size = 8 lr = 0.01 }
      student hf:distilbert-base-uncased { epochs = 1 batch_size = 8 lr = 0.01 }
      distill { temperatures = [2] loss = 0.5 * hard + 0.5 * soft }
      seeds = [0, 1]
    }"""
    plan = compile_source(source.replace("ARCH", "hf:bert-base-uncased"), "<t>")
    data = plan.studies[0].dataset
    assert (data.tokenizer, data.max_length, data.community_votes) == ("bert-base-uncased", 64, 2)
    assert data.is_text and plan.studies[0].teacher.arch == "hf:bert-base-uncased"
    org = compile_source(source.replace("ARCH", "hf:google/bert_uncased_L-2_H-128_A-2"), "<t>")
    assert org.studies[0].teacher.arch == "hf:google/bert_uncased_L-2_H-128_A-2"
    with pytest.raises(Exception, match="hatexplain is text; resnet20 takes images"):
        compile_source(source.replace("ARCH", "resnet20"), "<t>")
    image = source.replace("dataset hatexplain { max_length = 64 }", "dataset digits { }")
    with pytest.raises(Exception, match="takes token ids; digits is images"):
        compile_source(image.replace("ARCH", "resnet20"), "<t>")
    with pytest.raises(Exception, match="digits has no 'max_length' setting"):
        compile_source(image.replace("{ }", "{ max_length = 64 }").replace(
            "hf:distilbert-base-uncased", "lenet5").replace("ARCH", "resnet20"), "<t>")


def test_pretrained_weights_of_a_folder_enter_the_run_id(tmp_path: Path) -> None:
    from tests.text_fixtures import write_tiny_models

    write_tiny_models(tmp_path / "models")
    spec = tmp_path / "s.kdspec"
    spec.write_text("""study s {
      dataset hatexplain { tokenizer = "./models/tiny-bert" }
      teacher hf:./models/tiny-bert { pretrained = DEFAULT epochs = 1 batch_size = 8 lr = 0.01 }
      student hf:./models/tiny-distilbert { epochs = 1 batch_size = 8 lr = 0.01 }
      distill { temperatures = [2] loss = 0.5 * hard + 0.5 * soft }
      seeds = [0, 1]
    }""")
    from kdspec.dsl import load_plan

    study = load_plan(spec).studies[0]
    assert study.teacher.arch == f"hf:{tmp_path / 'models' / 'tiny-bert'}"
    assert study.dataset.tokenizer == str(tmp_path / "models" / "tiny-bert")
    init = study.teacher.init
    assert init is not None and init.kind == "huggingface" and len(init.digest) == 64
    before = load_plan(spec).runs[0].id
    weights = tmp_path / "models" / "tiny-bert" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\x00")
    assert load_plan(spec).runs[0].id != before
    np.testing.assert_equal(len(study.run_ids), 6)


def test_editing_a_local_tokenizer_makes_new_ids(tmp_path: Path) -> None:
    from kdspec.runtime.data.tokenized import tokens_digest
    from tests.text_fixtures import write_tiny_models

    bert, _ = write_tiny_models(tmp_path / "models", weights=False)
    before = tokens_digest(("a b",), str(bert), 16)
    assert tokens_digest(("a b",), str(bert), 16) == before
    vocab = bert / "vocab.txt"
    vocab.write_text(vocab.read_text() + "extra\n")
    assert tokens_digest(("a b",), str(bert), 16) != before
    assert tokens_digest(("a b",), "bert-base-uncased", 16) != before


def test_plan_prices_local_text_models_and_says_when_it_cannot(tmp_path: Path) -> None:
    from kdspec.commands.plan import plan_total
    from kdspec.dsl import load_plan
    from tests.text_fixtures import write_tiny_models

    write_tiny_models(tmp_path / "models", weights=False)
    spec = tmp_path / "s.kdspec"
    text = """study s {
      dataset hatexplain { tokenizer = "./models/tiny-bert"  max_length = 16 }
      teacher hf:./models/TEACHER { epochs = 1 batch_size = 8 lr = 0.01 }
      student hf:./models/STUDENT { epochs = 1 batch_size = 8 lr = 0.01 }
      distill { temperatures = [2] loss = 0.5 * hard + 0.5 * soft }
      seeds = [0, 1]
    }"""
    spec.write_text(text.replace("TEACHER", "tiny-bert").replace("STUDENT", "tiny-distilbert"))
    assert "FLOP forward" in plan_total(load_plan(spec))
    spec.write_text(text.replace("TEACHER", "absent-a").replace("STUDENT", "absent-b"))
    assert "FLOPs unknown" in plan_total(load_plan(spec))
