"""Weights a spec gives a model to start from (``checkpoint``, ``from_run``, ``pretrained``), read
and fitted so that a model never silently keeps its random initialisation.

Reading a file (:func:`read_weight_file`): only tensors are unpickled (``weights_only``), so a
file cannot run code; the usual wrappers are understood: a state dict under ``state_dict``,
``model``, ``model_state_dict`` or ``net`` (training scripts, kdspec's own ``final.pt``), key
prefixes ``module.`` (DataParallel, DistributedDataParallel) and ``_orig_mod.``
(``torch.compile``). A whole pickled model (``torch.save(model)``) is refused with the reason
and the one-line fix: unpickling a model runs its classes' code.

Fitting (:func:`fit_weights`): a ``checkpoint`` or ``from_run`` must fit completely, every
tensor of the model by name and shape, or the run stops naming what did not match (the first
names of what is missing, unexpected and of another shape); ``partial = true`` in the role
block loads what fits and keeps the seed's values for the rest, but never accepts weights of
which nothing fits. Published weights (``pretrained``) are made for another head (1,000
ImageNet classes) and stem (3 channels): there, tensors of another shape keep the seed's
values as they must, but weights that leave most of the model untouched are refused.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from kdspec.errors import DataError
from kdspec.plan import ModelInit

#: Where training scripts keep the state dict in the dictionary they save.
STATE_DICT_KEYS = ("state_dict", "model", "model_state_dict", "net")
#: Key prefixes that wrappers add to every name: DataParallel / DDP, and torch.compile.
WRAPPER_PREFIXES = ("module.", "_orig_mod.")
#: Published weights must set at least this share of the model's values.
PRETRAINED_MIN_SHARE = 0.5
MSG_PICKLED_MODEL = (
    "{path} holds a whole pickled model (torch.save(model)), not its weights; kdspec reads "
    "only tensors, since unpickling a model runs its code ({detail}). Save its state dict "
    "instead, if you trust the file: python -c \"import torch; m = torch.load('{path}', "
    "weights_only=False); torch.save(m.state_dict(), '{path}')\""
)
MSG_NOT_WEIGHTS = "{path} holds no state dict (a {kind}); save model.state_dict() in it"
MSG_DOES_NOT_FIT = (
    "{what} do not fit {arch}: {problems}. Give weights of this architecture, or write "
    "`partial = true` in the role block to load what fits and keep the seed's values for the "
    "rest"
)
MSG_NOTHING_FITS = "{what}: no tensor fits {arch} ({problems})"
MSG_PRETRAINED_TOO_LITTLE = (
    "{what} set only {share:.0%} of {arch}'s values ({problems}): these are not its weights"
)


@dataclass(frozen=True)
class Fit:
    """How given weights met a model: names loaded, and the model's tensors that kept the
    seed's values because the weights lack them or hold them in another shape; names the
    weights have that the model does not."""

    loaded: tuple[str, ...]
    missing: tuple[str, ...]
    reshaped: tuple[str, ...]
    unexpected: tuple[str, ...]
    loaded_share: float = field(default=1.0)

    @property
    def complete(self) -> bool:
        return not (self.missing or self.reshaped or self.unexpected)

    def problems(self, limit: int = 4) -> str:
        """What did not match, in words (the first ``limit`` names of each kind)."""
        parts = []
        for label, names in (("missing", self.missing), ("of another shape", self.reshaped),
                             ("not in the model", self.unexpected)):
            if names:
                shown = ", ".join(names[:limit]) + (" ..." if len(names) > limit else "")
                parts.append(f"{len(names)} {label} ({shown})")
        return "; ".join(parts) or "everything fits"


def read_weight_file(path: Path) -> dict[str, torch.Tensor]:
    """The state dict in a ``.pt`` file, unwrapped (see the module docstring)."""
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        detail = str(err).strip().splitlines()
        found = next((line for line in detail if "GLOBAL" in line or "global" in line),
                     detail[0] if detail else type(err).__name__)
        raise DataError(MSG_PICKLED_MODEL.format(path=path, detail=found.strip()[:200])
                        ) from err
    return unwrap_state_dict(loaded, where=str(path))


def unwrap_state_dict(loaded: Any, *, where: str) -> dict[str, torch.Tensor]:
    """The tensors of a loaded file or checkpoint: the state dict itself, or the one under a
    key of :data:`STATE_DICT_KEYS`, wrapper prefixes stripped."""
    state = loaded
    while isinstance(state, dict) and not _is_state_dict(state):
        inner = next((state[k] for k in STATE_DICT_KEYS if isinstance(state.get(k), dict)),
                     None)
        if inner is None:
            break
        state = inner
    if not isinstance(state, dict) or not _is_state_dict(state):
        kind = type(loaded).__name__ if not isinstance(loaded, dict) else (
            f"dict of {', '.join(sorted(map(str, loaded))[:5])}")
        raise DataError(MSG_NOT_WEIGHTS.format(path=where, kind=kind))
    return strip_wrapper_prefixes(state)


def _is_state_dict(state: dict[Any, Any]) -> bool:
    return bool(state) and all(isinstance(k, str) and isinstance(v, torch.Tensor)
                               for k, v in state.items())


def strip_wrapper_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Names without the prefixes DataParallel/DDP and torch.compile put before every key
    (stripped while every key has one, in any order and nesting)."""
    while True:
        prefix = next((p for p in WRAPPER_PREFIXES if all(k.startswith(p) for k in state)),
                      None)
        if prefix is None:
            return state
        state = {k.removeprefix(prefix): v for k, v in state.items()}


def compare(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> Fit:
    """How ``state`` meets ``model``'s state dict (names and shapes)."""
    own = model.state_dict()
    loaded = tuple(k for k, v in state.items() if k in own and own[k].shape == v.shape)
    reshaped = tuple(f"{k} {list(own[k].shape)} (weights: {list(state[k].shape)})"
                     for k in own if k in state and own[k].shape != state[k].shape)
    missing = tuple(k for k in own if k not in state)
    unexpected = tuple(k for k in state if k not in own)
    total = sum(v.numel() for v in own.values() if v.is_floating_point()) or 1
    share = sum(own[k].numel() for k in loaded if own[k].is_floating_point()) / total
    return Fit(loaded, missing, reshaped, unexpected, share)


def fit_weights(model: torch.nn.Module, state: dict[str, torch.Tensor], init: ModelInit, *,
                arch: str) -> Fit:
    """Load ``state`` into ``model`` by the rules of ``init`` (module docstring); raises
    DataError naming what did not match when the rules refuse it."""
    fit = compare(model, state)
    what = _describe(init)
    if not fit.loaded:
        raise DataError(MSG_NOTHING_FITS.format(what=what, arch=arch, problems=fit.problems()))
    if init.kind in ("torchvision", "huggingface"):
        if fit.loaded_share < PRETRAINED_MIN_SHARE:
            raise DataError(MSG_PRETRAINED_TOO_LITTLE.format(
                what=what, share=fit.loaded_share, arch=arch, problems=fit.problems()))
    elif not fit.complete and not init.partial:
        raise DataError(MSG_DOES_NOT_FIT.format(what=what, arch=arch, problems=fit.problems()))
    model.load_state_dict({k: state[k] for k in fit.loaded}, strict=False)
    return fit


def _describe(init: ModelInit) -> str:
    if init.kind == "checkpoint":
        return f"the weights in {init.name}"
    if init.kind == "run":
        return f"the final weights of MLflow run {init.name}"
    return f"the {init.kind} weights {init.name}"
