"""What a nested run of a study looks like in MLflow: its name, params and tags at creation.

The rest of the layout (per-epoch metrics, artifacts, the tags a run gets while it trains) is in
:mod:`kdspec.tracking.schema`; the runtime's writer (:mod:`kdspec.runtime.run_writer`) writes
it. Kept here, apart from the writer, because the names are what the MLflow UI shows and what
``kdspec`` prints for a run.
"""

from __future__ import annotations

from kdspec.catalogue.registry import short_arch
from kdspec.distillation_methods import DeclaredMethod, LabelSmoothing, uses_hinton_loss
from kdspec.plan import Run, Study
from kdspec.tracking import schema


def method_params(method: DeclaredMethod) -> dict[str, object]:
    """``method`` (its name) and ``method.<key>`` for each of its keys (feature points and
    pairs written ``teacher:student``, comma-separated), as the MLflow compare view shows
    them: ``{"method": "dkd", "method.beta": 8.0, ...}``."""
    params: dict[str, object] = {"method": method.name}
    for key, value in method.model_dump(exclude={"name"}).items():
        if isinstance(value, (tuple, list)):
            value = ",".join(":".join(pair) if isinstance(pair, (tuple, list)) else str(pair)
                             for pair in value)
        params[f"method.{key}"] = value
    return params


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
    if run.role == "distilled" and run.temperature is not None:
        params.update({"temperature": schema.temperature_param(run.temperature),
                       "teacher_run_id": run.teacher_id})
        if run.loss is not None:  # Hinton's weights: kd runs only (other methods have none)
            params.update({"hard_weight": run.loss.hard_weight,
                           "soft_weight": run.loss.soft_weight,
                           "t_squared": run.loss.t_squared})
            if run.loss.logit_standardization:
                params["logit_standardization"] = True
        if run.method is not None:
            params.update(method_params(run.method))
            if isinstance(run.method, LabelSmoothing) and run.method.epsilon != "matched":
                params[schema.PARAM_LABEL_SMOOTHING_EPSILON] = run.method.epsilon
    return params


def parent_params(study: Study) -> dict[str, object]:
    """The params of a study's parent run: its data, models, grid, how its distilled students
    learn (the study's method and its keys; Hinton's weights only where the method uses them)
    and a variant's settings."""
    params: dict[str, object] = {
        "dataset": study.dataset.name, "teacher_arch": study.teacher.arch,
        "student_arch": study.student.arch,
        "temperatures": ",".join(f"{t:g}" for t in study.temperatures),
        "seeds": ",".join(str(s) for s in study.seeds),
    }
    if uses_hinton_loss(study.method):
        params.update({"hard_weight": study.loss.hard_weight,
                       "soft_weight": study.loss.soft_weight})
    params.update(method_params(study.method))
    params["precision"] = study.runtime.precision
    params.update({f"variant.{key}": value for key, value in study.variant})
    return params


def run_tags(run: Run, study: Study) -> dict[str, str]:
    """The kdspec tags a nested run is created with (the lease tags come from its claim)."""
    tags = {
        schema.TAG_RUN_ID: run.id, schema.TAG_ROLE: run.role, schema.TAG_SEED: str(run.seed),
        schema.TAG_TEMPERATURE: "" if run.temperature is None else f"{run.temperature:g}",
        schema.TAG_TEACHER_RUN_ID: run.teacher_id or "", schema.TAG_STUDY: study.name,
        schema.TAG_LAST_EPOCH: "0",
    }
    if run.method is not None:
        tags[schema.TAG_METHOD] = run.method.name
    return tags


def run_name(run: Run, study: Study | None = None) -> str:
    """The name shown in the MLflow UI, unique within a study's experiment:
    ``<study>.distilled-lenet5-T4-s0`` (``distilled-lenet5-T4-s0`` without a study); a
    distilled run of another method than kd names it: ``distilled-dkd-lenet5-T4-s0``."""
    temp = f"-T{run.temperature:g}" if run.temperature is not None else ""
    method = f"-{run.method.name}" if run.method is not None and run.method.name != "kd" else ""
    base = f"{run.role}{method}-{short_arch(run.arch)}{temp}-s{run.seed}"
    return base if study is None else f"{study.name}.{base}"
