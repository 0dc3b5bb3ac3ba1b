"""Every spec key the docs name exists in the language: an inline `key = value`, "the spec's
`key`" or "the `key` key" in any page of docs/, and the first column of the key tables of
docs/language.md, are keys some section of a spec accepts (docs that named
`disagreement_over_seeds` or `tracking_uri` were wrong)."""

from __future__ import annotations

import re
from pathlib import Path

from kdspec.dsl.dataset import DATASET_KEYS, FAIRNESS_KEYS
from kdspec.dsl.methods import METHOD_KEYS, SECTION_KEYS
from kdspec.dsl.model_init import ROLE_KEYS
from kdspec.dsl.recipes import RECIPE_KEYS, SCHEDULE_KEYS
from kdspec.dsl.study import (
    ANALYSIS_KEYS,
    DISTILL_KEYS,
    INDIVIDUAL_FAIRNESS_KEYS,
    RUNTIME_KEYS,
    STUDY_KEYS,
    TRACKING_KEYS,
)

DOCS = Path(__file__).resolve().parents[1] / "docs"
KNOWN = (set(STUDY_KEYS) | set(DISTILL_KEYS) | set(ANALYSIS_KEYS) | set(RUNTIME_KEYS)
         | set(TRACKING_KEYS) | set(INDIVIDUAL_FAIRNESS_KEYS) | set(DATASET_KEYS) | set(FAIRNESS_KEYS) | set(RECIPE_KEYS)
         | set(SCHEDULE_KEYS) | set(ROLE_KEYS) | set(METHOD_KEYS)
         | {key for keys in SECTION_KEYS.values() for key in keys}
         | {"recipe", "study", "include", "vary"})
#: Formulas in the statistics pages that look like assignments but are not spec keys.
NOT_KEYS = {"df", "se", "y_pred", "pixel", "key", "flip", "mask"}


def _named_keys() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for page in sorted(DOCS.glob("*.md")):
        text = page.read_text()
        for pattern in (r"`([a-z_]+) = [^`]*`", r"spec's\s+`([a-z_]+)`",
                        r"`([a-z_]+)` key\b"):
            for match in re.finditer(pattern, text):
                found.setdefault(match.group(1), set()).add(page.name)
    language = (DOCS / "language.md").read_text()
    for table in re.split(r"\n\n", language):
        if table.startswith("| key |"):
            for match in re.finditer(r"^\| `([a-z_]+)`", table, re.M):
                found.setdefault(match.group(1), set()).add("language.md (table)")
    return found


def test_every_key_the_docs_name_is_a_key_of_the_language() -> None:
    named = _named_keys()
    assert len(named) > 30  # the scan found the docs' keys
    unknown = {key: pages for key, pages in named.items()
               if key not in KNOWN and key not in NOT_KEYS}
    assert not unknown, unknown
