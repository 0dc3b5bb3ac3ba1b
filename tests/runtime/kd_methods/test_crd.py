"""CRD: the embedding heads, the memory bank's scores and updates, the NCE loss written out,
and the exact-mode contrast indices."""

from __future__ import annotations

import math

import pytest
import torch

from kdspec.runtime.kd_methods.crd import (
    NCE_EPSILON,
    ContrastMemory,
    EmbeddingHead,
    crd_loss,
    nce_loss,
)
from kdspec.runtime.kd_methods.crd_negatives import class_index, draw_contrast_indices
from tests.runtime.kd_methods.oracles import FLOAT64_TOLERANCE


def _unit(rows: list[list[float]]) -> torch.Tensor:
    t = torch.tensor(rows, dtype=torch.float64)
    return t / t.norm(dim=1, keepdim=True)


def _dot(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def test_heads_give_unit_vectors() -> None:
    head = EmbeddingHead(10, 4)
    out = head(torch.randn(5, 10))
    assert out.shape == (5, 4)
    assert torch.allclose(out.norm(dim=1), torch.ones(5), atol=1e-6)


def test_nce_loss_matches_the_formula() -> None:
    scores = torch.tensor([[0.5, 0.01, 0.2], [2.0, 0.3, 0.001]], dtype=torch.float64)
    n_data, k = 10, 2
    noise = k / n_data
    want = 0.0
    for row in scores.tolist():
        want += math.log(row[0] / (row[0] + noise + NCE_EPSILON))
        want += sum(math.log(noise / (x + noise + NCE_EPSILON)) for x in row[1:])
    assert nce_loss(scores, n_data).item() == pytest.approx(-want / 2, rel=FLOAT64_TOLERANCE)
    assert crd_loss(scores, scores, n_data).item() == pytest.approx(-want, rel=FLOAT64_TOLERANCE)


def _memory(n_data: int = 6, dim: int = 3) -> ContrastMemory:
    memory = ContrastMemory(dim, n_data, nce_k=2, nce_t=0.5, nce_m=0.25,
                            generator=torch.Generator().manual_seed(0)).double()
    memory.student_bank.copy_(_unit([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [0, 1, 1],
                                     [1, 0, 1]]))
    memory.teacher_bank.copy_(_unit([[1, 2, 3], [3, 2, 1], [1, -1, 0], [0, 1, -1], [2, 0, 1],
                                     [1, 1, 1]]))
    return memory


def test_scores_are_normalised_exponentials_of_the_other_sides_bank() -> None:
    memory = _memory()
    student, teacher = _unit([[1, 2, 2], [0, 3, 4]]), _unit([[2, 1, 2], [4, 0, 3]])
    index = torch.tensor([0, 3])
    contrast = torch.tensor([[0, 2, 5], [3, 1, 4]])
    banks_s, banks_t = memory.student_bank.tolist(), memory.teacher_bank.tolist()
    raw_s = [[math.exp(_dot(banks_t[c], v) / 0.5) for c in row]
             for v, row in zip(student.tolist(), contrast.tolist(), strict=True)]
    raw_t = [[math.exp(_dot(banks_s[c], v) / 0.5) for c in row]
             for v, row in zip(teacher.tolist(), contrast.tolist(), strict=True)]
    n_data, entries = 6, 2 * 3  # Z = N times the mean of the first batch's B x (K + 1) scores
    z_s = sum(map(sum, raw_s)) / entries * n_data
    z_t = sum(map(sum, raw_t)) / entries * n_data
    got_s, got_t = memory(student, teacher, index, contrast)
    assert got_s.tolist()[0] == pytest.approx([x / z_s for x in raw_s[0]], rel=1e-12)
    assert got_t.tolist()[1] == pytest.approx([x / z_t for x in raw_t[1]], rel=1e-12)
    assert memory.normalizers.tolist() == pytest.approx([z_s, z_t], rel=1e-12)


def test_the_batchs_rows_move_towards_its_embeddings_and_stay_unit() -> None:
    memory = _memory()
    before = memory.student_bank.clone()
    student, teacher = _unit([[1, 2, 2], [0, 3, 4]]), _unit([[2, 1, 2], [4, 0, 3]])
    memory(student, teacher, torch.tensor([0, 3]), torch.tensor([[0, 2, 5], [3, 1, 4]]))
    mixed = [0.25 * a + 0.75 * b for a, b in zip(before[3].tolist(), student[1].tolist(),
                                                  strict=True)]
    norm = math.sqrt(sum(v * v for v in mixed))
    assert memory.student_bank[3].tolist() == pytest.approx([v / norm for v in mixed],
                                                            rel=1e-12)
    untouched = [1, 2, 4, 5]
    assert torch.equal(memory.student_bank[untouched], before[untouched])


def test_the_normalisers_are_set_once_and_the_state_round_trips() -> None:
    memory = _memory()
    student, teacher = _unit([[1, 2, 2], [0, 3, 4]]), _unit([[2, 1, 2], [4, 0, 3]])
    index, contrast = torch.tensor([0, 3]), torch.tensor([[0, 2, 5], [3, 1, 4]])
    memory(student, teacher, index, contrast)
    first = memory.normalizers.clone()
    restored = _memory()
    restored.load_state_dict(memory.state_dict())
    again = memory(teacher, student, index, contrast)
    assert torch.equal(memory.normalizers, first)
    assert set(memory.state_dict()) == {"student_bank", "teacher_bank", "normalizers"}
    resumed = restored(teacher, student, index, contrast)
    assert torch.equal(again[0], resumed[0]) and torch.equal(again[1], resumed[1])


def test_gradients_reach_both_heads_through_the_scores() -> None:
    torch.manual_seed(0)
    head_s, head_t = EmbeddingHead(8, 4), EmbeddingHead(5, 4)
    memory = ContrastMemory(4, 20, nce_k=3, nce_t=0.07, nce_m=0.5)
    index = torch.tensor([0, 1])
    contrast = torch.tensor([[0, 5, 6, 7], [1, 8, 9, 10]])
    scores = memory(head_s(torch.randn(2, 8)), head_t(torch.randn(2, 5)), index, contrast)
    crd_loss(*scores, n_data=20).backward()
    for head in (head_s, head_t):
        assert head.linear.weight.grad is not None
        assert torch.isfinite(head.linear.weight.grad).all()


def test_contrast_indices_are_the_sample_then_other_classes_without_repeats() -> None:
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 3])
    classes = class_index(labels)
    index = torch.tensor([0, 4, 9])
    drawn = draw_contrast_indices(index, classes, 5, generator=torch.Generator().manual_seed(3))
    assert drawn.shape == (3, 6)
    assert drawn[:, 0].tolist() == index.tolist()
    for row, sample in zip(drawn.tolist(), index.tolist(), strict=True):
        negatives = row[1:]
        assert len(set(negatives)) == 5
        assert all(labels[n] != labels[sample] for n in negatives)
    again = draw_contrast_indices(index, classes, 5, generator=torch.Generator().manual_seed(3))
    assert torch.equal(drawn, again)


def test_more_negatives_than_other_samples_are_drawn_with_replacement() -> None:
    labels = torch.tensor([0, 0, 0, 1, 1])
    drawn = draw_contrast_indices(torch.tensor([0]), class_index(labels), 7,
                                  generator=torch.Generator().manual_seed(0))
    assert set(drawn[0, 1:].tolist()) <= {3, 4}


def test_half_precision_embeddings_score_in_float32() -> None:
    memory = ContrastMemory(4, 10, nce_k=2, nce_t=0.07, nce_m=0.5,
                            generator=torch.Generator().manual_seed(0))
    vectors = torch.nn.functional.normalize(torch.randn(2, 4), dim=1)
    scores = memory(vectors.bfloat16(), vectors.half(), torch.tensor([0, 1]),
                    torch.tensor([[0, 5, 6], [1, 7, 8]]))
    assert all(s.dtype == torch.float32 and torch.isfinite(s).all() for s in scores)
    assert crd_loss(scores[0].half(), scores[1].half(), 10).dtype == torch.float32
