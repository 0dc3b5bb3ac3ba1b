"""Individual fairness: the metric against hand computations, the invariances its definition
implies, the pairs against a brute-force search, what a run stores and reads back, and the
claim's error rate on null studies (simulated) and its power on a planted trend."""

from __future__ import annotations

import io
import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from kdspec.analysis.claims import individual_fairness_trend
from kdspec.analysis.individual_fairness import (
    GroupIndividualFairness,
    IndividualFairnessResult,
    PairScore,
    RunIndividualFairness,
    individual_fairness,
    run_individual_fairness,
)
from kdspec.analysis.paper_results import paper_individual_fairness
from kdspec.analysis.records import GroupKey, RunPredictions, StoredIndividualOutputs, StudyRecords
from kdspec.analysis.store_reader import parse_individual_outputs
from kdspec.plan import IndividualFairnessSpec
from kdspec.runtime.evaluation import Evaluation
from kdspec.runtime.individual_outputs import (
    IndividualOutputs,
    bag_of_tokens,
    individual_outputs,
    sample_indices,
    similar_pairs,
)
from kdspec.runtime.interfaces import Batch
from tests.factories import tiny_plan

PROBS = np.array([[0.7, 0.2, 0.1],
                  [0.1, 0.8, 0.1],
                  [0.6, 0.3, 0.1]])
PAIRS = np.array([[0, 1], [0, 2], [1, 2]])
DISTANCES = np.array([2.0, 0.5, 4.0])


def test_total_variation_ratio_by_hand() -> None:
    # TV(0,1) = (0.6+0.6+0)/2 = 0.6; TV(0,2) = (0.1+0.1+0)/2 = 0.1; TV(1,2) = (0.5+0.5)/2 = 0.5
    expected = (0.6 / 2.0 + 0.1 / 0.5 + 0.5 / 4.0) / 3
    score = individual_fairness(PROBS, PAIRS, DISTANCES, "probabilities")
    assert score == PairScore(pytest.approx(expected), 3, 0)  # type: ignore[arg-type]


def test_confidence_ratio_by_hand() -> None:
    # top-class probabilities 0.7, 0.8, 0.6
    expected = (0.1 / 2.0 + 0.1 / 0.5 + 0.2 / 4.0) / 3
    assert individual_fairness(PROBS, PAIRS, DISTANCES, "confidence").value == \
        pytest.approx(expected)


def test_a_constant_model_scores_zero() -> None:
    constant = np.tile([[0.5, 0.3, 0.2]], (3, 1))
    for output in ("probabilities", "confidence"):
        assert individual_fairness(constant, PAIRS, DISTANCES, output).value == 0.0


def test_invariances_of_the_definition() -> None:
    base = individual_fairness(PROBS, PAIRS, DISTANCES, "probabilities").value
    # relabelling the classes changes nothing
    assert individual_fairness(PROBS[:, [2, 0, 1]], PAIRS, DISTANCES,
                               "probabilities").value == pytest.approx(base)
    # a pair read either way round, and the pairs in any order
    assert individual_fairness(PROBS, PAIRS[:, ::-1], DISTANCES,
                               "probabilities").value == pytest.approx(base)
    order = np.array([2, 0, 1])
    assert individual_fairness(PROBS, PAIRS[order], DISTANCES[order],
                               "probabilities").value == pytest.approx(base)
    # distances c times larger: I is c times smaller
    assert individual_fairness(PROBS, PAIRS, 10 * DISTANCES,
                               "probabilities").value == pytest.approx(base / 10)
    # renumbering the sampled images (probabilities and pairs together)
    perm = np.array([1, 2, 0])
    inverse = np.argsort(perm)
    assert individual_fairness(PROBS[perm], inverse[PAIRS], DISTANCES,
                               "probabilities").value == pytest.approx(base)


def test_pairs_at_distance_zero_are_left_out_and_counted() -> None:
    distances = np.array([2.0, 0.0, 4.0])
    score = individual_fairness(PROBS, PAIRS, distances, "probabilities")
    assert score.pairs_used == 2 and score.zero_distance == 1
    assert score.value == pytest.approx((0.6 / 2.0 + 0.5 / 4.0) / 2)
    assert math.isnan(individual_fairness(PROBS, PAIRS, np.zeros(3), "probabilities").value)


def _brute_force_nearest(x: np.ndarray, k: int, distance: str) -> set[tuple[int, int]]:
    n = len(x)
    pairs = set()
    for i in range(n):
        if distance == "euclidean":
            d = np.linalg.norm(x - x[i], axis=1)
        else:
            unit = x / np.linalg.norm(x, axis=1, keepdims=True)
            d = 1 - unit @ unit[i]
        d[i] = np.inf
        for j in np.argsort(d, kind="stable")[:k]:
            pairs.add((i, int(j)))
    return pairs


@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
def test_nearest_pairs_match_a_brute_force_search(distance: str) -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(40, 7))
    spec = IndividualFairnessSpec(distance=distance, neighbours=4)  # type: ignore[arg-type]
    pairs, distances = similar_pairs(torch.as_tensor(x), spec)
    assert {tuple(p) for p in pairs.tolist()} == _brute_force_nearest(x, 4, distance)
    a, b = x[pairs[:, 0]], x[pairs[:, 1]]
    if distance == "euclidean":
        expected = np.linalg.norm(a - b, axis=1)
    else:
        expected = 1 - (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    np.testing.assert_allclose(distances, expected, rtol=1e-5, atol=1e-6)


def test_random_pairs_are_distinct_partners_with_their_distances() -> None:
    x = np.random.default_rng(4).normal(size=(30, 5))
    spec = IndividualFairnessSpec(pairs="random", neighbours=6)
    pairs, distances = similar_pairs(torch.as_tensor(x), spec)
    assert pairs.shape == (180, 2)
    assert (pairs[:, 0] != pairs[:, 1]).all()
    for i in range(30):
        partners = pairs[pairs[:, 0] == i, 1]
        assert len(set(partners.tolist())) == 6
    np.testing.assert_allclose(distances, np.linalg.norm(x[pairs[:, 0]] - x[pairs[:, 1]],
                                                         axis=1), rtol=1e-5)
    again, _ = similar_pairs(torch.as_tensor(x), spec)
    assert (again == pairs).all()  # seeded: every run of a study gets the same pairs


def test_sample_indices_are_seeded_distinct_and_capped() -> None:
    first = sample_indices(1000, 100)
    assert (first == sample_indices(1000, 100)).all()
    assert len(set(first.tolist())) == 100 and (np.diff(first) > 0).all()
    assert (sample_indices(50, 100) == np.arange(50)).all()


class _TestSplit:
    """A tiny test split in the EvalSource shape."""

    def __init__(self, images: torch.Tensor) -> None:
        self.images = images
        self.num_samples = len(images)
        self.labels = np.zeros(len(images), dtype=np.int64)
        self.attributes: dict[str, np.ndarray] = {}

    def batches(self, *, batch_size: int):  # type: ignore[no-untyped-def]
        for start in range(0, self.num_samples, batch_size):
            chunk = self.images[start:start + batch_size]
            yield Batch(inputs=chunk, labels=torch.zeros(len(chunk), dtype=torch.long),
                        index=torch.arange(start, start + len(chunk)), view=None)


def test_a_model_outputs_round_trip_through_predictions_npz(tmp_path: Path) -> None:
    torch.manual_seed(0)
    images = torch.randn(64, 1, 4, 4)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    spec = IndividualFairnessSpec(samples=20, neighbours=2)
    outputs = individual_outputs(model, _TestSplit(images), spec, batch_size=16)
    chosen = images[torch.as_tensor(outputs.indices)]
    with torch.no_grad():
        expected = torch.softmax(model(chosen), dim=1).numpy()
    np.testing.assert_allclose(outputs.probabilities, expected, rtol=1e-5, atol=1e-6)
    pairs, distances = similar_pairs(chosen.reshape(20, -1), spec)
    assert (outputs.pairs == pairs).all()
    evaluation = Evaluation(y_true=np.zeros(64, np.int64), y_pred=np.zeros(64, np.int64),
                            confusion=np.zeros((3, 3), np.int64), class_accuracy=np.zeros(3),
                            attributes={}, individual=outputs)
    path = tmp_path / "predictions.npz"
    path.write_bytes(evaluation.predictions_npz())
    stored = parse_individual_outputs(path)
    assert stored is not None
    np.testing.assert_allclose(stored.probabilities, outputs.probabilities)
    np.testing.assert_allclose(stored.distances, distances, rtol=1e-6)
    assert IndividualFairnessSpec.model_validate_json(stored.declaration) == spec


def test_inconsistent_stored_arrays_are_named(tmp_path: Path) -> None:
    outputs = IndividualOutputs(indices=np.arange(3), probabilities=PROBS.astype(np.float32),
                                pairs=np.array([[0, 5]]), distances=np.array([1.0]),
                                declaration=IndividualFairnessSpec().model_dump_json())
    buffer = io.BytesIO()
    np.savez(buffer, **outputs.arrays())
    path = tmp_path / "predictions.npz"
    path.write_bytes(buffer.getvalue())
    with pytest.raises(ValueError, match="pairs point outside the 3 sampled images"):
        parse_individual_outputs(path)


def _run(individual: StoredIndividualOutputs | None,
         y_true: np.ndarray | None = None) -> RunPredictions:
    labels = np.zeros(3, np.int64) if y_true is None else y_true
    return RunPredictions(kdspec_id="abc", mlflow_run_id="m", role="student", seed=0,
                          temperature=None, y_true=labels, y_pred=labels, individual=individual)


def test_runs_without_outputs_or_under_another_declaration_are_left_out_with_the_reason(
        ) -> None:
    spec = IndividualFairnessSpec(samples=3, neighbours=1)
    assert "stored no individual-fairness outputs" in str(run_individual_fairness(_run(None),
                                                                                  spec))
    other = StoredIndividualOutputs(PROBS, PAIRS, DISTANCES,
                                    IndividualFairnessSpec(samples=4).model_dump_json(),
                                    np.arange(3))
    assert "another declaration" in str(run_individual_fairness(_run(other), spec))
    same = StoredIndividualOutputs(PROBS, PAIRS, DISTANCES, spec.model_dump_json(),
                                   np.arange(3))
    scored = run_individual_fairness(_run(same), spec)
    assert isinstance(scored, RunIndividualFairness)
    assert scored.confidence == pytest.approx((0.7 + 0.8 + 0.6) / 3)


TEMPERATURES = (1.0, 2.0, 4.0, 6.0, 8.0)


def _records() -> StudyRecords:
    plan = tiny_plan(temperatures=TEMPERATURES, seeds=(0, 1, 2, 3))
    study = plan.studies[0].model_copy(update={"individual_fairness": IndividualFairnessSpec()})
    return StudyRecords(study=study, runs=(), problems=(), parent_run_id=None, tracking_uri="")


def _result(values: np.ndarray, confidence: np.ndarray) -> IndividualFairnessResult:
    """values, confidence: [seeds, temperatures] of the DS."""
    runs = tuple(
        RunIndividualFairness(f"{s}-{t}", GroupKey("distilled", t), s,
                              PairScore(float(values[s, k]), 100, 0), float(confidence[s, k]))
        for s, (k, t) in itertools.product(range(values.shape[0]), enumerate(TEMPERATURES)))
    groups = tuple(GroupIndividualFairness(GroupKey("distilled", t), values.shape[0], 0.0, 0.0,
                                           0.5) for t in TEMPERATURES)
    return IndividualFairnessResult(IndividualFairnessSpec(), runs, groups, (), None)


def test_the_trend_claim_keeps_its_error_rate_on_null_studies() -> None:
    """I(f) does not depend on T; seeds share a per-seed level (correlated temperatures)."""
    records = _records()
    rng = np.random.default_rng(11)
    reps, hits = 600, 0
    for _ in range(reps):
        level = 0.04 + 0.01 * rng.normal(size=(4, 1))
        values = level + 0.004 * rng.normal(size=(4, len(TEMPERATURES)))
        test = individual_fairness_trend(_result(values, np.full_like(values, 0.8)),
                                         records).test
        hits += test.p_value < 0.05
    rate = hits / reps
    assert rate <= 0.05 + 2 * math.sqrt(0.05 * 0.95 / reps), rate


def test_the_trend_claim_finds_a_planted_fall_and_flags_flatter_outputs() -> None:
    records = _records()
    rng = np.random.default_rng(12)
    ts = np.array(TEMPERATURES)
    values = 0.045 - 0.001 * ts + 0.0005 * rng.normal(size=(4, len(ts)))
    flat = 0.9 - 0.03 * ts + np.zeros((4, 1))
    draft = individual_fairness_trend(_result(values, flat), records)
    assert draft.test.p_value < 0.01
    assert draft.test.flag.startswith("flatter outputs")
    confident = individual_fairness_trend(_result(values, 0.9 + 0.0 * flat), records)
    assert confident.test.flag == ""


def test_the_paper_table_4_columns() -> None:
    trifeature = paper_individual_fairness("trifeature", "resnet20", "lenet5")
    assert trifeature is not None and trifeature.nds == 0.0462
    assert trifeature.distilled[10.0] == 0.0338
    slope = trifeature.slope(TEMPERATURES)
    assert slope is not None and slope < 0
    assert paper_individual_fairness("trifeature", "resnet56", "lenet5") is None


def test_the_summary_names_the_flag_a_claim_carries() -> None:
    from kdspec.analysis.claims import ClaimTest
    from kdspec.analysis.report_summary import verdict_label

    base = ClaimTest("c", "t", "a", "r", 0.2, verdict="not supported")
    assert verdict_label(base, provisional=False) == "not supported"
    flat = ClaimTest("c", "t", "a", "r", 0.2, verdict="not supported",
                     flag="flatter outputs: the DS's mean top-class probability falls")
    assert verdict_label(flat, provisional=False) == "not supported (flatter outputs)"
    down = ClaimTest("c", "t", "a", "r", 0.2, verdict="supported",
                     flag="levelling down: DS accuracy -3.0 points vs NDS")
    assert verdict_label(down, provisional=False) == "supported (levelling down)"
    assert verdict_label(down, provisional=True) == "provisional: supported (levelling down)"
    assert verdict_label(down, provisional=False, whole_flag=True) == \
        "supported (levelling down: DS accuracy -3.0 points vs NDS)"


def test_output_and_same_label_are_analysis_choices_on_the_same_stored_pairs() -> None:
    made = IndividualFairnessSpec(samples=3, neighbours=1)
    stored = StoredIndividualOutputs(PROBS, PAIRS, DISTANCES, made.model_dump_json(),
                                     np.array([5, 6, 7]))
    # test samples 5, 6, 7 have classes 0, 1, 0: only the pair (0, 2) shares its class
    y_true = np.zeros(8, np.int64)
    y_true[6] = 1
    run = _run(stored, y_true)
    confidence = run_individual_fairness(
        run, made.model_copy(update={"output": "confidence"}))
    assert isinstance(confidence, RunIndividualFairness)
    assert confidence.score.value == pytest.approx((0.1 / 2.0 + 0.1 / 0.5 + 0.2 / 4.0) / 3)
    within = run_individual_fairness(run, made.model_copy(update={"same_label": True}))
    assert isinstance(within, RunIndividualFairness)
    assert within.score.pairs_used == 1
    assert within.score.value == pytest.approx(0.1 / 0.5)


def test_a_post_is_its_bag_of_tokens_without_special_ids() -> None:
    ids = torch.tensor([[2, 7, 9, 7, 3, 0, 0],
                        [2, 9, 5, 3, 0, 0, 0],
                        [2, 7, 7, 9, 3, 0, 0]])
    counts = bag_of_tokens(ids, ignore=(0, 2, 3))
    # columns: ids 5, 7, 9 (the distinct ids used, special ids left out)
    np.testing.assert_array_equal(counts.numpy(), [[0, 2, 1], [1, 0, 1], [0, 2, 1]])
    # word order does not matter: posts 0 and 2 are the same bag, distance 0
    spec = IndividualFairnessSpec(samples=3, neighbours=1, distance="euclidean")
    pairs, distances = similar_pairs(counts, spec)
    assert pairs[0].tolist() == [0, 2] and distances[0] == 0.0
    assert distances[1] == pytest.approx(math.sqrt(1 + 4 + 0))  # post 1 to post 0 (or 2)


def test_token_inputs_are_compared_as_bags_of_tokens() -> None:
    ids = torch.tensor([[2, 7, 9, 3, 0], [2, 9, 7, 3, 0], [2, 5, 5, 3, 0], [2, 5, 3, 0, 0]])

    class Split(_TestSplit):
        special_ids = (0, 2, 3)

    model = torch.nn.Sequential(torch.nn.Embedding(10, 4), torch.nn.Flatten(),
                                torch.nn.Linear(20, 3))
    outputs = individual_outputs(model, Split(ids), IndividualFairnessSpec(
        samples=4, neighbours=1, distance="cosine"), batch_size=2)
    nearest = dict(zip(outputs.pairs[:, 0].tolist(), outputs.pairs[:, 1].tolist(),
                       strict=True))
    assert nearest[0] == 1 and nearest[1] == 0  # same words, other order
    assert nearest[2] == 3 and outputs.distances[2] == pytest.approx(0.0, abs=1e-6)
