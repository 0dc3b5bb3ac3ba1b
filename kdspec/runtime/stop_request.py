"""Stopping on a signal without losing work: SIGTERM (``scancel``, preemption, Slurm's time
limit), SIGINT (Ctrl-C) and SIGUSR1 (Slurm's warning signal, ``--signal=B:USR1@120`` forwarded
by the batch script) ask ``kdspec run`` to stop.

The first signal only sets a flag. The training loop looks at it after every batch and stops
there by raising :class:`Stopped`; the lockstep group then releases its runs (each ends KILLED with
``kdspec.interrupted`` saying why: resumable at once by any process, from the checkpoint of its
last finished epoch), the queued MLflow writes are flushed, the parent runs end KILLED, and the
command prints its summary and exits with ``128 + signal number`` (143 for SIGTERM, 130 for
SIGINT, 138 for SIGUSR1). What an interrupted epoch had trained is not saved: a run resumes at
the start of that epoch, on the same batches, so its result does not depend on the interruption.

A second signal acts at once (the handlers are put back to the defaults after the first).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType

#: The signals that ask for a stop.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)


class Stopped(Exception):
    """A stop was requested by a signal; ``signal_number`` says which."""

    def __init__(self, signal_number: int) -> None:
        self.signal_number = signal_number
        super().__init__(f"stopped by {signal.Signals(signal_number).name}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signal_number


class StopRequest:
    """The flag a signal sets, and the check the training loop makes."""

    def __init__(self) -> None:
        self.signal_number: int | None = None
        self._on_request: list[Callable[[int], None]] = []

    @property
    def requested(self) -> bool:
        return self.signal_number is not None

    def on_request(self, callback: Callable[[int], None]) -> None:
        """Call ``callback(signal_number)`` when a stop is requested (e.g. to log it)."""
        self._on_request.append(callback)

    def request(self, signal_number: int) -> None:
        """What a handler does (tests call it directly)."""
        if self.signal_number is None:
            self.signal_number = signal_number
            for callback in self._on_request:
                callback(signal_number)

    def check(self) -> None:
        """Raise :class:`Stopped` when a stop was requested."""
        if self.signal_number is not None:
            raise Stopped(self.signal_number)

    @contextlib.contextmanager
    def installed(self) -> Iterator[StopRequest]:
        """Handle the stop signals while the block runs (main thread only; elsewhere a no-op),
        then put the previous handlers back."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {s: signal.getsignal(s) for s in STOP_SIGNALS}

        def handler(number: int, frame: FrameType | None) -> None:
            # A second signal acts at once: the defaults are back for every stop signal.
            for s in STOP_SIGNALS:
                signal.signal(s, signal.default_int_handler if s == signal.SIGINT
                              else signal.SIG_DFL)
            self.request(number)

        for s in STOP_SIGNALS:
            signal.signal(s, handler)
        try:
            yield self
        finally:
            for s, old in previous.items():
                signal.signal(s, old)
