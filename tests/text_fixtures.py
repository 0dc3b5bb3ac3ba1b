"""Offline stand-ins for the text study: a HateXplain-layout release written here, and tiny
randomly initialised BERT / DistilBERT models with a WordPiece vocabulary built locally.

The posts are drawn so that the label is learnable from words (each class has its own cue
words, mixed with shared filler) and two communities are named by the annotators of some posts,
so a report has something to measure; some posts have no majority label and must be dropped.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import numpy as np

FILLER = ("the", "a", "people", "this", "is", "what", "they", "say", "about", "today", "just",
          "really", "some", "all", "we", "you")
CUES = {"hatespeech": ("vile", "scum", "vermin", "filth"),
        "normal": ("nice", "lunch", "weather", "music"),
        "offensive": ("stupid", "idiot", "dumb", "moron")}
GROUPS = {"Women": ("women", "girls"), "Islam": ("muslims", "mosque")}
LABELS = tuple(CUES)


def vocabulary() -> list[str]:
    words = [*FILLER, *(w for cue in CUES.values() for w in cue),
             *(w for names in GROUPS.values() for w in names)]
    return ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]


def write_hatexplain(folder: Path, *, train: int = 96, test: int = 48, seed: int = 0) -> Path:
    """``dataset.json`` and ``post_id_divisions.json`` in the authors' layout; returns the
    folder. Every eighth post's annotators all disagree (no majority)."""
    rng = np.random.default_rng(seed)
    posts: dict[str, dict[str, object]] = {}
    divisions: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for split, count in (("train", train), ("val", 6), ("test", test)):
        for i in range(count):
            post_id = f"{split}{i}_gab"
            label = LABELS[int(rng.integers(3))]
            group = list(GROUPS)[int(rng.integers(2))] if rng.random() < 0.6 else None
            words = list(rng.choice(FILLER, size=int(rng.integers(4, 9))))
            words += list(rng.choice(CUES[label], size=2))
            if group is not None:
                words.append(str(rng.choice(GROUPS[group])))
            rng.shuffle(words)
            if i % 8 == 7:
                votes = list(LABELS)  # no majority
            else:
                other = LABELS[int(rng.integers(3))]
                votes = [label, label, other]
            annotators = [{"label": v, "annotator_id": k,
                           "target": [group] if group is not None and k < 2 else ["None"]}
                          for k, v in enumerate(votes)]
            posts[post_id] = {"post_id": post_id, "annotators": annotators, "rationales": [],
                              "post_tokens": [str(w) for w in words]}
            divisions[split].append(post_id)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "dataset.json").write_text(json.dumps(posts))
    (folder / "post_id_divisions.json").write_text(json.dumps(divisions))
    return folder


def write_tiny_models(folder: Path, *, weights: bool = True) -> tuple[Path, Path]:
    """``tiny-bert`` (2 layers, width 32; with its tokenizer, and with random weights saved
    when ``weights``) and ``tiny-distilbert`` (1 layer, width 32) under ``folder``."""
    from transformers import (
        BertConfig,
        BertForSequenceClassification,
        BertTokenizerFast,
        DistilBertConfig,
    )
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()

    vocab = vocabulary()
    bert, distil = folder / "tiny-bert", folder / "tiny-distilbert"
    for path in (bert, distil):
        path.mkdir(parents=True, exist_ok=True)
        (path / "vocab.txt").write_text("\n".join(vocab) + "\n")
        # transformers 5 takes the vocabulary itself; 4.x took the file.
        if "vocab" in inspect.signature(BertTokenizerFast.__init__).parameters:
            tokenizer = BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)},
                                          do_lower_case=True)
        else:
            tokenizer = BertTokenizerFast(vocab_file=str(path / "vocab.txt"),
                                          do_lower_case=True)
        tokenizer.save_pretrained(str(path))
    bert_config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2,
                             num_attention_heads=2, intermediate_size=64,
                             max_position_embeddings=64, pad_token_id=0)
    bert_config.save_pretrained(str(bert))
    DistilBertConfig(vocab_size=len(vocab), dim=32, n_layers=1, n_heads=2, hidden_dim=64,
                     max_position_embeddings=64, pad_token_id=0).save_pretrained(str(distil))
    if weights:
        import torch

        torch.manual_seed(0)
        BertForSequenceClassification(bert_config).save_pretrained(str(bert))
    return bert, distil
