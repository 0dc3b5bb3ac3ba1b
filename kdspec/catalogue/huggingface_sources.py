"""Where an ``hf:NAME`` model comes from, without torch or transformers: its hub name or local
folder, the sha256 of a folder's weight files (part of a run id, so the compiler reads it), and
the hub commit the local Hugging Face cache holds. The models themselves are built in
:mod:`kdspec.runtime.models.huggingface`."""

from __future__ import annotations

import hashlib
from pathlib import Path

from kdspec.catalogue.model_names import HF_PREFIX

#: Files of a local model folder whose bytes are its weights (their sha256 joins the run id).
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def model_source(arch_or_name: str) -> str:
    """The hub name or folder of an ``hf:`` architecture (or of a bare name)."""
    return arch_or_name.removeprefix(HF_PREFIX)


def is_local(source: str) -> bool:
    """Whether a model or tokenizer source is a folder rather than a hub name."""
    return source.startswith(("/", ".", "~"))


def weights_digest(folder: Path) -> str:
    """sha256 over the weight files of a local model folder (empty when it has none)."""
    digest = hashlib.sha256()
    found = False
    for name in WEIGHT_FILES:
        path = folder / name
        if path.is_file():
            found = True
            digest.update(name.encode())
            with path.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest() if found else ""


def hub_revision(source: str) -> str:
    """The commit of the hub repository ``source`` that the local Hugging Face cache holds (the
    snapshot its ``config.json`` was read from), or "" when it cannot be told."""
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(source, "config.json")
    except Exception:  # an unusual name or cache: no revision to record
        return ""
    parts = Path(found).parts if isinstance(found, str) else ()
    if "snapshots" in parts and parts.index("snapshots") + 1 < len(parts):
        return parts[parts.index("snapshots") + 1]
    return ""
