"""Where a group's weights come from: its teacher's trained model, the checkpoints its resumed
runs continue from, and the starting weights of models that do not start from their seed.

:class:`StoreWeights` reads them from the tracking store (``final.pt`` of the teacher's
FINISHED run, ``last.pt`` of a resumed run, ``final.pt`` of another run) or from where a spec's
``init`` names them (torchvision's or Hugging Face's published weights, a checkpoint file).
:func:`resume_members` loads a resumed group's checkpoints into its freshly built trainees, and
gives the group up as a whole when any of them cannot be used, for whatever reason: the run
then trains from its first epoch, with the reason recorded.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from kdspec.plan import ModelInit
from kdspec.runtime import checkpoints
from kdspec.runtime.given_weights import read_weight_file, unwrap_state_dict
from kdspec.runtime.scheduling import Action, Group
from kdspec.runtime.training import Trainee
from kdspec.tracking import schema
from kdspec.tracking.ownership import finished_run
from kdspec.tracking.reachability import is_unreachable
from kdspec.tracking.run_store import RunStore


class CheckpointUnusable(Exception):
    """A resumed run's checkpoint cannot be used (unreadable, another run's, another
    architecture, another epoch): the run was given up and is to be decided again (it trains
    from its first epoch)."""


class WeightSource(Protocol):
    """The weights a group reads."""

    def teacher(self, teacher_id: str, *, device: torch.device) -> torch.nn.Module: ...
    def resume_state(self, action: Action) -> dict[str, Any]: ...
    def initial_weights(self, init: ModelInit, *, num_classes: int
                        ) -> tuple[dict[str, torch.Tensor], dict[str, str]]: ...


@dataclass
class StoreWeights:
    """Weights read from a store (the teacher's may live in another store than the group's
    runs: a teacher is reused across specs)."""

    store: RunStore
    teacher_store: RunStore
    workdir: Path

    def teacher(self, teacher_id: str, *, device: torch.device) -> torch.nn.Module:
        """The teacher's trained model: ``final.pt`` of the FINISHED run that counts."""
        found = finished_run(self.teacher_store.find_runs([teacher_id])[teacher_id])
        if found is None:
            raise RuntimeError(f"teacher {teacher_id} has no FINISHED run in "
                               f"{self.teacher_store.uri}")
        path = self.teacher_store.download(found.mlflow_id, schema.ARTIFACT_FINAL_CHECKPOINT,
                                           self.workdir / "teachers" / teacher_id)
        return checkpoints.load_model(path, device=device)

    def resume_state(self, action: Action) -> dict[str, Any]:
        assert action.stored is not None, "only a resumed run has a checkpoint"
        path = self.store.download(action.stored.mlflow_id, schema.ARTIFACT_LAST_CHECKPOINT,
                                   self.workdir / "resume" / action.run.id)
        return checkpoints.load(path)

    def initial_weights(self, init: ModelInit, *, num_classes: int
                        ) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
        """``(weights, provenance tags)``: torchvision's or Hugging Face's published weights
        (their caches; downloaded where the machine can; a hub model's tags name the commit it
        was read at), a checkpoint file (its sha256 checked against the plan's), or
        ``final.pt`` of an MLflow run of the store."""
        source = {schema.TAG_WEIGHTS_SOURCE: f"{init.kind}:{init.name}"}
        if init.kind == "torchvision":
            from torchvision.models import get_model_weights

            builder, _, member = init.name.partition(":")
            enum = get_model_weights(builder)
            weights = enum.DEFAULT if member == "DEFAULT" else enum[member]
            return dict(weights.get_state_dict(progress=False)), source
        if init.kind == "huggingface":
            from kdspec.catalogue.huggingface_sources import weights_digest
            from kdspec.runtime.models.huggingface import pretrained_weights

            if init.digest and weights_digest(Path(init.name)) != init.digest:
                raise RuntimeError(f"the weights in {init.name} changed since the plan was "
                                   "made: compile the spec again")
            state, revision = pretrained_weights(init.name, num_classes)
            return state, ({**source, schema.TAG_WEIGHTS_REVISION: revision} if revision
                           else source)
        if init.kind == "checkpoint":
            path = Path(init.name)
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            if digest != init.digest:
                raise RuntimeError(f"checkpoint {path} changed since the plan was made (sha256 "
                                   f"{digest[:12]}..., the plan says {init.digest[:12]}...): "
                                   "compile the spec again")
            return read_weight_file(path), source
        path = self.store.download(init.name, schema.ARTIFACT_FINAL_CHECKPOINT,
                                   self.workdir / "from_run" / init.name)
        return unwrap_state_dict(checkpoints.load(path), where=f"MLflow run {init.name}"), source


def first_line(err: BaseException) -> str:
    """An exception's first line, for a log line or a tag (at most 300 characters)."""
    return (str(err).strip().splitlines() or [type(err).__name__])[0][:300]


def resume_members(group: Group, trainees: Sequence[Trainee], source: WeightSource,
                   logger: logging.Logger) -> dict[str, dict[str, float]]:
    """Load each resumed member's ``last.pt`` into its trainee; returns the metrics to catch
    up (by run id) when the checkpoints are one epoch ahead of their ``kdspec.last_epoch`` tag
    (the run was killed after uploading ``last.pt`` but before the epoch's metrics and tag went
    out: it resumes after that epoch instead of retraining it).

    Raises :class:`CheckpointUnusable` when any member's checkpoint cannot be used, whatever
    the reason (missing, corrupt, another run's, another architecture or optimizer, epochs that
    disagree): a lockstep group resumes together or not at all. A lost store is raised as is.
    """
    if group.start_epoch == 0:
        return {}
    try:
        states = [source.resume_state(action) for action in group.actions]
        epochs = {int(s["epochs_done"]) for s in states}
        if len(epochs) != 1 or not epochs <= {group.start_epoch, group.start_epoch + 1}:
            raise ValueError(f"checkpoint epochs {sorted(epochs)} do not match the "
                             f"kdspec.last_epoch tags ({group.start_epoch})")
        for trainee, state in zip(trainees, states, strict=True):
            checkpoints.restore_trainee(trainee, state)
    except Exception as err:
        if is_unreachable(err):
            raise
        logger.warning("%s: cannot resume (%s); it will train from its first epoch",
                       group.label, first_line(err))
        raise CheckpointUnusable(f"checkpoint unusable ({first_line(err)})") from err
    if trainees[0].epochs_done == group.start_epoch:
        return {}
    return {t.run.id: dict(s.get("epoch_metrics", {}))
            for t, s in zip(trainees, states, strict=True)}
