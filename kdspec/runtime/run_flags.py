"""What a finished run's numbers say about whether it learned anything: at chance, or a
training loss that never fell. A teacher at chance stops its study (its students would learn
from noise); any other run is flagged, in its tags (``kdspec.flag.*``), the run table,
``kdspec status`` and the report's first screen.

**At chance.** Chance is the accuracy of the best constant guess on the test split: the largest
class's share ``p`` of its ``n`` images. A model is at chance when its accuracy is below
``p + max(3 sqrt(p (1 - p) / n), (1 - p) / 10)``: within three binomial standard errors of
guessing, or less than a tenth of the way from guessing to perfect (a Fashion-MNIST model at
12.6 % on 2,000 images, where 10 % is chance, is flagged though 5 standard errors above it).

**Loss that did not fall.** The epoch-mean training loss of the last epoch at or above that of
the first trained by this process: the recipe did not train the model (a rate too high
for an architecture without BatchNorm, a soft loss it cannot follow).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from kdspec.tracking import schema

#: Standard errors of a guess's accuracy within which a model counts as at chance.
CHANCE_STANDARD_ERRORS = 3.0
#: ... or this share of the way from chance to a perfect score.
CHANCE_SHARE_OF_RANGE = 0.1
MSG_TEACHER_AT_CHANCE = (
    "teacher at chance: test accuracy {check}; its students would be distilled from noise. "
    "Check its recipe, or its weights if it starts from a checkpoint; a deliberate random "
    "teacher is accepted with `accept_chance = true` in the teacher block"
)


@dataclass(frozen=True)
class ChanceCheck:
    """A model's test accuracy against the best constant guess on ``n`` test images of
    ``classes`` classes (``chance``: the largest class's share)."""

    accuracy: float
    chance: float
    n: int
    classes: int

    @property
    def bound(self) -> float:
        """The accuracy a model must reach not to count as at chance."""
        p = self.chance
        noise = CHANCE_STANDARD_ERRORS * math.sqrt(p * (1 - p) / max(self.n, 1))
        return p + max(noise, CHANCE_SHARE_OF_RANGE * (1 - p))

    @property
    def at_chance(self) -> bool:
        return self.accuracy < self.bound

    def describe(self) -> str:
        return (f"{100 * self.accuracy:.1f} % on {self.classes} classes, where guessing the "
                f"largest class scores {100 * self.chance:.1f} % of the {self.n} test images "
                f"(at chance below {100 * self.bound:.1f} %)")


def chance_check(confusion: np.ndarray) -> ChanceCheck:
    """The check of a model from its test confusion matrix (rows: true classes)."""
    support = confusion.sum(axis=1)
    n = int(support.sum())
    accuracy = float(np.trace(confusion)) / n if n else float("nan")
    chance = float(support.max()) / n if n else float("nan")
    return ChanceCheck(accuracy=accuracy, chance=chance, n=n,
                       classes=int((support > 0).sum()))


def loss_flag(first: tuple[int, float], last: tuple[int, float]) -> str | None:
    """Why a run's training loss is suspect, from its first and last trained epochs
    ``(epoch, mean loss)``; None when it fell."""
    (first_epoch, first_loss), (last_epoch, last_loss) = first, last
    if last_epoch <= first_epoch or last_loss < first_loss:
        return None
    return (f"training loss did not fall: {first_loss:.4g} in epoch {first_epoch}, "
            f"{last_loss:.4g} in epoch {last_epoch}")


def flag_tags(*, chance: ChanceCheck | None, loss: str | None) -> dict[str, str]:
    """The ``kdspec.flag.*`` tags of a finished run (empty when nothing is suspect)."""
    tags = {}
    if chance is not None and chance.at_chance:
        tags[schema.TAG_FLAG_AT_CHANCE] = f"at chance: {chance.describe()}"
    if loss is not None:
        tags[schema.TAG_FLAG_LOSS] = loss
    return tags
