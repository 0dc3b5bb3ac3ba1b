"""HateXplain (Mathew et al., AAAI 2021) from the authors' release: ``dataset.json`` and
``post_id_divisions.json`` (their repository's ``Data/`` folder).

``dataset.json`` maps each post id to ``{"post_id", "annotators": [{"label", "annotator_id",
"target": [communities]}, ...], "rationales", "post_tokens": [words]}``; a label is
``hatespeech`` / ``normal`` / ``offensive`` (or 0 / 1 / 2 in re-releases that coded them).
``post_id_divisions.json`` lists the ``train``, ``val`` and ``test`` post ids (8:1:1).

- **Label**: the majority of the three annotators. The data card says the posts without a
  majority (919 of 20,148) were not used; the divisions already leave them out, and any found
  in a split are dropped here and counted in the description.
- **Text**: the post's tokens joined by spaces (the authors tokenised and anonymised the posts:
  ``<user>``, ``<number>``), tokenised again by the study's tokenizer.
- **Communities** (the sensitive attributes): for each of the ten communities of HateXplain's
  bias evaluation (:data:`~kdspec.catalogue.facts.HATEXPLAIN_COMMUNITIES`), 1 when at least
  ``community_votes`` annotators (2 of 3 by default: a majority) named it, else 0.
- **Splits**: ``train`` trains and ``test`` tests; the released ``val`` posts are not used
  (``dataset { validation = f }`` holds out a share of ``train`` as for every dataset).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kdspec.catalogue.facts import HATEXPLAIN_CLASSES, HATEXPLAIN_COMMUNITIES
from kdspec.errors import DataError
from kdspec.plan import DatasetSpec
from kdspec.runtime.data.locations import hatexplain_folder


@dataclass(frozen=True)
class TextSplits:
    """Both splits of a text dataset, before tokenising: posts, labels, per-post attributes of
    the test split, where they were read from, and how many posts were dropped (no majority)."""

    train_texts: tuple[str, ...]
    train_labels: np.ndarray  # int64 [N]
    test_texts: tuple[str, ...]
    test_labels: np.ndarray
    test_attributes: dict[str, np.ndarray]  # int64 [N] each
    source: str
    dropped: int = 0


def majority_label(labels: list[object], *, post: str) -> int | None:
    """The label most annotators gave (an index into HATEXPLAIN_CLASSES), None without a
    majority."""
    coded: list[int] = []
    for label in labels:
        if isinstance(label, str) and label in HATEXPLAIN_CLASSES:
            coded.append(HATEXPLAIN_CLASSES.index(label))
        elif isinstance(label, int) and 0 <= label < len(HATEXPLAIN_CLASSES):
            coded.append(label)
        else:
            raise DataError(f"hatexplain: post {post} has the label {label!r}; expected one of "
                            f"{', '.join(HATEXPLAIN_CLASSES)} (or 0..2)")
    if not coded:
        raise DataError(f"hatexplain: post {post} has no annotators")
    (top, count), *rest = Counter(coded).most_common()
    if rest and rest[0][1] == count or count * 2 <= len(coded):
        return None
    return top


def communities(annotators: Sequence[Mapping[str, object]], votes: int) -> set[str]:
    """The communities at least ``votes`` annotators named (each annotator counted once)."""
    named: Counter[str] = Counter()
    for annotator in annotators:
        targets = annotator.get("target") or []
        if isinstance(targets, str):
            targets = [targets]
        if isinstance(targets, list):
            named.update({str(t) for t in targets})
    return {name for name, count in named.items() if count >= votes}


def _read_json(path: Path) -> object:
    try:
        with path.open(encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, json.JSONDecodeError) as err:
        raise DataError(f"hatexplain: cannot read {path}: {err}") from err


def _split(posts: dict[str, dict[str, object]], ids: list[str], votes: int, name: str
           ) -> tuple[list[str], list[int], dict[str, list[int]], int]:
    texts: list[str] = []
    labels: list[int] = []
    attributes: dict[str, list[int]] = {c: [] for c in HATEXPLAIN_COMMUNITIES}
    dropped = 0
    for post_id in ids:
        post = posts.get(post_id)
        if post is None:
            raise DataError(f"hatexplain: post {post_id} of the {name} split is not in "
                            "dataset.json")
        annotators = post.get("annotators")
        tokens = post.get("post_tokens")
        if not isinstance(annotators, list) or not isinstance(tokens, list):
            raise DataError(f"hatexplain: post {post_id} lacks annotators or post_tokens")
        label = majority_label([a.get("label") for a in annotators], post=post_id)
        if label is None:
            dropped += 1
            continue
        texts.append(" ".join(str(t) for t in tokens))
        labels.append(label)
        named = communities(annotators, votes)
        for community, values in attributes.items():
            values.append(int(community in named))
    return texts, labels, attributes, dropped


def read_hatexplain(spec: DatasetSpec, cache_dir: Path | None) -> TextSplits:
    """The train and test posts of the authors' release (see the module docstring)."""
    folder = hatexplain_folder(spec, cache_dir)
    posts = _read_json(folder / "dataset.json")
    divisions = _read_json(folder / "post_id_divisions.json")
    if not isinstance(posts, dict) or not isinstance(divisions, dict):
        raise DataError(f"hatexplain: {folder} does not hold the authors' layout (dataset.json "
                        "maps post ids to posts; post_id_divisions.json has train/val/test)")
    missing = [s for s in ("train", "test") if not isinstance(divisions.get(s), list)]
    if missing:
        raise DataError(f"hatexplain: post_id_divisions.json has no {' or '.join(missing)} "
                        "list")
    votes = spec.community_votes or 2
    train_texts, train_labels, _, dropped_train = _split(posts, divisions["train"], votes,
                                                         "train")
    test_texts, test_labels, attributes, dropped_test = _split(posts, divisions["test"], votes,
                                                               "test")
    return TextSplits(
        train_texts=tuple(train_texts), train_labels=np.asarray(train_labels, dtype=np.int64),
        test_texts=tuple(test_texts), test_labels=np.asarray(test_labels, dtype=np.int64),
        test_attributes={k: np.asarray(v, dtype=np.int64) for k, v in attributes.items()},
        source=str(folder), dropped=dropped_train + dropped_test)
