"""The MLflow layout kdspec writes and reads: tag, param, metric and artifact names.

The runtime writes runs in this layout and the analysis finds them by it, without either
importing the other. Changing a name here is a format change: bump ``LAYOUT_VERSION``.

Layout
------
- one experiment per study (``plan.tracking.experiment``), with an explicit artifact location;
- one parent run per plan: tags ``kdspec.kind = "plan"``, ``kdspec.plan_hash``, ``kdspec.study``;
  artifacts ``plan.json`` and ``spec.kdspec``; the report is logged under ``report/`` (a
  report of an incomplete study under ``report-partial/``);
- one nested run per plan run (tag ``mlflow.parentRunId``): tags below; params are the recipe
  (``epochs``, ``lr``, ...) plus ``arch``, ``role``, ``seed``, ``temperature``, and for a
  distilled run ``method`` and ``method.<key>`` (``hard_weight``, ``soft_weight`` for kd only;
  :mod:`kdspec.tracking.run_layout`); metrics per epoch
  ``train_loss``, ``test_acc``, ``lr``; final metric ``test_acc`` and ``temperature`` (so the MLflow
  compare view can plot one against the other);
- artifacts of a nested run: ``predictions.npz`` (keys below), ``class_accuracy.json``,
  ``confusion.npy``, ``checkpoints/final.pt`` and ``checkpoints/last.pt`` (resumable state);
- a RUNNING run carries a lease (``kdspec.lease.*``, see ``kdspec.tracking.leases``; who holds
  a run is ``kdspec.tracking.ownership``, described in docs/running.md, "Who trains a run");
- provenance on the parent and on every run: ``mlflow.source.git.commit`` and
  ``kdspec.git_dirty`` (from a checkout), ``kdspec.version.*``, ``kdspec.host``, ``mlflow.user``;
  each nested run has its dataset as an MLflow input (name, digest, source).
"""

from __future__ import annotations

import os

from kdspec.plan import Study

LAYOUT_VERSION = "1"

#: Used when neither ``--tracking-uri``, ``$MLFLOW_TRACKING_URI`` nor the spec names a store.
DEFAULT_TRACKING_URI = "sqlite:///mlruns.db"


def resolve_tracking_uri(cli_uri: str | None, study: Study) -> str:
    """``--tracking-uri`` > ``$MLFLOW_TRACKING_URI`` > the spec's ``tracking_uri`` > the default.

    One rule for ``kdspec run`` and ``kdspec report``, so both always open the same store.
    """
    return (cli_uri or os.environ.get("MLFLOW_TRACKING_URI") or study.tracking.tracking_uri
            or DEFAULT_TRACKING_URI)

# Tags
TAG_KIND = "kdspec.kind"  # "plan" (parent), "run" (nested) or "summary" (nested, by the report)
TAG_LAYOUT = "kdspec.layout"
TAG_PLAN_HASH = "kdspec.plan_hash"
TAG_STUDY = "kdspec.study"
TAG_RUN_ID = "kdspec.run_id"
TAG_ROLE = "kdspec.role"
TAG_SEED = "kdspec.seed"
TAG_TEMPERATURE = "kdspec.temperature"  # "" unless distilled
TAG_TEACHER_RUN_ID = "kdspec.teacher_run_id"  # kdspec id of the teacher ("" unless distilled)
TAG_FAILURE = "kdspec.failure"  # reason a run FAILED (NaN loss, divergence, exception)
TAG_INTERRUPTED = "kdspec.interrupted"  # why a run was stopped (a signal) and where it resumes
TAG_LAST_EPOCH = "kdspec.last_epoch"  # last epoch whose checkpoint is saved (for resume)
#: "on" / "off": teacher logits looked up or recomputed; "none": the run reads no teacher while
#: training (label smoothing)
TAG_TEACHER_CACHE = "kdspec.teacher_cache"
TAG_TEACHER_CACHE_REASON = "kdspec.teacher_cache_reason"  # why (one line), e.g. features read
TAG_METHOD = "kdspec.method"  # distilled runs: how the run learns (kd, dkd, ..., label_smoothing)
#: Label-smoothing runs: the epsilon they train with (a matched one is computed at setup); also
#: the run's param ``PARAM_LABEL_SMOOTHING_EPSILON``.
TAG_LABEL_SMOOTHING_EPSILON = "kdspec.label_smoothing.epsilon"
PARAM_LABEL_SMOOTHING_EPSILON = "label_smoothing.epsilon"
TAG_LOCKSTEP = "kdspec.lockstep"  # "solo" or the size of the lockstep group it trained in
TAG_PRECISION = "kdspec.precision"  # what the run trained in (fp32 / bf16 / fp16): "auto" decided
TAG_COMPILE = "kdspec.compile"  # "true" / "false": whether torch.compile wrapped the model
TAG_SPEED_CHOICE = "kdspec.speed_choice"  # why (one line): the hardware and model size it weighed
TAG_TEACHER_PRECISION = "kdspec.teacher_precision"  # distilled: its teacher's forwards' precision
#: Runs that start from published weights: where they were read from and, for a Hugging Face
#: hub model, the repository commit they were (the name alone can move on).
TAG_WEIGHTS_SOURCE = "kdspec.weights.source"
TAG_WEIGHTS_REVISION = "kdspec.weights.revision"
# Leases of live runs (kdspec.tracking.leases; the rules in kdspec.tracking.ownership)
TAG_LEASE_OWNER = "kdspec.lease.owner"  # host:pid:token of the process training the run
TAG_LEASE_MACHINE = "kdspec.lease.machine"  # boot id / pid namespace the owner runs in
TAG_LEASE_CLAIMED = "kdspec.lease.claimed"  # ms since the epoch
TAG_LEASE_HEARTBEAT = "kdspec.lease.heartbeat"  # ms since the epoch, renewed while training

# Provenance (kdspec.tracking.provenance)
TAG_GIT_COMMIT = "mlflow.source.git.commit"  # MLflow's own name: the UI shows it beside the source
TAG_SOURCE_NAME = "mlflow.source.name"  # "kdspec": the UI's "Source" (with the commit) needs one
TAG_SOURCE_TYPE = "mlflow.source.type"
TAG_GIT_DIRTY = "kdspec.git_dirty"  # "true" when the checkout had uncommitted changes
TAG_VERSION_PREFIX = "kdspec.version."  # kdspec, torch, torchvision, accelerate, mlflow, cuda
TAG_HOST = "kdspec.host"
TAG_USER = "mlflow.user"
TAG_NOTE = "mlflow.note.content"  # a run's description in the MLflow UI
TAG_OVERRIDES = "kdspec.overrides"  # parent runs: the --set KEY=VALUE the plan was compiled with
#: Set on every kdspec experiment: it is model training, not GenAI (MLflow 3.17's UI still needs
#: ``?workflowType=machine_learning`` in the URL to open the runs table; see tracking.client).
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"

#: On a parent run: hash of the summary metrics the last ``kdspec report`` logged.
TAG_REPORT_DIGEST = "kdspec.report_digest"
#: On a parent run: where the study stood when its last report of an incomplete study was
#: logged (``Incomplete: 12 of 55 runs finished: ...``); removed by a complete report.
TAG_REPORT_PARTIAL = "kdspec.report_partial"
#: On a FINISHED run that ``--force`` retrained (now KILLED): the MLflow id of its replacement.
TAG_SUPERSEDED_BY = "kdspec.superseded_by"
#: Why a finished run is suspect (kdspec.runtime.run_flags): at chance, a loss that never fell.
TAG_FLAG_PREFIX = "kdspec.flag."
TAG_FLAG_AT_CHANCE = "kdspec.flag.at_chance"
TAG_FLAG_LOSS = "kdspec.flag.loss"
#: On an unfinished run another process took over and trained anew: the owner that replaced it.
TAG_REPLACED_BY = "kdspec.replaced_by"

KIND_PLAN = "plan"
KIND_RUN = "run"
#: A run ``kdspec report`` logs under a study's parent run per population (teacher, NDS, DS at
#: one T): the mean, sd and n over seeds of the headline metrics (kdspec.analysis.summary_runs).
KIND_SUMMARY = "summary"
TAG_SUMMARY_KEY = "kdspec.summary_key"  # the population: "<role>:<T>" ("teacher:", "distilled:4")
TAG_SUMMARY_DIGEST = "kdspec.summary_digest"  # hash of the values it last logged
TAG_SUMMARY_OF = "kdspec.summary_of"  # the study's plan hash (never kdspec.plan_hash: parents')

# Metrics
METRIC_TRAIN_LOSS = "train_loss"
METRIC_TEST_ACC = "test_acc"
METRIC_VAL_ACC = "val_acc"  # accuracy on the held-out validation split (dataset validation = f)
METRIC_LR = "lr"
METRIC_TEMPERATURE = "temperature"

# Artifacts (paths relative to the run's artifact root)
ARTIFACT_PLAN = "plan.json"
ARTIFACT_SPEC = "spec.kdspec"
ARTIFACT_PREDICTIONS = "predictions.npz"
ARTIFACT_CLASS_ACCURACY = "class_accuracy.json"
ARTIFACT_CONFUSION = "confusion.npy"
ARTIFACT_CHECKPOINT_DIR = "checkpoints"
ARTIFACT_FINAL_CHECKPOINT = "checkpoints/final.pt"
ARTIFACT_LAST_CHECKPOINT = "checkpoints/last.pt"
ARTIFACT_REPORT_DIR = "report"
#: A report of an incomplete study: logged here, never over a complete one in ``report/``.
ARTIFACT_PARTIAL_REPORT_DIR = "report-partial"

# Keys inside predictions.npz: int64 arrays of length n_test, aligned by test-sample index.
PRED_Y_TRUE = "y_true"
PRED_Y_PRED = "y_pred"
#: Every per-sample attribute of the test set is stored as "attr/<name>" (int array), so a later
#: analysis can pick any sensitive attribute without retraining.
PRED_ATTRIBUTE_PREFIX = "attr/"
#: With an ``individual_fairness`` declaration: "individual/indices" (int64 [n] test indices),
#: "individual/probabilities" (float32 [n, C]), "individual/pairs" (int32 [P, 2] positions into
#: the indices), "individual/distances" (float32 [P]) and "individual/declaration" (JSON).
PRED_INDIVIDUAL_PREFIX = "individual/"


def temperature_param(temperature: float) -> str:
    """A temperature as an MLflow param (a string) that sorts in numeric order: ``0002``,
    ``0010``, ``0002.5`` (params sort as text, where '10.0' would come before '2.0')."""
    whole, _, fraction = f"{temperature:g}".partition(".")
    return f"{int(whole):04d}" + (f".{fraction}" if fraction else "")
