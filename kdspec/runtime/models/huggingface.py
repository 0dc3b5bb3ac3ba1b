"""Hugging Face ``transformers`` sequence classifiers as kdspec models (``hf:NAME``).

``hf:NAME`` is any model ``AutoModelForSequenceClassification`` can build: a hub name
(``bert-base-uncased``, ``google/bert_uncased_L-2_H-128_A-2``), read from the local Hugging Face
cache and downloaded only where the machine can, or a local folder (``hf:/abs/folder``; the
compiler makes a spec-relative ``hf:./folder`` absolute). As everywhere in kdspec the
architecture is built untrained from its configuration, with the study's classes, and seeded
by the run's seed; ``pretrained = DEFAULT`` loads the weights published under that name
(:func:`pretrained_weights`): the encoder's, while the classification head, new for the study's
classes, keeps its seeded values.

A model takes token ids ``[B, L]`` (int64, padded with the tokenizer's pad id) and returns
logits ``[B, num_classes]``: the attention mask is made from the pad id, so the training loop,
the KD loss, the teacher-logit cache and evaluation handle text exactly as images. ``transformers``
is imported only here and only when such a model or a text dataset is used (``pip install
'kdspec[text]'``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from kdspec.catalogue.huggingface_sources import hub_revision, is_local, model_source
from kdspec.catalogue.model_names import MSG_NO_TRANSFORMERS
from kdspec.errors import DataError


def transformers_module() -> Any:
    """``transformers``, or a DataError naming the extra that installs it."""
    try:
        import transformers
    except ImportError as err:
        raise DataError(f"transformers is not installed: {MSG_NO_TRANSFORMERS}") from err
    transformers.logging.set_verbosity_error()  # kdspec logs what was loaded itself
    transformers.logging.disable_progress_bar()
    return transformers


def _load_error(what: str, source: str, err: Exception) -> DataError:
    where = ("the folder" if is_local(source) else
             "the Hugging Face cache (HF_HOME), downloading it where this machine can")
    first = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
    return DataError(f"cannot load the {what} of {source} from {where}: {first}")


def model_config(source: str, num_classes: int, *, local_only: bool = False) -> Any:
    """The model's configuration, with the study's class count (``local_only``: from a folder
    or the Hugging Face cache, never the network)."""
    transformers = transformers_module()
    try:
        return transformers.AutoConfig.from_pretrained(source, num_labels=num_classes,
                                                       local_files_only=local_only)
    except (OSError, ValueError) as err:
        raise _load_error("configuration", source, err) from err


class SequenceClassifier(nn.Module):
    """A ``transformers`` sequence classifier that takes token ids alone: the attention mask is
    ``ids != pad_id`` (kdspec pads every post to the same length with that id)."""

    def __init__(self, model: nn.Module, pad_id: int) -> None:
        super().__init__()
        self.model = model
        self.pad_id = pad_id

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        mask = (input_ids != self.pad_id).long()
        logits: torch.Tensor = self.model(input_ids=input_ids, attention_mask=mask).logits
        return logits


def build_huggingface(arch: str, *, in_channels: int = 1, image_size: int = 1,
                      num_classes: int, local_only: bool = False) -> SequenceClassifier:
    """An untrained ``hf:`` model (from its configuration, nothing but the configuration
    read) with ``num_classes`` outputs; ``in_channels`` and ``image_size`` are unused."""
    del in_channels, image_size
    transformers = transformers_module()
    source = model_source(arch)
    config = model_config(source, num_classes, local_only=local_only)
    try:
        model = transformers.AutoModelForSequenceClassification.from_config(config)
    except ValueError as err:
        raise DataError(f"{source} is not a sequence classifier transformers can build: "
                        f"{err}") from err
    pad = config.pad_token_id if getattr(config, "pad_token_id", None) is not None else 0
    return SequenceClassifier(model, int(pad))


def vocabulary_problem(model: nn.Module, largest_id: int, tokenizer: str,
                       pad_id: int | None = None) -> str | None:
    """Why ``model`` cannot read the ids ``tokenizer`` gave (its vocabulary is smaller than the
    largest id, or it masks another padding id than the posts were padded with), or None."""
    if not isinstance(model, SequenceClassifier):
        return None
    config: Any = getattr(model.model, "config", None)
    name = getattr(config, "name_or_path", "") or "the model"
    if pad_id is not None and pad_id != model.pad_id:
        return (f"the tokenizer {tokenizer} pads posts with id {pad_id}, but {name} masks id "
                f"{model.pad_id} as padding: give the dataset the tokenizer of the models")
    size = int(getattr(config, "vocab_size", 0) or 0)
    if size and largest_id >= size:
        return (f"the tokenizer {tokenizer} gives token ids up to {largest_id}, but "
                f"{name} has a vocabulary of {size}: "
                "give the dataset the tokenizer of the models (teacher and student must share "
                "one)")
    return None


def pretrained_weights(source: str, num_classes: int
                       ) -> tuple[dict[str, torch.Tensor], str]:
    """The weights published under ``source``, keyed as in :class:`SequenceClassifier`,
    without those ``transformers`` had to initialise itself (a new classification head):
    those keep the run's seeded values; and the hub commit they were read at ("" for a
    folder)."""
    transformers = transformers_module()
    try:
        model, info = transformers.AutoModelForSequenceClassification.from_pretrained(
            source, num_labels=num_classes, output_loading_info=True,
            ignore_mismatched_sizes=True)
    except (OSError, ValueError) as err:
        raise _load_error("weights", source, err) from err
    fresh = set(info.get("missing_keys", ())) | set(info.get("mismatched_keys", ()))
    fresh = {key if isinstance(key, str) else key[0] for key in fresh}
    revision = "" if is_local(source) else hub_revision(source)
    return ({f"model.{key}": value for key, value in model.state_dict().items()
             if key not in fresh}, revision)


def load_tokenizer(source: str) -> Any:
    """The fast tokenizer of a hub name or folder."""
    transformers = transformers_module()
    try:
        return transformers.AutoTokenizer.from_pretrained(source, use_fast=True)
    except (OSError, ValueError) as err:
        raise _load_error("tokenizer", source, err) from err
