"""``kdspec plan SPEC [--json] [--pilot]``: the runs a spec expands to.

With ``--json``: the Plan as JSON on stdout (``Plan.from_json`` reads it back; the runtime can
run from it alone). Without: per study a table of its runs (role, arch, seed, T, id,
depends_on) with a work estimate per run, then the total over the plan's unique runs.

Work estimate of a run: samples = epochs x training images per epoch (the subset, the generated
size or the catalogue's size; unknown for ImageNet and CelebA, whose size depends on the files),
and forward FLOPs = samples x the model's forward FLOPs measured at the study's input
(:mod:`kdspec.runtime.models.cost`), plus the teacher's forward for a distilled run. The total
is also given in GPU-hours at a stated throughput. A training step costs about 3x its forward; a teacher forward shared by the
students of one seed (lockstep) or cached is paid once, so the figure is an upper bound there.

With ``--pilot``: each study's runs already FINISHED in the store are analysed as a pilot, and
every claim of the report is listed with its power now and the seeds it needs for 80 % power.
"""

from __future__ import annotations

import argparse
import sys

from kdspec.catalogue.optional_packages import check_optional_packages
from kdspec.catalogue.registry import dataset_facts
from kdspec.commands import spec_selection
from kdspec.distillation_methods import reads_teacher_at_setup, reads_teacher_while_training
from kdspec.plan import Plan, Run, Study

_SI = ((1e18, "E"), (1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"))
#: The training throughput the GPU-hours estimate assumes: ResNet-20 trained at ~2 TFLOP/s
#: (15.8k img/s x 3 x 81 MFLOP) at batch 128, measured on an H200 GPU with torch 2.11 (4 Dec
#: 2026, bench/bench_precision.py --device cuda --no-compile); small models are launch-bound,
#: so this is a floor for them and pessimistic for big ones.
ASSUMED_TRAINING_FLOP_S = 2e12


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", metavar="SPEC", help=".kdspec file (or plan JSON)")
    parser.add_argument("--json", action="store_true", help="print the plan as JSON")
    spec_selection.add_arguments(parser)
    parser.add_argument("--pilot", action="store_true",
                        help="read the runs of each study already FINISHED in the store as a "
                             "pilot and say how many seeds each claim of the full study needs")
    parser.add_argument("--tracking-uri", default=None,
                        help="with --pilot: the MLflow store (default: $MLFLOW_TRACKING_URI, "
                             "the spec's, or sqlite:///mlruns.db)")


#: Below this input size kdspec's own torchvision-family models switch to a small-image stem.
SMALL_INPUT = 64
MSG_IMAGENET_STEM = (
    "warning: study {study}: {arch} keeps its ImageNet stem (stride 4 before the first block) "
    "on {size} px images, so its feature maps shrink to 1x1 early; kdspec's own {own} adapts "
    "its stem to small images (write `{own}` instead unless the ImageNet stem is the point)")


def stem_warnings(plan: Plan) -> list[str]:
    """A torchvision or timm model on images smaller than ``SMALL_INPUT`` px: one line each."""
    from kdspec.catalogue.facts import ARCHITECTURES
    from kdspec.catalogue.registry import is_external

    out = []
    for study in plan.studies:
        size = study.dataset.image_size
        for arch in dict.fromkeys((study.teacher.arch, study.student.arch)):
            if is_external(arch) and size < SMALL_INPUT and not study.dataset.is_text:
                own = arch.split(":", 1)[1]
                out.append(MSG_IMAGENET_STEM.format(
                    study=study.name, arch=arch, size=size,
                    own=own if own in ARCHITECTURES else "resnet18"))
    return out


def train_samples(study: Study) -> int | None:
    """Training images per epoch, when known without reading the data (after the validation
    split, if any, is held out)."""
    data = study.dataset
    known = [n for n in (data.train_subset, data.generated_train_size,
                         data.counted_train_images, dataset_facts(data.name).train_size)
             if n is not None]
    if not known:
        return None
    images = min(known)
    if data.validation is not None:
        images -= max(1, round(data.validation * images))
    return images


def teacher_samples(run: Run, samples: int, per_epoch: int) -> int:
    """Images the teacher's forward sees for a distilled run of ``samples`` training images:
    every one (the teacher runs at every step), one epoch's once (a label-smoothing run with
    a matched epsilon reads the teacher once before training) or none (a fixed epsilon)."""
    if run.method is None:
        return 0
    if reads_teacher_while_training(run.method):
        return samples
    return per_epoch if reads_teacher_at_setup(run.method) else 0


def run_work(study: Study, run: Run) -> tuple[int, float | None] | None:
    """(samples seen, forward FLOPs) of one run of ``study``; None when the size is unknown,
    FLOPs None when an architecture's cost is (a plugin's without one). A feature method's own
    modules (fitnet's regressor, crd's heads and memory bank) are not counted: next to the two
    models' forwards they cost next to nothing."""
    per_epoch = train_samples(study)
    if per_epoch is None:
        return None
    samples = run.recipe.epochs * per_epoch
    data = study.dataset
    from kdspec.runtime.models.cost import study_forward_flops  # torch: only to price a plan

    own = study_forward_flops(run.arch, data)
    seen = teacher_samples(run, samples, per_epoch)
    teacher = study_forward_flops(study.teacher.arch, data) if seen else 0.0
    if own is None or teacher is None:
        return samples, None
    return samples, samples * own + seen * teacher


def gpu_hours(forward_flops: float) -> float:
    """Hours of training that ``forward_flops`` of forwards take at the assumed throughput (a
    training step is ~3x its forward)."""
    return 3.0 * forward_flops / ASSUMED_TRAINING_FLOP_S / 3600.0


def format_flops(flops: float) -> str:
    for scale, prefix in _SI:
        if flops >= scale:
            return f"{flops / scale:.3g} {prefix}FLOP"
    return f"{flops:.3g} FLOP"


#: Method fields the compiler resolves from the models (shown by ``kdspec plan --json``).
RESOLVED_FIELDS = {"name", "pairs", "teacher_classifier", "student_classifier"}


def method_summary(study: Study) -> str:
    """``, method dkd (ce_weight 1, alpha 1, ...)`` for a study that does not use plain kd."""
    method = study.method
    if method.name == "kd":
        return ", method kd (standardized logits)" if study.loss.logit_standardization else ""
    keys = []
    for key, value in method.model_dump(exclude=RESOLVED_FIELDS).items():
        if isinstance(value, bool):
            keys += ["standardized logits"] if value else []
        else:
            keys.append(f"{key} {value:g}" if isinstance(value, float) else f"{key} {value}")
    return f", method {method.name}" + (f" ({', '.join(keys)})" if keys else "")


def study_table(plan: Plan, study: Study) -> str:
    """The runs of one study as an aligned text table with a work estimate per run."""
    data = study.dataset
    per_epoch = train_samples(study)
    inputs = (f"{data.max_length} tokens of {data.tokenizer}" if data.is_text
              else f"{data.image_size}x{data.image_size}")
    items = "posts" if data.is_text else "images"
    header = (f"study {study.name}: {data.name} ({inputs}, {data.num_classes} classes, "
              f"{'unknown' if per_epoch is None else f'{per_epoch:,}'} training {items}), "
              f"teacher {study.teacher.arch} -> student {study.student.arch}, "
              f"{len(study.seeds)} seeds, T = {', '.join(f'{t:g}' for t in study.temperatures)}"
              f"{method_summary(study)}")
    rows = [("role", "arch", "seed", "T", "id", "depends_on", "epochs x samples", "forward")]
    for run in (plan.run(rid) for rid in study.run_ids):
        work = run_work(study, run)
        rows.append((
            run.role, run.arch, str(run.seed),
            "-" if run.temperature is None else f"{run.temperature:g}",
            run.id, ", ".join(run.depends_on) or "-",
            f"{run.recipe.epochs} x {'?' if per_epoch is None else f'{per_epoch:,}'}",
            "?" if work is None or work[1] is None else format_flops(work[1]),
        ))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [header] + ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                        for r in rows]
    if study.individual_fairness is not None:  # measured at each run's final evaluation
        lines.append("  individual fairness: "
                     + study.individual_fairness.describe(text=study.dataset.is_text))
    return "\n".join(lines) + "\n"


def variants_table(plan: Plan, block: str, members: tuple[Study, ...]) -> str:
    """A study block with ``vary``: its variants and their settings, and how many runs they
    share (a run no varied key touches has one id in every variant and trains once)."""
    keys = [key for key, _ in members[0].variant]
    rows = [("variant", *keys)] + [(m.name, *(v for _, v in m.variant)) for m in members]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    per_variant = sum(len(m.run_ids) for m in members)
    distinct = len({rid for m in members for rid in m.run_ids})
    shared = set.intersection(*(set(m.run_ids) for m in members))
    roles = sorted({plan.run(rid).role for rid in shared})
    header = (f"study {block}: {len(members)} variants of {' x '.join(keys)}; "
              f"{distinct} distinct runs for {per_variant} run slots"
              + (f" ({len(shared)} {'/'.join(roles)} run{'' if len(shared) == 1 else 's'} "
                 "shared by every variant)" if shared else ""))
    lines = [header] + ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                        for r in rows]
    return "\n".join(lines) + "\n"


def plan_total(plan: Plan) -> str:
    """Totals over the plan's unique runs (a shared teacher counts once)."""
    samples, flops, unknown, uncosted = 0, 0.0, 0, 0
    for run in plan.runs:
        work = run_work(plan.study_of(run.id), run)
        if work is None:
            unknown += 1
            continue
        samples += work[0]
        if work[1] is None:
            uncosted += 1
        else:
            flops += work[1]
    if unknown == len(plan.runs):
        return (f"total: {len(plan.runs)} runs; work unknown until the dataset is read "
                "(its size depends on the files)\n")
    if uncosted == len(plan.runs) - unknown:  # no model of the plan has a known cost
        return (f"total: {len(plan.runs)} runs, {samples:,} training samples; FLOPs unknown "
                "(no model's cost is known here: an hf: model is priced only when its "
                "configuration is in the Hugging Face cache or a folder)\n")
    hours = gpu_hours(flops)
    line = (f"total: {len(plan.runs)} runs, {samples:,} training samples, "
            f"{format_flops(flops)} forward (a training step is ~3x its forward); about "
            f"{hours:.3g} GPU-hours at {ASSUMED_TRAINING_FLOP_S / 1e12:g} TFLOP/s effective "
            "(what small CIFAR ResNets trained at on an H200, batch 128; big models and "
            "batches run faster)")
    if unknown:
        line += f"; {unknown} runs of unknown dataset size not counted"
    if uncosted:
        line += f"; {uncosted} runs of models without a known cost not in the FLOPs"
    return line + "\n"


def run(args: argparse.Namespace) -> int:
    plan = spec_selection.load(args)
    check_optional_packages(plan)  # what `kdspec run` would stop on, said now
    if args.json:
        sys.stdout.write(plan.to_json() + "\n")
        return 0
    if not plan.studies:
        sys.stdout.write(f"{args.spec}: no studies (a recipe library)\n")
        return 0
    for warning in stem_warnings(plan):
        sys.stderr.write(warning + "\n")
    for block, members in plan.families().items():
        sys.stdout.write(variants_table(plan, block, members) + "\n")
    sys.stdout.write("\n".join(study_table(plan, s) for s in plan.studies))
    sys.stdout.write("\n" + plan_total(plan))
    if args.pilot:
        for study in plan.studies:
            sys.stdout.write("\n" + pilot_table(plan, study, args.tracking_uri))
    return 0


def pilot_table(plan: Plan, study: Study, tracking_uri: str | None) -> str:
    """The claims of ``study`` on the runs already finished in the store, with the power this
    pilot has and the seeds each claim needs for 80 % power (from the pilot's own spread)."""
    from kdspec.analysis.store_reader import read_study_records
    from kdspec.analysis.study_analysis import analyse_study
    from kdspec.tracking.schema import resolve_tracking_uri

    uri = resolve_tracking_uri(tracking_uri, study)
    records = read_study_records(plan, study, tracking_uri=uri)
    if not records.runs:
        return (f"pilot {study.name}: no FINISHED run of the study in {uri} yet; run some "
                "seeds first (e.g. a copy of the spec with seeds = 2)\n")
    seeds = sorted({r.seed for r in records.runs})
    claims = analyse_study(records).claims
    lines = [f"pilot {study.name}: {len(records.runs)} of {len(study.run_ids)} runs FINISHED "
             f"in {uri} (seeds {', '.join(str(s) for s in seeds)}); power at the Holm "
             f"worst case, from the pilot's own seed-to-seed spread (an estimate: few seeds "
             f"estimate a spread roughly)"]
    for c in claims.claims:
        lines += [f"  - {c.claim}", f"      now: {c.verdict}; power: {c.power}",
                  f"      seeds for 80 % power: {c.seeds_needed}"]
    return "\n".join(lines) + "\n"
