"""The papers' formulas written out with Python floats (double precision), one sample or one
element at a time: the independent computations the method tests compare against."""

from __future__ import annotations

import math

Row = list[float]

#: Double-precision round-off of a few dozen operations on values of order 1 is ~1e-15; the
#: tests allow 1e-12, three orders of magnitude of slack and still far below any real error.
FLOAT64_TOLERANCE = 1e-12


def softmax(row: Row, temperature: float = 1.0) -> Row:
    top = max(row)
    exps = [math.exp((v - top) / temperature) for v in row]
    total = sum(exps)
    return [e / total for e in exps]


def kl(p: Row, q: Row) -> float:
    """KL(p || q) with 0 log 0 = 0."""
    return sum(a * math.log(a / b) for a, b in zip(p, q, strict=True) if a > 0)


def mean(values: Row) -> float:
    return sum(values) / len(values)


def sample_sd(values: Row) -> float:
    m = mean(values)
    return math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))


def pearson(u: Row, v: Row) -> float:
    """Pearson's correlation, as statistics defines it (no epsilon)."""
    mu, mv = mean(u), mean(v)
    cov = sum((a - mu) * (b - mv) for a, b in zip(u, v, strict=True))
    return cov / math.sqrt(sum((a - mu) ** 2 for a in u) * sum((b - mv) ** 2 for b in v))


def centred_norm(u: Row) -> float:
    m = mean(u)
    return math.sqrt(sum((a - m) ** 2 for a in u))
