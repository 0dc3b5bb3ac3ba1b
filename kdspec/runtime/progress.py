"""Progress on stderr and the run log file.

Every message goes to the log file ``.kdspec/logs/<time>-<host>-<pid>.log`` (tracebacks too, at
DEBUG). On stderr, by what stderr is:

- a terminal: a tqdm bar per lockstep group over its epochs and one per epoch over its batches,
  each with its ETA, and after every epoch one line per member with its own loss and accuracy
  (a group's members train at different temperatures, so a mean would say nothing);
- a file or a pipe (Slurm, ``make run 2>log``): no bars and no cursor codes; one timestamped
  line per epoch per run: study, the run's place in the plan, epoch, loss, accuracy, seconds per
  epoch and the plan's ETA;
- ``--quiet``: only run-level lines (training, finished, failed).

The plan's ETA comes from :class:`PlanClock`: the work done so far, in the scheduler's cost
units (:func:`kdspec.runtime.scheduling.run_cost`), against the time it took.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from tqdm import tqdm

from kdspec.plan import Run

LOGGER_NAME = "kdspec.run"
ConsoleMode = Literal["bars", "lines", "quiet"]


def console_mode(*, quiet: bool, stream: object = None) -> ConsoleMode:
    """``quiet`` wins; otherwise bars on a terminal, lines anywhere else."""
    if quiet:
        return "quiet"
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    return "bars" if callable(isatty) and isatty() else "lines"


class _TqdmHandler(logging.StreamHandler):
    """Console lines written around the bars (tqdm.write), not through them."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # pragma: no cover - logging must never raise
            self.handleError(record)


def open_log(log_dir: Path, *, quiet: bool, to_file: bool = True
             ) -> tuple[logging.Logger, Path | None]:
    """A logger writing every message (tracebacks included, at DEBUG) to a new file under
    ``log_dir`` and, from INFO up, to stderr (timestamped when stderr is not a terminal).
    Returns the logger and the file's path; with ``to_file`` False (``--dry-run``) there is no
    file and the path is None."""
    # Host and process id in the name: processes of one `accelerate launch` (or shards on a
    # shared filesystem) start in the same second and must not append to one file.
    stamp = time.strftime("%Y%m%d-%H%M%S")
    # A random suffix too: in a PID namespace (a container, `unshare --pid`) every task is pid 1.
    path = log_dir / f"{stamp}-{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}.log"
    logger = logging.getLogger(f"{LOGGER_NAME}.{path.stem}")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    if to_file:
        log_dir.mkdir(parents=True, exist_ok=True)
        file_handler = logging.FileHandler(path, encoding="utf-8")
        file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger.addHandler(file_handler)
    mode = console_mode(quiet=quiet)
    console: logging.Handler = _TqdmHandler() if mode == "bars" else logging.StreamHandler(
        sys.stderr)
    console.setLevel(logging.INFO)
    console.setFormatter(logging.Formatter(
        "kdspec run: %(message)s" if mode == "bars"
        else "%(asctime)s kdspec run: %(message)s", datefmt="%Y-%m-%d %H:%M:%S"))
    logger.addHandler(console)
    return logger, path if to_file else None


def close_log(logger: logging.Logger) -> None:
    """Flush and detach the handlers (a long-lived process may run several plans)."""
    for handler in list(logger.handlers):
        handler.close()
        logger.removeHandler(handler)


def format_duration(seconds: float) -> str:
    """``1:02:03`` (or ``4:05`` under an hour); ``?`` when unknown."""
    if seconds != seconds or seconds == float("inf") or seconds < 0:
        return "?"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


@dataclass
class PlanClock:
    """The plan's remaining time: the work left (cost units), at the rate measured so far."""

    total: float
    done: float = 0.0
    started: float = field(default_factory=time.monotonic)

    def advance(self, cost: float) -> None:
        self.done += cost

    def eta_s(self) -> float:
        if self.done <= 0:
            return float("nan")
        elapsed = time.monotonic() - self.started
        return elapsed * max(self.total - self.done, 0.0) / self.done


@dataclass(frozen=True)
class MemberEpoch:
    """What one member of a group did in one epoch (accuracy None: not evaluated)."""

    run: Run
    epoch: int
    epochs: int
    loss: float
    accuracy: float | None
    failure: str | None = None


@dataclass
class GroupProgress:
    """The progress of one lockstep group: bars, lines or nothing (see the module docstring).

    ``place``: where the group's runs sit in the plan, e.g. ``"runs 7-10/60"``; ``epoch_cost``:
    the cost units one epoch of each member adds to the clock.
    """

    label: str
    study: str
    place: str
    mode: ConsoleMode
    logger: logging.Logger
    clock: PlanClock
    epoch_cost: dict[str, float]
    batches_per_epoch: int
    names: dict[str, str] = field(default_factory=dict)
    _epoch_bar: tqdm | None = None
    _batch_bar: tqdm | None = None

    def start(self, *, epochs: int, start_epoch: int) -> None:
        if self.mode == "bars":
            self._epoch_bar = tqdm(total=epochs, initial=start_epoch, desc=self.label,
                                   unit="epoch", leave=False, dynamic_ncols=True,
                                   file=sys.stderr)

    def batch(self) -> None:
        if self.mode != "bars":
            return
        if self._batch_bar is None:
            self._batch_bar = tqdm(total=self.batches_per_epoch, desc="  epoch", unit="batch",
                                   leave=False, dynamic_ncols=True, file=sys.stderr)
        self._batch_bar.update(1)

    def epoch(self, members: Sequence[MemberEpoch], *, seconds: float) -> None:
        """One line per member (its own loss and accuracy), the clock advanced."""
        for member in members:
            self.clock.advance(self.epoch_cost.get(member.run.id, 0.0))
        if self._batch_bar is not None:
            self._batch_bar.close()
            self._batch_bar = None
        if self._epoch_bar is not None:
            self._epoch_bar.update(1)
        if self.mode == "quiet":
            return
        eta = format_duration(self.clock.eta_s())
        for member in members:
            acc = "" if member.accuracy is None else f" acc {100 * member.accuracy:.2f} %"
            failed = f" FAILED: {member.failure}" if member.failure else ""
            self.logger.info("%s %s %s epoch %d/%d loss %.4f%s %.1f s/epoch, plan ETA %s%s",
                             self.study, self.place, self.names.get(member.run.id, member.run.id),
                             member.epoch, member.epochs, member.loss, acc, seconds, eta, failed)

    def close(self) -> None:
        for bar in (self._batch_bar, self._epoch_bar):
            if bar is not None:
                bar.close()
        self._batch_bar = self._epoch_bar = None
