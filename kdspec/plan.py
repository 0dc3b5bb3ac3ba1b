"""The plan: the frozen, validated contract between the DSL, the runtime and the analysis.

A plan is everything one ``.kdspec`` file asks for: one or more studies, expanded into runs. The runtime must be able to execute a
plan from its JSON alone (it never sees the ``.kdspec`` text), and the analysis reads the same
plan to find the runs in MLflow. Nothing here imports anything else from kdspec but the
method models of :mod:`kdspec.distillation_methods`.

Run identity: each run's ``id`` is a hash of everything that determines its training (dataset
as trained on, architecture, recipe, seed, role, temperature, loss weights, precision, and for a
distilled run its teacher's id and its method), so the same run declared in two specs has the
same id. That is how a teacher is reused across studies and how a crashed sweep resumes.

Distillation methods and control arms (:mod:`kdspec.distillation_methods`): a study's
``method`` decides what its distilled runs are. Every method shares the study's teachers and
non-distilled students (their ids do not depend on it). For ``kd``, ``dkd``, ``dist``, ``fitnet``,
``at``, ``crd`` and ``label_smoothing`` the distilled runs are the student's, learning from the
teacher of their seed with that method. ``self`` makes them the teacher's architecture, recipe
and starting weights, distilled (Hinton's loss) from the teacher of their seed. ``random_teacher``
replaces the study's teachers by untrained ones (``UNTRAINED_RECIPE``: 0 epochs, no given
weights, so evaluated at their seed's initialisation) that its distilled runs learn from.
"""

from __future__ import annotations

import hashlib
import json
from functools import cached_property
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from kdspec.distillation_methods import (
    KD,
    DeclaredMethod,
    RandomTeacher,
    RunMethod,
    SelfDistillation,
    StudyMethod,
    run_method,
    uses_hinton_loss,
)

#: Bumped whenever the meaning of a run changes (training code semantics), so old results are
#: not silently reused for a run that would now train differently.
RUN_SEMANTICS_VERSION = 1
PLAN_FORMAT_VERSION: Final = 1

Role = Literal["teacher", "student", "distilled"]
AugmentPreset = Literal["none", "flip", "crop", "crop_flip", "imagenet"]
Precision = Literal["fp32", "bf16", "fp16"]
#: What a spec may name: a precision, or "auto" (the runtime picks per model and hardware,
#: see kdspec.runtime.precision; the choice is recorded in each run's tags).
PrecisionSetting = Literal["auto", "fp32", "bf16", "fp16"]
CompileSetting = bool | Literal["auto"]
Normalization = Literal["ratio", "difference"]
Correction = Literal["none", "bh", "bonferroni", "holm"]
Comparison = Literal["nds_vs_ds", "teacher_vs_ds"]
DisagreementPair = Literal["teacher_vs_nds", "teacher_vs_ds"]
FairnessMetric = Literal["dpd", "eod"]
MulticlassAggregate = Literal["max", "mean"]
#: Individual fairness: what f(x) is, the input distance d, and which pairs are averaged.
IndividualOutput = Literal["probabilities", "confidence"]
InputDistance = Literal["euclidean", "cosine"]
PairChoice = Literal["nearest", "random"]
TeacherCacheMode = Literal["auto", "on", "off"]
#: Trifeature: every shape x texture x colour combination equally often, or features drawn
#: independently (see kdspec.runtime.data.trifeature).
TrifeatureCombinations = Literal["balanced", "independent"]

Probability = Annotated[float, Field(ge=0.0, le=1.0)]
PositiveInt = Annotated[int, Field(gt=0)]

# Bounds of what can run at all: beyond them a run is NaN, never ends or cannot fit in memory.
#: Softmax(z / T) in float32: below 0.01 the scaled logits overflow, above 1000 the soft
#: targets are uniform to float32 precision.
MIN_TEMPERATURE = 0.01
MAX_TEMPERATURE = 1000.0
MAX_EPOCHS = 10_000
MAX_BATCH_SIZE = 65_536
MAX_IMAGE_SIZE = 1024
#: Longest token sequence a text dataset may be cut to (BERT-family models take 512).
MAX_SEQUENCE_LENGTH = 4096
#: Images a generated dataset may have per split, and the bytes they may take (uint8).
MAX_GENERATED_IMAGES = 10_000_000
MAX_GENERATED_BYTES = 32 * 2**30
#: Study names become MLflow run names and report folders: a safe path component, at most
#: 100 characters (a variant adds ``-v<k>``).
NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_-]*$"
MAX_NAME_LENGTH = 100
MAX_EXPERIMENT_LENGTH = 200
SafeName = Annotated[str, Field(pattern=NAME_PATTERN, max_length=MAX_NAME_LENGTH)]
Seed = Annotated[int, Field(ge=0, le=2**63 - 1)]
Temperature = Annotated[float, Field(ge=MIN_TEMPERATURE, le=MAX_TEMPERATURE)]
GeneratedSize = Annotated[int, Field(gt=0, le=MAX_GENERATED_IMAGES)]
#: The method of a study that names none: Hinton's KD.
KD_METHOD: Final = KD()


class Frozen(BaseModel):
    """Base of every plan model: immutable, and unknown fields are an error."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class DatasetSpec(Frozen):
    """The data a study trains and tests on, with every default already resolved."""

    #: A registered dataset (kdspec.catalogue.registry: kdspec's own or a plugin's).
    name: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=100)]
    root: str | None = None  # None: the dataset's default location (see docs/datasets.md)
    download: bool = False
    train_subset: PositiveInt | None = None  # first-n after a seeded shuffle; None = all
    test_subset: PositiveInt | None = None
    image_size: Annotated[int, Field(gt=0, le=MAX_IMAGE_SIZE)]
    channels: PositiveInt
    num_classes: PositiveInt
    class_names: tuple[str, ...]
    augment: AugmentPreset
    target: str | None = None  # attribute used as label (CelebA, Trifeature); None = class label
    sensitive: tuple[str, ...] = ()  # attributes kept with the test predictions for fairness
    balance: Literal["none", "undersample"] = "none"  # undersample the larger target class
    # Trifeature only: how many images to generate for each split.
    generated_train_size: GeneratedSize | None = None
    generated_test_size: GeneratedSize | None = None
    generated_combinations: TrifeatureCombinations | None = None
    #: Share of the training images held out (seeded) as the validation split, which ``vary``
    #: comparisons and any choice use; the test split then gives only the final numbers.
    validation: Annotated[float, Field(gt=0.0, lt=0.5)] | None = None
    #: imagefolder only: the digest of its files' paths, labels and sizes, so two folders with
    #: the same class names are different data in run ids (kdspec.catalogue.image_folder_layout).
    content_digest: Annotated[str, Field(pattern=r"^[0-9a-f]{16}$")] | None = None
    #: imagefolder only: the CSV of per-image attributes (absolute path), if the spec gives one.
    attributes_file: str | None = None
    #: imagefolder only: the training images the compiler counted (for the plan's work estimate).
    counted_train_images: PositiveInt | None = None
    #: Text only: the Hugging Face tokenizer (hub name, or an absolute local folder) that turns
    #: every post into token ids once, and the length posts are cut or padded to.
    tokenizer: Annotated[str, Field(min_length=1, max_length=4096)] | None = None
    max_length: Annotated[int, Field(ge=8, le=MAX_SEQUENCE_LENGTH)] | None = None
    #: HateXplain only: annotators (of three) who must name a community for a post to count
    #: as targeting it.
    community_votes: Annotated[int, Field(ge=1, le=3)] | None = None

    @property
    def is_text(self) -> bool:
        """Whether the inputs are token ids (``tokenizer`` is set for text datasets only)."""
        return self.tokenizer is not None

    @model_validator(mode="after")
    def _class_names_match(self) -> DatasetSpec:
        if len(self.class_names) != self.num_classes:
            raise ValueError(
                f"dataset {self.name}: {len(self.class_names)} class names for "
                f"{self.num_classes} classes"
            )
        return self


class Schedule(Frozen):
    """Learning-rate schedule over epochs."""

    kind: Literal["constant", "cosine", "step", "multistep", "linear"] = "cosine"
    milestones: tuple[PositiveInt, ...] = ()  # epochs at which lr *= gamma (step / multistep)
    gamma: Annotated[float, Field(gt=0.0, le=1.0)] = 0.1
    warmup_epochs: Annotated[int, Field(ge=0)] = 0
    #: Optimizer steps over which the rate rises linearly to the epoch's rate (the warm-up
    #: of transformer fine-tuning); 0: none.
    warmup_steps: Annotated[int, Field(ge=0, le=10_000_000)] = 0


class Recipe(Frozen):
    """How one model is trained (``epochs = 0``: not trained, only evaluated: a model whose
    weights come from elsewhere, see :class:`ModelInit`)."""

    epochs: Annotated[int, Field(ge=0, le=MAX_EPOCHS)]
    batch_size: Annotated[int, Field(gt=0, le=MAX_BATCH_SIZE)]
    optimizer: Literal["sgd", "adam", "adamw"] = "sgd"
    lr: Annotated[float, Field(gt=0.0)]
    momentum: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.9
    nesterov: bool = False
    weight_decay: Annotated[float, Field(ge=0.0)] = 5e-4
    schedule: Schedule = Schedule()


InitKind = Literal["torchvision", "checkpoint", "run", "huggingface"]


class ModelInit(Frozen):
    """Where a model's starting weights come from, when not from its seed.

    - ``torchvision``: ``name`` is a weights enum member of the architecture's torchvision
      builder (``IMAGENET1K_V1``, ``DEFAULT``), read from the torch hub cache (downloaded only
      where the machine can);
    - ``checkpoint``: ``name`` is the absolute path of a ``.pt`` file (a state dict, or a
      kdspec ``final.pt``), ``digest`` its sha256 (part of the run id; checked when loaded);
    - ``run``: ``name`` is an MLflow run id whose ``checkpoints/final.pt`` is loaded from the
      study's store;
    - ``huggingface``: ``name`` is the Hugging Face model (hub name or absolute folder) of an
      ``hf:`` architecture, whose published weights are loaded (the encoder; the new
      classification head starts from the seed), ``digest`` the sha256 of a local folder's
      weight files.

    A ``checkpoint`` or ``run`` must fit the model completely (every tensor by name and shape)
    unless ``partial``: then what fits is loaded and the rest keeps the seed's values. Published
    weights (``torchvision``, ``huggingface``) fit except for the head (and a 3-channel stem
    on grey images), which keep the seed's values (kdspec.runtime.given_weights).
    """

    kind: InitKind
    name: Annotated[str, Field(min_length=1, max_length=4096)]
    digest: str = ""
    partial: bool = False


class ModelSpec(Frozen):
    """An architecture, the recipe that trains it, and where its weights start from."""

    #: A registered architecture, ``torchvision:NAME`` / ``timm:NAME``, or ``hf:NAME`` (a
    #: Hugging Face hub name such as ``google/bert_uncased_L-2_H-128_A-2``, or an absolute
    #: folder).
    arch: Annotated[str, Field(pattern=r"^([A-Za-z_][A-Za-z0-9_]*(:[A-Za-z0-9_.-]+)?"
                                       r"|hf:[A-Za-z0-9_./~-]+)$",
                               max_length=4096)]
    recipe: Recipe
    init: ModelInit | None = None
    #: A model whose test accuracy is within noise of chance is accepted (a deliberate random
    #: teacher); otherwise a teacher at chance stops its study. Not part of any run id.
    accept_chance: bool = False

    @model_validator(mode="after")
    def _trained_or_given(self) -> ModelSpec:
        if self.recipe.epochs == 0 and self.init is None:
            raise ValueError("epochs = 0 means the model is not trained: give it weights "
                             "(pretrained, checkpoint or from_run)")
        return self


class KDLoss(Frozen):
    """Hinton KD loss: ``hard_weight * CE(z_s, y) + soft_weight * T^2 * KL(p_t^T || p_s^T)``.

    Both weights are stored resolved, so the convention a spec used (weight on the hard or the
    soft term) never has to be guessed downstream; ``convention`` records how it was written.
    ``logit_standardization``: both logits z-scored over the classes before the tempered
    softmax of the soft term (Sun et al., CVPR 2024); it enters run ids only when set.
    """

    hard_weight: Probability
    soft_weight: Probability
    t_squared: bool = True
    convention: str  # e.g. "alpha = 0.9 weights the soft (KD) term; hard = 1 - alpha"
    logit_standardization: bool = False

    @model_validator(mode="after")
    def _something_trains(self) -> KDLoss:
        if self.hard_weight == 0.0 and self.soft_weight == 0.0:
            raise ValueError(MSG_ZERO_LOSS)
        return self


class FairnessSpec(Frozen):
    """Group-fairness metrics of the test predictions over a sensitive attribute."""

    sensitive: tuple[str, ...]
    metrics: tuple[FairnessMetric, ...] = ("dpd", "eod")
    # Multiclass target: one-vs-rest per class, then aggregate. None only for a binary target.
    multiclass_aggregate: MulticlassAggregate | None = None


class IndividualFairnessSpec(Frozen):
    """Individual fairness after Dwork et al. (2012): ``I(f) = mean over pairs (x, x') of
    D(f(x), f(x')) / d(x, x')``, lower is fairer (docs/fairness.md, "Individual fairness").

    ``output``: ``probabilities`` (f = the softmax vector, D = total variation distance, half
    the L1 distance) or ``confidence`` (f = the top-class probability, D = absolute difference).
    ``distance``: d in the test images' input space after the dataset's normalisation
    (``euclidean``, or ``cosine`` = 1 - cosine similarity). ``pairs``: each sampled image with
    its ``neighbours`` nearest other sampled images under d, or with as many random partners.
    ``samples``: test images drawn (seeded, without replacement) for the pairs.
    ``same_label``: keep only the pairs whose two images have the same true class (similar
    individuals who deserve the same outcome); a choice of the analysis, like ``output``.
    """

    output: IndividualOutput = "probabilities"
    distance: InputDistance = "euclidean"
    pairs: PairChoice = "nearest"
    samples: Annotated[int, Field(ge=2, le=20_000)] = 2000
    neighbours: Annotated[int, Field(ge=1, le=100)] = 5
    same_label: bool = False

    def stored_part(self) -> dict[str, object]:
        """What a run's stored outputs depend on (the pairs): changing anything else (output,
        same_label) is a new analysis of the same runs, not a new evaluation."""
        return {"distance": self.distance, "pairs": self.pairs, "samples": self.samples,
                "neighbours": self.neighbours}

    def describe(self, *, text: bool = False) -> str:
        """One line for reports and logs (``text``: the inputs are posts, compared as bags of
        tokens)."""
        what = ("f = softmax probabilities, D = total variation" if self.output == "probabilities"
                else "f = top-class probability, D = absolute difference")
        dist = ("Euclidean" if self.distance == "euclidean" else "cosine (1 - cos)")
        items = "posts" if text else "images"
        space = ("the bag-of-tokens space (token counts, special tokens left out)" if text
                 else "the normalised input space")
        pairs = (f"each of {self.samples} seeded test {items} with its {self.neighbours} "
                 "nearest" if self.pairs == "nearest" else
                 f"each of {self.samples} seeded test {items} with {self.neighbours} random")
        return (f"{what}; d = {dist} distance in {space}; pairs: {pairs} "
                f"other sampled {items}"
                + (", kept only where both have the same true class" if self.same_label
                   else ""))


class AnalysisSpec(Frozen):
    """Options of the significance and disagreement analysis."""

    normalization: Normalization = "ratio"
    alpha: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.05
    correction: Correction = "none"
    comparisons: tuple[Comparison, ...] = ("nds_vs_ds", "teacher_vs_ds")
    disagreement: tuple[DisagreementPair, ...] = ("teacher_vs_nds", "teacher_vs_ds")
    disagreement_over_seeds: Literal["sum", "mean"] = "sum"
    #: Test-set resamples behind each run's DPD/EOD bootstrap range (0: no bootstrap).
    bootstrap: Annotated[int, Field(ge=0, le=100_000)] = 1000
    #: Random relabellings of the randomization tests of the claims (exact when fewer exist).
    permutations: Annotated[int, Field(ge=99, le=100_000)] = 1999
    #: Equivalence margin (percentage points of overall accuracy) of the claim "class bias
    #: changes where overall accuracy does not": DS and NDS accuracy within +- this margin.
    equivalence_margin: Annotated[float, Field(gt=0.0, le=50.0)] = 0.5
    #: The temperature Fig. 1 shows; None: the one with the most NDS-vs-DS significant classes.
    figure_temperature: Annotated[float, Field(gt=0.0)] | None = None


class RuntimeSpec(Frozen):
    """Hints to the runtime; precision changes results, compile does not (beyond rounding).

    "auto" (the default of both): the runtime decides per model from the hardware and the run's
    length (:func:`kdspec.runtime.precision.resolve_speed`); the run id keeps "auto", the run's
    ``kdspec.precision`` / ``kdspec.compile`` tags say what it trained with."""

    precision: PrecisionSetting = "auto"
    compile: CompileSetting = "auto"
    lockstep: bool = True  # train one seed's distilled students together (shared teacher pass)
    # Teacher logits cached per augmentation view: "auto" decides by cost, see runtime docs.
    teacher_cache: TeacherCacheMode = "auto"


class TrackingSpec(Frozen):
    """Where results go."""

    experiment: Annotated[str, Field(min_length=1, max_length=MAX_EXPERIMENT_LENGTH)]
    tracking_uri: str | None = None  # None: --tracking-uri, $MLFLOW_TRACKING_URI or local sqlite


class Run(Frozen):
    """One training the study needs."""

    id: str
    role: Role
    arch: str
    seed: Seed
    temperature: Temperature | None = None
    depends_on: tuple[str, ...] = ()
    recipe: Recipe
    #: Hinton's loss: only for distilled runs whose method is kd.
    loss: KDLoss | None = None
    init: ModelInit | None = None  # starting weights, when not from the seed
    #: What a distilled run trains with (kd for a plan written before methods existed); None for
    #: teachers and non-distilled students.
    method: RunMethod | None = None

    @model_validator(mode="before")
    @classmethod
    def _kd_by_default(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("role") == "distilled" \
                and data.get("method") is None:
            return {**data, "method": KD()}
        return data

    @model_validator(mode="after")
    def _distilled_fields(self) -> Run:
        distilled = self.role == "distilled"
        if distilled != (self.temperature is not None):
            raise ValueError(f"run {self.id}: temperature is set iff the run is distilled")
        if distilled != (self.method is not None):
            raise ValueError(f"run {self.id}: method is set iff the run is distilled")
        hinton = self.method is not None and self.method.name == "kd"
        if hinton != (self.loss is not None):
            raise ValueError(f"run {self.id}: loss is set iff the run is distilled with kd")
        if distilled and len(self.depends_on) != 1:
            raise ValueError(f"run {self.id}: a distilled run depends on exactly one teacher")
        return self

    @property
    def teacher_id(self) -> str | None:
        """The id of the teacher a distilled run learns from."""
        return self.depends_on[0] if self.role == "distilled" else None


class Study(Frozen):
    """One study's settings and the ids of the runs it needs (the runs live in ``Plan.runs``)."""

    name: SafeName
    dataset: DatasetSpec
    teacher: ModelSpec
    student: ModelSpec
    temperatures: tuple[Temperature, ...]
    seeds: tuple[Seed, ...]
    #: Hinton's loss as the spec writes it: what ``kd``, ``self`` and ``random_teacher`` train
    #: with (the other methods carry their own weights in ``method``).
    loss: KDLoss
    #: How the distilled students learn (:mod:`kdspec.distillation_methods`).
    method: StudyMethod = KD_METHOD
    fairness: FairnessSpec | None = None
    #: Measured when declared (``individual_fairness { ... }``); does not change run ids.
    individual_fairness: IndividualFairnessSpec | None = None
    analysis: AnalysisSpec = AnalysisSpec()
    runtime: RuntimeSpec = RuntimeSpec()
    tracking: TrackingSpec
    #: What the study is for (the spec's ``note``), printed at the top of its report.
    note: Annotated[str, Field(max_length=2_000)] = ""
    run_ids: tuple[str, ...]
    #: A variant of a study block with ``vary``: the block's name, and the settings that make
    #: this variant (``("student.lr", "0.001")``, ...) in the order the spec wrote them.
    variant_of: str | None = None
    variant: tuple[tuple[str, str], ...] = ()

    @property
    def study_hash(self) -> str:
        """Identifies this study's parent run in MLflow: the study name and its run ids."""
        return stable_hash({"study": self.name, "runs": sorted(self.run_ids)})


class Plan(Frozen):
    """Everything one ``.kdspec`` file asks for: its studies and every run they need.

    ``runs`` is unique by id and in dependency order (a run comes after the runs it depends on).
    Two studies of one file that need the same run (e.g. the same teacher) share it.
    """

    format_version: Literal[1] = PLAN_FORMAT_VERSION
    source: str | None = None  # path of the .kdspec it was compiled from, for messages only
    #: The text of that .kdspec file (logged with the runs); a plan never points at a file.
    spec_text: str | None = None
    #: The ``--set KEY=VALUE`` overrides applied to that text before it was compiled.
    overrides: tuple[str, ...] = ()
    studies: tuple[Study, ...]
    runs: tuple[Run, ...]

    @model_validator(mode="after")
    def _runs_are_consistent(self) -> Plan:
        seen: set[str] = set()
        for run in self.runs:
            if run.id in seen:
                raise ValueError(f"duplicate run id {run.id}")
            for dep in run.depends_on:
                if dep not in seen:
                    raise ValueError(f"run {run.id} depends on {dep}, which does not come before it")
            seen.add(run.id)
        names = [s.name for s in self.studies]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate study names in {names}")
        for study in self.studies:
            missing = [r for r in study.run_ids if r not in seen]
            if missing:
                raise ValueError(f"study {study.name} names runs not in the plan: {missing}")
        self._check_runs_match_their_studies()
        return self

    def _check_runs_match_their_studies(self) -> None:
        """Every run is exactly what its studies' settings expand to, so its id is the hash of
        its content: a plan edited by hand (a teacher's epochs changed, an id kept) is refused
        instead of being trained, or reused, as the run its id names."""
        by_id = {r.id: r for r in self.runs}
        claimed: set[str] = set()
        for study in self.studies:
            expected = expand_runs(dataset=study.dataset, teacher=study.teacher,
                                   student=study.student, temperatures=study.temperatures,
                                   seeds=study.seeds, loss=study.loss,
                                   precision=study.runtime.precision, method=study.method)
            if tuple(r.id for r in expected) != study.run_ids:
                raise ValueError(MSG_IDS_DO_NOT_MATCH.format(study=study.name))
            for run in expected:
                if by_id[run.id] != run:
                    raise ValueError(MSG_RUN_DOES_NOT_MATCH.format(run=run.id, study=study.name))
            claimed.update(study.run_ids)
        orphans = [r.id for r in self.runs if r.id not in claimed]
        if orphans:
            raise ValueError(f"runs {orphans} belong to no study")

    @cached_property
    def _runs_by_id(self) -> dict[str, Run]:
        return {r.id: r for r in self.runs}

    @cached_property
    def _first_study_of(self) -> dict[str, Study]:
        first: dict[str, Study] = {}
        for study in self.studies:
            for rid in study.run_ids:
                first.setdefault(rid, study)
        return first

    @cached_property
    def _run_id_sets(self) -> dict[str, frozenset[str]]:
        return {s.name: frozenset(s.run_ids) for s in self.studies}

    def run(self, run_id: str) -> Run:
        """The run with this id; KeyError if the plan has none."""
        return self._runs_by_id[run_id]

    def study(self, name: str) -> Study:
        """The study with this name; KeyError if the plan has none."""
        for s in self.studies:
            if s.name == name:
                return s
        raise KeyError(name)

    def study_runs(self, study: Study) -> frozenset[str]:
        """The ids of one study's runs, as a set."""
        return self._run_id_sets[study.name]

    def families(self) -> dict[str, tuple[Study, ...]]:
        """The variants of each study block with ``vary``, by block name, in plan order."""
        found: dict[str, list[Study]] = {}
        for s in self.studies:
            if s.variant_of is not None:
                found.setdefault(s.variant_of, []).append(s)
        return {name: tuple(members) for name, members in found.items()}

    def study_of(self, run_id: str) -> Study:
        """The first study that needs this run (its dataset and runtime settings train it)."""
        return self._first_study_of[run_id]

    def runs_of(
        self, study: Study, role: Role, temperature: float | None = None
    ) -> tuple[Run, ...]:
        """One study's runs of one role (and for distilled runs one temperature), in seed order."""
        wanted = self.study_runs(study)
        return tuple(
            r
            for r in self.runs
            if r.id in wanted
            and r.role == role
            and (temperature is None or r.temperature == temperature)
        )

    def to_json(self) -> str:
        """The plan as JSON; ``Plan.from_json(p.to_json()) == p``."""
        return self.model_dump_json(indent=2)

    @classmethod
    def from_json(cls, text: str) -> Plan:
        return cls.model_validate_json(text)


MSG_ZERO_LOSS = "both loss weights are 0: nothing would train the distilled students"
MSG_IDS_DO_NOT_MATCH = ("study {study}: its run ids are not those its settings expand to (a plan "
                        "edited by hand?); compile the spec again with `kdspec plan --json`")
MSG_RUN_DOES_NOT_MATCH = ("run {run} of study {study} is not what its id stands for (edited by "
                          "hand?); compile the spec again with `kdspec plan --json`")


def stable_hash(payload: Any, length: int = 16) -> str:
    """Hex sha256 of the canonical JSON of ``payload``, truncated to ``length`` characters."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:length]


def override_suffix(overrides: tuple[str, ...], digits: int = 8) -> str:
    """``-set-<8 hex digits>`` for a plan compiled with ``--set`` overrides (in their order: a
    later one wins), ``""`` without any: what report folders of such a plan are suffixed with,
    so reports of different overrides never overwrite each other."""
    return f"-set-{stable_hash(list(overrides), digits)}" if overrides else ""


#: DatasetSpec fields added after plan format 1 was first released.
LATER_DATASET_FIELDS = ("generated_combinations", "validation", "content_digest",
                        "counted_train_images", "tokenizer", "max_length", "community_votes")


def training_dataset_identity(dataset: DatasetSpec) -> dict[str, Any]:
    """The dataset fields that change what a model learns or is tested on.

    ``root``, ``download``, ``sensitive`` and ``attributes_file`` are left out: where the
    files live and which attributes the analysis looks at do not change a run (predictions keep
    every attribute; an imagefolder's images enter through ``content_digest``).
    Fields added after the first release enter only when set (``LATER_DATASET_FIELDS``), so
    the ids of runs that do not use them stay what they were.
    """
    identity = dataset.model_dump(exclude={"root", "download", "sensitive", "attributes_file"})
    for name in LATER_DATASET_FIELDS:
        if identity.get(name) is None:
            identity.pop(name, None)
    return identity


def recipe_identity(recipe: Recipe) -> dict[str, Any]:
    """The recipe as it enters a run id: schedule fields added later (``warmup_steps``) enter
    only when set, so the ids of runs that do not use them stay what they were."""
    identity = recipe.model_dump()
    if not recipe.schedule.warmup_steps:
        identity["schedule"].pop("warmup_steps")
    return identity


def loss_identity(loss: KDLoss | None) -> dict[str, Any] | None:
    """Hinton's loss as it enters a run id: without ``convention`` (how it was written), and
    ``logit_standardization`` only when set (added later: the ids of runs that do not use it
    stay what they were)."""
    if loss is None:
        return None
    identity = loss.model_dump(exclude={"convention"})
    if not loss.logit_standardization:
        identity.pop("logit_standardization")
    return identity


#: What a teacher of the ``random_teacher`` control trains with: nothing. Evaluated at its
#: seed's initialisation (the batch size is unused: evaluation uses its own).
UNTRAINED_RECIPE: Final = Recipe(epochs=0, batch_size=256, lr=1e-3)


def run_id(
    *,
    dataset: DatasetSpec,
    role: Role,
    arch: str,
    seed: int,
    recipe: Recipe,
    precision: PrecisionSetting,
    temperature: float | None = None,
    loss: KDLoss | None = None,
    teacher_id: str | None = None,
    init: ModelInit | None = None,
    method: RunMethod | None = None,
) -> str:
    """The deterministic identity of a run (see the module docstring). ``init`` enters only
    when set, and ``method`` only when it is not kd, so the ids of runs that start from their
    seed, or distil with Hinton's loss, stay what they were."""
    payload = {
        "v": RUN_SEMANTICS_VERSION,
        "dataset": training_dataset_identity(dataset),
        "role": role,
        "arch": arch,
        "seed": seed,
        "recipe": recipe_identity(recipe),
        "precision": precision,
        "temperature": temperature,
        "loss": loss_identity(loss),
        "teacher": teacher_id,
    }
    if init is not None:  # partial enters only when set, so earlier ids stay
        payload["init"] = init.model_dump(exclude=set() if init.partial else {"partial"})
    if method is not None and method.name != "kd":
        payload["method"] = method.model_dump()
    return stable_hash(payload)


def expand_runs(
    *,
    dataset: DatasetSpec,
    teacher: ModelSpec,
    student: ModelSpec,
    temperatures: tuple[float, ...],
    seeds: tuple[int, ...],
    loss: KDLoss,
    precision: PrecisionSetting,
    method: DeclaredMethod = KD_METHOD,
) -> tuple[Run, ...]:
    """Every run a study needs, in dependency order.

    Teachers x seeds, then non-distilled students x seeds, then distilled students grouped by
    seed (one per temperature): the distilled students of seed s learn from the teacher of seed s,
    and a seed's group is what the runtime can train in lockstep. ``method`` decides the
    distilled runs and, for ``random_teacher``, the teachers (see the module docstring).
    """
    # A random teacher is the teacher's architecture at its seed's initialisation, never trained.
    untrained = isinstance(method, RandomTeacher)
    teacher_recipe = UNTRAINED_RECIPE if untrained else teacher.recipe
    teacher_init = None if untrained else teacher.init
    learner = teacher if isinstance(method, SelfDistillation) else student
    trains_with = run_method(method)
    hinton = loss if uses_hinton_loss(method) else None
    teachers: dict[int, Run] = {}
    runs: list[Run] = []
    for seed in seeds:
        rid = run_id(dataset=dataset, role="teacher", arch=teacher.arch, seed=seed,
                     recipe=teacher_recipe, precision=precision, init=teacher_init)
        teachers[seed] = Run(id=rid, role="teacher", arch=teacher.arch, seed=seed,
                             recipe=teacher_recipe, init=teacher_init)
        runs.append(teachers[seed])
    for seed in seeds:
        rid = run_id(dataset=dataset, role="student", arch=student.arch, seed=seed,
                     recipe=student.recipe, precision=precision, init=student.init)
        runs.append(Run(id=rid, role="student", arch=student.arch, seed=seed,
                        recipe=student.recipe, init=student.init))
    for seed in seeds:
        tid = teachers[seed].id
        for t in temperatures:
            rid = run_id(dataset=dataset, role="distilled", arch=learner.arch, seed=seed,
                         recipe=learner.recipe, precision=precision, temperature=t,
                         loss=hinton, teacher_id=tid, init=learner.init, method=trains_with)
            runs.append(Run(id=rid, role="distilled", arch=learner.arch, seed=seed,
                            temperature=t, depends_on=(tid,), recipe=learner.recipe,
                            loss=hinton, init=learner.init, method=trains_with))
    return tuple(runs)
