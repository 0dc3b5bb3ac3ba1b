"""Shards from --shard and Slurm, --only selection."""

from __future__ import annotations

import pytest

from kdspec.errors import KdspecError
from kdspec.runtime.run_options import Shard, parse_shard, select_runs, shard_from_env


def test_parse_shard() -> None:
    assert parse_shard("0/4") == Shard(0, 4)
    assert parse_shard(" 3 / 4 ") == Shard(3, 4)
    for bad in ("4/4", "1", "a/b", "-1/2", "0/0"):
        with pytest.raises(KdspecError, match="--shard wants I/N"):
            parse_shard(bad)


def test_slurm_array_gives_the_shard() -> None:
    assert shard_from_env({}) == Shard()
    assert shard_from_env({"SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_COUNT": "4"}) \
        == Shard(2, 4)
    # --array=1-4: ids start at 1
    assert shard_from_env({"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "4",
                           "SLURM_ARRAY_TASK_MIN": "1"}) == Shard(0, 4)


def test_only_selects_roles_ids_and_unique_prefixes() -> None:
    ids = ["aa11", "aa22", "bb33"]
    roles = {"aa11": "teacher", "aa22": "distilled", "bb33": "distilled"}
    assert select_runs(ids, roles, ()) == set(ids)
    assert select_runs(ids, roles, ("distilled",)) == {"aa22", "bb33"}
    assert select_runs(ids, roles, ("teacher", "bb")) == {"aa11", "bb33"}
    with pytest.raises(KdspecError, match="matches 2 runs"):
        select_runs(ids, roles, ("aa",))
    with pytest.raises(KdspecError, match="matches no run"):
        select_runs(ids, roles, ("zz",))
