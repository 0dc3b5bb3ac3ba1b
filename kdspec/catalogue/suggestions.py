"""Did-you-mean hints for unknown names, shared by the compiler's diagnostics and the registry
of architectures and datasets (which knows plugin, torchvision and timm names too)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

#: Beyond this many candidates a hint lists the first ones and "...".
LISTED = 12


def did_you_mean(word: str, candidates: Iterable[str], what: str) -> str:
    """A help line: the closest candidate if one is close, else the list of known ``what``."""
    options = sorted(set(candidates))
    by_lower = {c.lower(): c for c in options}
    if word.lower() in by_lower:
        return f"did you mean '{by_lower[word.lower()]}'?"
    close = difflib.get_close_matches(word, options, n=5, cutoff=0.6) or [
        by_lower[c] for c in difflib.get_close_matches(word.lower(), list(by_lower), n=5,
                                                       cutoff=0.6)
    ]
    if close:
        # difflib ties often (resnet2O is as "close" to resnet32 as to resnet20): fewest edits wins.
        best = min(close, key=lambda c: edit_distance(word.lower(), c.lower()))
        return f"did you mean '{best}'?"
    if not options:
        return f"there are no {what} here"
    return f"{what}: " + ", ".join(options[:LISTED]) + (", ..." if len(options) > LISTED else "")


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance: the fewest single-character insertions, deletions, substitutions."""
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1,
                               previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]
