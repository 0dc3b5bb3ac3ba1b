"""docs/running.md documents every option of ``kdspec run`` and the dry-run table's wording."""

from __future__ import annotations

import argparse
from pathlib import Path

from kdspec.commands import run as run_command
from kdspec.runtime.scheduling import Action
from tests.factories import tiny_plan

DOC = Path(__file__).parents[2] / "docs" / "running.md"


def test_every_option_is_documented() -> None:
    parser = argparse.ArgumentParser()
    run_command.add_arguments(parser)
    text = DOC.read_text()
    options = [o for a in parser._actions for o in a.option_strings if o.startswith("--")]
    assert "--shard" in options
    missing = [o for o in options if o != "--help" and f"`{o}" not in text]
    assert missing == []


def test_documented_actions_match_the_dry_run_wording() -> None:
    run = tiny_plan().runs[0]
    text = DOC.read_text()
    for action in (Action(run, "train"), Action(run, "reuse"),
                   Action(run, "resume", start_epoch=2)):
        word = action.describe().replace("3", "k")
        assert f"`{word}`" in text, word
