"""``kdspec`` in a subprocess with a hook that holds it at the point a test needs (the forced
interleavings of tests/runtime/test_frozen_owner.py):

    python -m tests.runtime.owner_hooks freeze ROLE N -- run SPEC ...   # SIGSTOP itself
    python -m tests.runtime.owner_hooks pause ROLE N FILE -- run SPEC ...  # wait for FILE

at the ``N``-th training step of a ``ROLE`` run (``teacher``, ``student``, ``distilled``).
``freeze`` stops the whole process, every thread included (as a suspended job, a paused VM or a
stalled mount would), at a moment when none of its threads is inside a store call (its queued
writes done, its heartbeat held off): a process frozen inside a sqlite write would hold the
database's lock, and the others would stop on "database is locked" (docs/running.md says so);
``pause`` holds only the training thread, so the process stays alive and keeps its heartbeat.
Epoch writes are made synchronous, so that the store holds an epoch's checkpoint before the
next step can be held.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

WRITERS: list[Any] = []  # the StoreWriter of each group this process opened


def _hold(mode: str, target: str) -> None:
    if mode == "freeze":
        writer = WRITERS[-1]
        writer._writes.flush()
        with writer.claim._lock:  # held by the heartbeat thread across each of its writes
            os.kill(os.getpid(), signal.SIGSTOP)
        return
    while not Path(target).exists():
        time.sleep(0.05)


def install(mode: str, role: str, step: int, target: str = "") -> None:
    from kdspec.runtime import run_writer, training

    real_step = training.train_step
    seen = {"n": 0}

    def held_step(trainee: Any, *args: Any, **kwargs: Any) -> Any:
        if trainee.run.role == role:
            seen["n"] += 1
            if seen["n"] == step:
                _hold(mode, target)
        return real_step(trainee, *args, **kwargs)

    training.train_step = held_step
    real_epoch = run_writer.StoreWriter.epoch

    def synchronous_epoch(self: Any, records: Any) -> None:
        real_epoch(self, records)
        self._writes.flush()

    run_writer.StoreWriter.epoch = synchronous_epoch  # type: ignore[method-assign]
    real_open = run_writer.StoreWriter.open

    def recorded_open(self: Any, group: Any) -> None:
        WRITERS.append(self)
        real_open(self, group)

    run_writer.StoreWriter.open = recorded_open  # type: ignore[method-assign]


def main() -> int:
    split = sys.argv.index("--")
    hook, argv = sys.argv[1:split], sys.argv[split + 1:]
    mode, role, step = hook[0], hook[1], int(hook[2])
    install(mode, role, step, hook[3] if len(hook) > 3 else "")
    from kdspec.cli import main as kdspec_main

    return kdspec_main(argv)


if __name__ == "__main__":
    sys.exit(main())
