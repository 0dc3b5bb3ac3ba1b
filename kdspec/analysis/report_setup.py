"""The report's Setup and Runs sections: what the study trained (models, recipes, dataset,
seeds, temperatures, loss, the ``--set`` overrides it was compiled with), how it was tested,
and which planned runs the report could use.

Reports of different overrides go to different folders by default: the folder name carries a
short suffix derived from the overrides (:func:`kdspec.plan.override_suffix`), which the
Setup section names, so a report run with ``--set seeds=2`` never overwrites the full
study's.
"""

from __future__ import annotations

from pathlib import Path

from kdspec.analysis.report_model import Section
from kdspec.analysis.significance import CORRECTION_LABELS
from kdspec.analysis.study_analysis import StudyAnalysis
from kdspec.plan import ModelSpec, Recipe, override_suffix


def _training(model: ModelSpec) -> str:
    """How a model got its weights: "30 epochs", "pretrained IMAGENET1K_V1, evaluated only"."""
    epochs = f"{model.recipe.epochs} epochs"
    if model.init is None:
        return epochs
    source = {"torchvision": f"pretrained {model.init.name}",
              "checkpoint": f"checkpoint {Path(model.init.name).name} (sha256 "
                            f"{model.init.digest[:12]})",
              "run": f"from MLflow run {model.init.name}",
              "huggingface": f"pretrained weights of {model.init.name}"
                             + (f" (sha256 {model.init.digest[:12]})" if model.init.digest
                                else "")}[model.init.kind]
    return f"{source}, " + ("evaluated only" if model.recipe.epochs == 0
                            else f"fine-tuned {epochs}")


def recipe_text(recipe: Recipe) -> str:
    """A recipe in one line: epochs, batch, optimizer and its settings, schedule."""
    if recipe.epochs == 0:
        return "not trained (evaluated only)"
    optimizer = f"{recipe.optimizer} lr {recipe.lr:g}"
    if recipe.optimizer == "sgd":
        optimizer += f", momentum {recipe.momentum:g}" + (" (Nesterov)" if recipe.nesterov
                                                            else "")
    schedule = recipe.schedule
    shape: str = schedule.kind
    if schedule.kind in ("step", "multistep") and schedule.milestones:
        shape += (f" (x{schedule.gamma:g} at epochs "
                  f"{', '.join(str(m) for m in schedule.milestones)})")
    warmups = [f"{n} warm-up {unit}" for n, unit in ((schedule.warmup_epochs, "epochs"),
                                                     (schedule.warmup_steps, "steps")) if n]
    return (f"{recipe.epochs} epochs, batch {recipe.batch_size}, {optimizer}, weight decay "
            f"{recipe.weight_decay:g}, {shape} schedule"
            + (f" ({', '.join(warmups)})" if warmups else ""))


def overrides_text(overrides: tuple[str, ...]) -> str:
    """The ``--set`` overrides and the report folder they lead to, or that there are none."""
    if not overrides:
        return "Overrides (--set): none; the spec as written."
    return (f"Overrides (--set): {'; '.join(overrides)}. Reports written without --out go to "
            f"the study's folder with the suffix '{override_suffix(overrides)}', so a report of "
            "other overrides (or of none) never overwrites this one.")


def setup_section(analysis: StudyAnalysis) -> Section:
    """Models and their recipes, dataset, seeds, temperatures, KD loss, the overrides, the test
    options and n per group."""
    records = analysis.records
    study = records.study
    ds, opts = study.dataset, study.analysis
    n_test = records.runs[0].y_true.size if records.runs else 0
    subset = f", test subset {ds.test_subset}" if ds.test_subset else ""
    acc = analysis.accuracy
    group_n = ", ".join(f"{g.key.label}: {g.n}" for g in acc.groups)
    bullets: tuple[str, ...] = (
        f"Teacher: {study.teacher.arch} ({_training(study.teacher)}); student: "
        f"{study.student.arch} ({_training(study.student)}).",
        f"Recipes: teacher {recipe_text(study.teacher.recipe)}; NDS and DS (the student's) "
        f"{recipe_text(study.student.recipe)}.",
        overrides_text(records.overrides),
        f"Dataset: {ds.name}, {ds.num_classes} classes, {n_test} test samples{subset}; "
        + (f"validation: {100 * ds.validation:g} % of the training images held out (seeded) "
           "for any choice, the test split only for the final numbers."
           if ds.validation else "no validation split (every number here is on the test "
           "split)."),
        f"Seeds: {', '.join(str(s) for s in study.seeds)}; temperatures: "
        f"{', '.join(f'{t:g}' for t in study.temperatures)}.",
        f"KD loss: hard weight {study.loss.hard_weight:g}, soft weight "
        f"{study.loss.soft_weight:g}{' x T^2' if study.loss.t_squared else ''} "
        f"({study.loss.convention}).",
        f"Test: Welch's t-test (unequal variances) per class on the normalised class accuracy, "
        f"normalisation '{opts.normalization}' "
        f"({'acc_c / acc' if opts.normalization == 'ratio' else 'acc_c - acc'}), alpha = "
        f"{opts.alpha:g}, correction: {CORRECTION_LABELS[opts.correction]} (family: the "
        f"classes of one comparison at one temperature); confidence intervals at "
        f"{100 * (1 - opts.alpha):g} % with Welch-Satterthwaite df, not adjusted.",
        f"n per group (runs used): {group_n}.",
        f"Disagreement: {opts.disagreement_over_seeds} over paired seeds (teacher of seed s "
        f"vs student of seed s).",
        f"MLflow: {records.tracking_uri}; study parent run "
        f"{records.parent_run_id or 'not found (report not logged to MLflow)'}.",
    )
    about = (f"About this study (the spec's note): {study.note}",) if study.note else ()
    if (study.teacher.arch, study.teacher.recipe) == (study.student.arch, study.student.recipe):
        bullets += ("The teacher and the NDS are the same model (architecture, recipe and "
                    "seeds): every teacher-vs-NDS comparison compares a model with itself, and "
                    "the same training ran twice under two roles.",)
    return Section("Setup", paragraphs=about, bullets=bullets)


def data_section(analysis: StudyAnalysis) -> Section:
    """Where the study stands, how many planned runs were used, and every missing, unusable
    or duplicated one."""
    records = analysis.records
    total = len(records.study.run_ids)
    excluded = [p for p in records.problems if p.excluded]
    caveats = [p for p in records.problems if not p.excluded]
    finding = (f"{records.state.headline()}. {len(records.runs)} of {total} planned runs were "
               f"found FINISHED with readable predictions"
               + (f"; {len(excluded)} {'is' if len(excluded) == 1 else 'are'} missing or "
                  f"unusable and left out." if excluded else "."))
    bullets = tuple(f"Missing/unusable: {p.describe()}" for p in excluded) + tuple(
        f"Note: {p.describe()}" for p in caveats)
    return Section("Runs", finding=finding, bullets=bullets)
