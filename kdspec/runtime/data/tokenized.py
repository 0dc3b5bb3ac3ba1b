"""Text on the device: posts tokenised once into int64 ids, then batched like images.

Tokenising runs once per (texts, tokenizer, max_length): the ids are kept in
``<cache>/tokens/<digest>.npz`` and read back by every later run, on any process. A split is one
``[N, max_length]`` tensor on the device (posts cut to ``max_length`` tokens, padded with the
tokenizer's pad id); an epoch is a seeded shuffle of it with the same ``(seed, epoch)`` rule as
images, so lockstep groups and the teacher-logit cache (one view per post) work unchanged.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from kdspec.errors import DataError
from kdspec.plan import DatasetSpec
from kdspec.runtime.data.hatexplain import TextSplits, read_hatexplain
from kdspec.runtime.data.in_memory import epoch_seed, subset_indices
from kdspec.runtime.data.locations import cache_root
from kdspec.runtime.data.split_rules import array_digest, split_validation
from kdspec.runtime.interfaces import Batch, LoadedDataset, shard_batches

#: Bumped when the cached arrays' meaning changes.
TOKENS_VERSION = "1"


#: Files of a local tokenizer folder whose bytes decide the ids (their content joins the key).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json",
                   "merges.txt", "special_tokens_map.json", "spiece.model",
                   "sentencepiece.bpe.model")


def tokenizer_stamp(tokenizer: str) -> str:
    """A local tokenizer folder's files, hashed (so editing them makes new ids); a hub name
    stands for itself."""
    folder = Path(tokenizer)
    if not folder.is_dir():
        return tokenizer
    digest = hashlib.sha256(tokenizer.encode())
    for name in TOKENIZER_FILES:
        if (folder / name).is_file():
            digest.update(name.encode())
            digest.update((folder / name).read_bytes())
    return digest.hexdigest()


def tokens_digest(texts: tuple[str, ...], tokenizer: str, max_length: int) -> str:
    """What the cached ids of ``texts`` depend on: the posts, the length, and the tokenizer
    (a hub name by its name, a folder by its files' content)."""
    digest = hashlib.sha256(f"{TOKENS_VERSION}|{tokenizer_stamp(tokenizer)}|{max_length}|"
                            .encode())
    for text in texts:
        digest.update(text.encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def tokenize(texts: tuple[str, ...], spec: DatasetSpec, cache_dir: Path | None
             ) -> tuple[np.ndarray, int, tuple[int, ...]]:
    """``(ids [N, max_length] int64, pad_id, special ids)`` of ``texts``: read from the cache,
    or tokenised with the spec's tokenizer and cached (written under a temporary name and
    renamed, so concurrent runs never read half a file)."""
    assert spec.tokenizer is not None and spec.max_length is not None
    key = tokens_digest(texts, spec.tokenizer, spec.max_length)
    folder = cache_root(cache_dir) / "tokens"
    path = folder / f"{key}.npz"
    if path.is_file():
        try:
            with np.load(path) as cached:
                return (cached["ids"], int(cached["pad_id"]),
                        tuple(int(i) for i in cached["special"]))
        except (OSError, KeyError, ValueError):
            pass  # a damaged cache file is made again
    from kdspec.runtime.models.huggingface import load_tokenizer

    tokenizer = load_tokenizer(spec.tokenizer)
    pad = tokenizer.pad_token_id
    if pad is None:
        raise DataError(f"the tokenizer {spec.tokenizer} has no padding token")
    encoded = tokenizer(list(texts), truncation=True, max_length=spec.max_length,
                        padding="max_length", return_tensors="np")
    ids = np.asarray(encoded["input_ids"], dtype=np.int64)
    special = tuple(sorted(int(i) for i in tokenizer.all_special_ids))
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / f"{key}.{os.getpid()}.partial"
    try:
        with partial.open("wb") as handle:
            np.savez(handle, ids=ids, pad_id=np.array(pad), special=np.array(special))
        partial.replace(path)
    except OSError:  # a read-only cache only costs the next run its tokenising
        partial.unlink(missing_ok=True)
    return ids, int(pad), special


class TokenTrainSource:
    """A tokenised training split on the device (``TrainSource``; one view per post)."""

    def __init__(self, ids: np.ndarray, labels: np.ndarray, device: torch.device) -> None:
        self.ids = torch.as_tensor(ids, dtype=torch.int64).to(device)
        self.labels = torch.as_tensor(labels, dtype=torch.int64).to(device)
        self.device = device
        self.num_samples = int(self.ids.shape[0])
        self.num_views: int | None = 1

    def epoch(self, *, seed: int, epoch: int, batch_size: int,
              share: tuple[int, int] = (0, 1)) -> Iterator[Batch]:
        """Batches of a ``(seed, epoch)``-seeded shuffle; the last, partial batch is kept."""
        generator = torch.Generator().manual_seed(epoch_seed(seed, epoch))
        order = torch.randperm(self.num_samples, generator=generator).to(self.device)
        for number in shard_batches(self.num_samples, batch_size, share):
            index = order[number * batch_size:(number + 1) * batch_size]
            yield Batch(inputs=self.ids[index], labels=self.labels[index], index=index,
                        view=torch.zeros_like(index))

    def render(self, index: torch.Tensor, view: torch.Tensor) -> torch.Tensor:
        """The token ids of posts ``index`` (there is one view)."""
        del view
        return self.ids[index.to(self.device)]


class TokenEvalSource:
    """A tokenised test (or validation) split in a fixed order (``EvalSource``)."""

    def __init__(self, ids: np.ndarray | torch.Tensor, labels: np.ndarray, device: torch.device,
                 *, attributes: dict[str, np.ndarray] | None = None,
                 special_ids: tuple[int, ...] = ()) -> None:
        self.ids = torch.as_tensor(ids, dtype=torch.int64).to(device)
        self._labels_on_device = torch.as_tensor(labels, dtype=torch.int64).to(device)
        self.device = device
        self.num_samples = int(self.ids.shape[0])
        self.labels: np.ndarray = np.asarray(labels, dtype=np.int64)
        self.attributes: dict[str, np.ndarray] = {
            k: np.asarray(v, dtype=np.int64) for k, v in (attributes or {}).items()}
        #: Ids that carry no content ([CLS], [SEP], padding): left out of the bag of tokens
        #: individual fairness measures input distance with.
        self.special_ids = special_ids

    def batches(self, *, batch_size: int) -> Iterator[Batch]:
        for start in range(0, self.num_samples, batch_size):
            stop = min(start + batch_size, self.num_samples)
            yield Batch(inputs=self.ids[start:stop],
                        labels=self._labels_on_device[start:stop],
                        index=torch.arange(start, stop, device=self.device))


def read_text(spec: DatasetSpec, cache_dir: Path | None) -> TextSplits:
    """Both splits of a text dataset, before tokenising."""
    if spec.name == "hatexplain":
        return read_hatexplain(spec, cache_dir)
    raise DataError(f"{spec.name}: no text reader")


def load_text_dataset(spec: DatasetSpec, *, device: torch.device,
                      cache_dir: Path | None = None) -> LoadedDataset:
    """Read, subset, hold out the validation share, tokenise (once) and move to ``device``."""

    splits = read_text(spec, cache_dir)
    missing = [name for name in spec.sensitive if name not in splits.test_attributes]
    if missing:
        raise DataError(f"{spec.name}: no sensitive attribute {', '.join(missing)} "
                        f"(attributes: {', '.join(splits.test_attributes)})")
    if not len(splits.train_labels) or not len(splits.test_labels):
        raise DataError(f"{spec.name}: {splits.source} has an empty train or test split")
    train_ix = subset_indices(len(splits.train_labels), spec.train_subset)
    test_ix = subset_indices(len(splits.test_labels), spec.test_subset)
    train_ix, val_ix = split_validation(train_ix, spec.validation)
    train_ids, pad, _ = tokenize(splits.train_texts, spec, cache_dir)
    test_ids, _, special = tokenize(splits.test_texts, spec, cache_dir)
    train = TokenTrainSource(train_ids[train_ix], splits.train_labels[train_ix], device)
    test = TokenEvalSource(test_ids[test_ix], splits.test_labels[test_ix], device,
                           attributes={k: v[test_ix] for k, v in splits.test_attributes.items()},
                           special_ids=special)
    validation = None if val_ix is None else TokenEvalSource(
        train_ids[val_ix], splits.train_labels[val_ix], device, special_ids=special)
    held = f" / {validation.num_samples} validation" if validation is not None else ""
    dropped = f"; {splits.dropped} posts without a majority label dropped" if splits.dropped \
        else ""
    description = (f"{spec.name}: {train.num_samples} train{held} / {test.num_samples} test "
                   f"posts, {spec.max_length} tokens of {spec.tokenizer}, from "
                   f"{splits.source}{dropped}")
    return LoadedDataset(
        train=train, test=test, num_classes=spec.num_classes, class_names=spec.class_names,
        channels=spec.channels, image_size=spec.image_size, description=description,
        digest=array_digest(train_ids[train_ix], splits.train_labels[train_ix],
                            test_ids[test_ix], splits.test_labels[test_ix]),
        source=splits.source, validation=validation, sequence_length=spec.max_length,
        largest_token_id=int(max(train_ids.max(), test_ids.max())), pad_token_id=pad,
        # The same id tensor as ``train`` (no copy).
        train_plain=TokenEvalSource(train.ids, splits.train_labels[train_ix], device,
                                    special_ids=special))
