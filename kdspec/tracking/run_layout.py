"""What a nested run of a study looks like in MLflow: its name, params and tags at creation.

The rest of the layout (per-epoch metrics, artifacts, the tags a run gets while it trains) is in
:mod:`kdspec.tracking.schema`; the runtime's writer (:mod:`kdspec.runtime.run_writer`) writes
it. Kept here, apart from the writer, because the names are what the MLflow UI shows and what
``kdspec`` prints for a run.
"""

from __future__ import annotations

from kdspec.catalogue.registry import short_arch
from kdspec.plan import Run, Study
from kdspec.tracking import schema


def run_params(run: Run, study: Study) -> dict[str, object]:
    """The params of a nested run: the recipe, flattened, plus what the compare view groups by
    (the temperature written so that it sorts in numeric order)."""
    recipe = run.recipe
    params: dict[str, object] = {
        "role": run.role, "arch": run.arch, "seed": run.seed, "dataset": study.dataset.name,
        "epochs": recipe.epochs, "batch_size": recipe.batch_size, "optimizer": recipe.optimizer,
        "lr": recipe.lr, "momentum": recipe.momentum, "nesterov": recipe.nesterov,
        "weight_decay": recipe.weight_decay, "schedule": recipe.schedule.kind,
        "schedule.milestones": ",".join(str(m) for m in recipe.schedule.milestones),
        "schedule.gamma": recipe.schedule.gamma,
        "schedule.warmup_epochs": recipe.schedule.warmup_epochs,
        **({"schedule.warmup_steps": recipe.schedule.warmup_steps}
           if recipe.schedule.warmup_steps else {}),
        "precision": study.runtime.precision, "augment": study.dataset.augment,
    }
    if run.role == "distilled" and run.loss is not None and run.temperature is not None:
        params.update({"temperature": schema.temperature_param(run.temperature),
                       "hard_weight": run.loss.hard_weight, "soft_weight": run.loss.soft_weight,
                       "t_squared": run.loss.t_squared, "teacher_run_id": run.teacher_id})
    return params


def run_tags(run: Run, study: Study) -> dict[str, str]:
    """The kdspec tags a nested run is created with (the lease tags come from its claim)."""
    return {
        schema.TAG_RUN_ID: run.id, schema.TAG_ROLE: run.role, schema.TAG_SEED: str(run.seed),
        schema.TAG_TEMPERATURE: "" if run.temperature is None else f"{run.temperature:g}",
        schema.TAG_TEACHER_RUN_ID: run.teacher_id or "", schema.TAG_STUDY: study.name,
        schema.TAG_LAST_EPOCH: "0",
    }


def run_name(run: Run, study: Study | None = None) -> str:
    """The name shown in the MLflow UI, unique within a study's experiment:
    ``<study>.distilled-lenet5-T4-s0`` (``distilled-lenet5-T4-s0`` without a study)."""
    temp = f"-T{run.temperature:g}" if run.temperature is not None else ""
    base = f"{run.role}-{short_arch(run.arch)}{temp}-s{run.seed}"
    return base if study is None else f"{study.name}.{base}"
