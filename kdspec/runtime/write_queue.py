"""A writer's MLflow writes, done in order by one background thread, off the training path.

The training thread hands each write (a closure) to :meth:`WriteQueue.submit` and goes on with
the next batch; the worker performs them one at a time, in submission order, so "checkpoint
first, then the epoch's metrics and ``kdspec.last_epoch``" still holds in the store. A write
that raises stops the queue: the writes queued after it are dropped (they assumed it happened)
and the exception is raised in the training thread at its next ``submit`` or ``flush``, where the
lockstep group deals with it as if the write had failed in place (a lost claim defers the group,
an unreachable store stops the plan, anything else fails the group).

Why a thread is enough: the worker spends its time in SQLite or HTTP calls and file copies, and
the training thread in torch kernels; both release the GIL, so they overlap on any machine.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

Write = Callable[[], None]


class WriteQueue:
    """Ordered background writes; errors come back to the caller (see the module docstring)."""

    def __init__(self, name: str = "kdspec-writes") -> None:
        self._name = name
        self._queue: queue.Queue[Write | None] = queue.Queue()
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        #: Held while a failure empties the queue and while a write is queued, so every write
        #: is either queued before the failure (and dropped) or after its error was raised.
        self._lock = threading.Lock()

    def submit(self, write: Write) -> None:
        """Queue ``write``; first raise the error of an earlier write, if one failed."""
        with self._lock:
            self.raise_error()
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._work, name=self._name,
                                                daemon=True)
                self._thread.start()
            self._queue.put(write)

    def flush(self) -> None:
        """Wait until every queued write is done; raise the first error among them."""
        if self._thread is not None:
            self._queue.join()
        self.raise_error()

    def close(self) -> None:
        """Flush, then stop the worker (a later ``submit`` starts a new one). Raises like
        :meth:`flush`, after the worker is stopped."""
        try:
            self.flush()
        finally:
            if self._thread is not None and self._thread.is_alive():
                self._queue.put(None)
                self._thread.join()
            self._thread = None

    def raise_error(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def _work(self) -> None:
        while True:
            write = self._queue.get()
            try:
                if write is None:
                    return
                write()
            except BaseException as err:  # handed to the training thread, never lost
                with self._lock:
                    self._error = err
                    stop = self._drop_queued()
                if stop:
                    return
            finally:
                self._queue.task_done()

    def _drop_queued(self) -> bool:
        """Drop every queued write (each assumed the failed one happened); True when a stop
        request was among them."""
        stop = False
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return stop
            stop = stop or item is None
            self._queue.task_done()
