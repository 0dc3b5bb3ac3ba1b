"""How a distilled student learns: the distillation methods and the control arms of a study, as
frozen plan models (part of :mod:`kdspec.plan`'s contract; nothing here imports torch).

A study names one ``method`` (``distill { method = dkd }``; ``kd`` when it names none). Each
model holds what the runtime needs to train it: the method's weights and hyperparameters with
the paper's defaults, and for feature methods the feature points (module names of the teacher
and the student, see :class:`kdspec.catalogue.facts.ArchFacts`) resolved by the compiler.

Methods (what a distilled run trains with, :data:`RunMethod`):

- ``kd``: Hinton's loss, weighted by the study's ``loss`` (:class:`kdspec.plan.KDLoss`);
- ``dkd``, ``dist``: other losses on the logits at the study's temperature;
- ``fitnet``, ``at``, ``crd``: losses on intermediate features (no temperature);
- ``label_smoothing``: the control of a student trained on smoothed labels.

Controls that change *who* teaches or learns, and train with Hinton's loss (:data:`StudyMethod`
only; their distilled runs carry :class:`KD`):

- ``self``: born-again, the teacher's own architecture, recipe and starting weights as student;
- ``random_teacher``: distilled from an untrained teacher of the same architecture and seed.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

NonNegative = Annotated[float, Field(ge=0.0, le=1e6)]
FeaturePoint = Annotated[str, Field(min_length=1, max_length=200)]
#: Epochs of a warm-up (as many as a recipe may have).
WarmupEpochs = Annotated[int, Field(ge=0, le=10_000)]


class _Method(BaseModel):
    """Base of every method model: immutable, unknown fields are an error."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    #: The paper the method or control comes from (for docs, ``kdspec list`` and reports).
    citation: ClassVar[str]
    #: The source of the defaults, where it is the authors' code rather than the paper.
    defaults_from: ClassVar[str] = ""


class KD(_Method):
    """Hinton's knowledge distillation; its weights, T^2 factor and logit standardization are
    the study's ``loss`` (:class:`kdspec.plan.KDLoss`)."""

    citation: ClassVar[str] = ("Hinton, Vinyals & Dean, \"Distilling the Knowledge in a Neural "
                               "Network\", NIPS 2014 Deep Learning Workshop, arXiv:1503.02531 "
                               "(2015)")
    name: Literal["kd"] = "kd"


class DKD(_Method):
    """Decoupled KD: ``ce_weight * CE + min(epoch / warmup, 1) * (alpha * TCKD + beta * NCKD) *
    T^2`` (:mod:`kdspec.runtime.kd_methods.dkd`)."""

    citation: ClassVar[str] = ("Zhao, Cui, Song, Qiu & Liang, \"Decoupled Knowledge "
                               "Distillation\", CVPR 2022")
    defaults_from: ClassVar[str] = "the authors' code (mdistiller), CIFAR-100"
    name: Literal["dkd"] = "dkd"
    ce_weight: NonNegative = 1.0
    alpha: NonNegative = 1.0
    beta: NonNegative = 8.0
    #: Epochs over which the DKD term's weight rises linearly to 1 (0: none).
    warmup: WarmupEpochs = 20
    #: z-score the logits before the tempered softmax (Sun et al. 2024).
    logit_standardization: bool = False


class DIST(_Method):
    """DIST: ``ce_weight * CE + T^2 * (beta * L_inter + gamma * L_intra)`` with Pearson
    distances (:mod:`kdspec.runtime.kd_methods.dist`)."""

    citation: ClassVar[str] = ("Huang, You, Wang, Qian & Xu, \"Knowledge Distillation from A "
                               "Stronger Teacher\", NeurIPS 2022")
    defaults_from: ClassVar[str] = "the authors' code (DIST loss and KD wrapper defaults)"
    name: Literal["dist"] = "dist"
    ce_weight: NonNegative = 1.0
    beta: NonNegative = 1.0
    gamma: NonNegative = 1.0


class FitNet(_Method):
    """FitNets hints: ``ce_weight * CE + weight * MSE(r(f_s[guided]), f_t[hint])`` with a
    learned regressor ``r`` (:mod:`kdspec.runtime.kd_methods.fitnet`)."""

    citation: ClassVar[str] = ("Romero, Ballas, Kahou, Chassang, Gatta & Bengio, \"FitNets: "
                               "Hints for Thin Deep Nets\", ICLR 2015")
    defaults_from: ClassVar[str] = "the CRD benchmark's code (RepDistiller), CIFAR-100"
    name: Literal["fitnet"] = "fitnet"
    ce_weight: NonNegative = 1.0
    weight: NonNegative = 100.0
    #: The teacher's feature point the student learns to predict.
    hint: FeaturePoint
    #: The student's feature point that predicts it (through the regressor).
    guided: FeaturePoint


class AttentionTransfer(_Method):
    """Attention transfer: ``ce_weight * CE + weight * sum over pairs of MSE of the normalised
    attention maps`` (:mod:`kdspec.runtime.kd_methods.attention_transfer`)."""

    citation: ClassVar[str] = ("Zagoruyko & Komodakis, \"Paying More Attention to Attention: "
                               "Improving the Performance of Convolutional Neural Networks via "
                               "Attention Transfer\", ICLR 2017")
    defaults_from: ClassVar[str] = "the CRD benchmark's code (RepDistiller), CIFAR-100"
    name: Literal["at"] = "at"
    ce_weight: NonNegative = 1.0
    weight: NonNegative = 1000.0
    #: The power of ``|f|`` averaged over channels.
    p: Annotated[float, Field(gt=0.0, le=16.0)] = 2.0
    #: (teacher feature point, student feature point), in stage order.
    pairs: Annotated[tuple[tuple[FeaturePoint, FeaturePoint], ...], Field(min_length=1)]


class CRD(_Method):
    """Contrastive representation distillation: ``ce_weight * CE + weight * (L_NCE(s) +
    L_NCE(t))`` on the classifiers' input embeddings, with a memory bank of every training
    sample (:mod:`kdspec.runtime.kd_methods.crd`)."""

    citation: ClassVar[str] = ("Tian, Krishnan & Isola, \"Contrastive Representation "
                               "Distillation\", ICLR 2020")
    defaults_from: ClassVar[str] = "the authors' code (RepDistiller), CIFAR-100"
    name: Literal["crd"] = "crd"
    ce_weight: NonNegative = 1.0
    weight: NonNegative = 0.8
    feat_dim: Annotated[int, Field(ge=1, le=65_536)] = 128
    #: Negatives per positive, drawn from the other classes.
    nce_k: Annotated[int, Field(ge=1, le=10_000_000)] = 16384
    nce_t: Annotated[float, Field(gt=0.0, le=100.0)] = 0.07
    #: Momentum of the memory bank's rows.
    nce_m: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.5
    #: The classifier modules whose *inputs* are the embeddings (teacher's, student's).
    teacher_classifier: FeaturePoint
    student_classifier: FeaturePoint


class LabelSmoothing(_Method):
    """The label-smoothing control: CE with targets ``(1 - eps) * onehot + eps / C``; ``eps =
    "matched"`` puts the teacher's mean soft mass at T off the true class
    (:mod:`kdspec.runtime.kd_methods.label_smoothing`)."""

    citation: ClassVar[str] = ("Szegedy, Vanhoucke, Ioffe, Shlens & Wojna, \"Rethinking the "
                               "Inception Architecture for Computer Vision\", CVPR 2016; as a KD "
                               "control: Yuan, Tay, Li, Wang & Feng, \"Revisiting Knowledge "
                               "Distillation via Label Smoothing Regularization\", CVPR 2020")
    name: Literal["label_smoothing"] = "label_smoothing"
    epsilon: Annotated[float, Field(ge=0.0, le=1.0)] | Literal["matched"] = "matched"


class SelfDistillation(_Method):
    """Born-again control: the teacher's architecture, recipe and starting weights as student,
    distilled from the teacher with the study's ``loss``."""

    citation: ClassVar[str] = ("Furlanello, Lipton, Tschannen, Itti & Anandkumar, \"Born-Again "
                               "Neural Networks\", ICML 2018")
    name: Literal["self"] = "self"


class RandomTeacher(_Method):
    """Random-teacher control: the student distilled (study's ``loss``) from a teacher of the
    same architecture and seed that was never trained."""

    citation: ClassVar[str] = ("Sarnthein, Bachmann, Anagnostidis & Hofmann, \"Random Teachers "
                               "are Good Teachers\", ICML 2023")
    name: Literal["random_teacher"] = "random_teacher"


#: What a distilled run trains with, and what a study declares (a method, or a control arm).
TrainingMethod = KD | DKD | DIST | FitNet | AttentionTransfer | CRD | LabelSmoothing
DeclaredMethod = TrainingMethod | SelfDistillation | RandomTeacher
RunMethod = Annotated[TrainingMethod, Field(discriminator="name")]
StudyMethod = Annotated[DeclaredMethod, Field(discriminator="name")]

METHOD_MODELS: Final[dict[str, type[DeclaredMethod]]] = {
    "kd": KD, "dkd": DKD, "dist": DIST, "fitnet": FitNet, "at": AttentionTransfer, "crd": CRD,
}
CONTROL_MODELS: Final[dict[str, type[DeclaredMethod]]] = {
    "label_smoothing": LabelSmoothing, "self": SelfDistillation,
    "random_teacher": RandomTeacher,
}
#: Methods that distil intermediate features (both models need feature points).
FEATURE_METHODS: Final = ("fitnet", "at", "crd")
#: Methods whose loss has Hinton's term weighted by the study's ``loss``.
HINTON_METHODS: Final = ("kd", "self", "random_teacher")
#: Methods where ``logit_standardization`` applies.
STANDARDIZABLE: Final = ("kd", "dkd")


def uses_hinton_loss(method: DeclaredMethod) -> bool:
    """Whether the method's distilled runs train with the study's ``loss``."""
    return method.name in HINTON_METHODS


def uses_temperature(method: DeclaredMethod) -> bool:
    """Whether the method's training depends on the temperature (feature methods and a fixed
    label-smoothing epsilon do not: their runs at two temperatures would be the same)."""
    if isinstance(method, LabelSmoothing):
        return method.epsilon == "matched"
    return method.name not in FEATURE_METHODS


def run_method(method: DeclaredMethod) -> TrainingMethod:
    """What the distilled runs of a study with this method train with: the controls that change
    who teaches or learns (self, random_teacher) train with plain :class:`KD`."""
    if isinstance(method, SelfDistillation | RandomTeacher):
        return KD()
    return method


def reads_teacher_while_training(method: TrainingMethod) -> bool:
    """Whether a distilled run of this method reads its teacher's outputs at every step (all
    but the label-smoothing control, whose targets are the labels)."""
    return not isinstance(method, LabelSmoothing)


def reads_teacher_at_setup(method: TrainingMethod) -> bool:
    """Whether a distilled run reads its teacher once before training: the label-smoothing
    control with ``epsilon = "matched"`` (one teacher forward over the training images)."""
    return isinstance(method, LabelSmoothing) and method.epsilon == "matched"
