"""The recorder's background writes: in order, off the caller's thread, errors handed back."""

from __future__ import annotations

import threading
import time

import pytest

from kdspec.runtime.write_queue import WriteQueue


def test_writes_run_in_order_on_another_thread() -> None:
    writes = WriteQueue()
    done: list[tuple[int, str]] = []
    for i in range(50):
        writes.submit(lambda i=i: done.append((i, threading.current_thread().name)))
    writes.flush()
    assert [i for i, _ in done] == list(range(50))
    assert {name for _, name in done} == {"kdspec-writes"}
    writes.close()


def test_submit_does_not_wait_for_a_slow_write() -> None:
    writes = WriteQueue()
    release = threading.Event()
    writes.submit(release.wait)
    started = time.monotonic()
    writes.submit(lambda: None)  # returns at once while the first write blocks
    assert time.monotonic() - started < 0.5
    release.set()
    writes.close()


def test_a_failed_write_drops_the_writes_after_it_and_is_raised_to_the_caller() -> None:
    writes = WriteQueue()
    done: list[int] = []
    gate = threading.Event()
    writes.submit(gate.wait)

    def boom() -> None:
        raise ConnectionError("store gone")

    writes.submit(lambda: done.append(1))
    writes.submit(boom)
    writes.submit(lambda: done.append(3))  # assumed boom's write happened: dropped
    gate.set()
    with pytest.raises(ConnectionError, match="store gone"):
        writes.flush()
    assert done == [1]
    writes.submit(lambda: done.append(4))  # the error was handed over: the queue works again
    writes.close()
    assert done == [1, 4]


def test_the_error_also_surfaces_at_the_next_submit() -> None:
    writes = WriteQueue()

    def boom() -> None:
        raise RuntimeError("disk full")

    writes.submit(boom)
    deadline = time.monotonic() + 10
    with pytest.raises(RuntimeError, match="disk full"):
        while time.monotonic() < deadline:
            writes.submit(lambda: None)
            time.sleep(0.01)
    writes.close()


def test_close_stops_the_thread_and_a_later_submit_starts_one() -> None:
    writes = WriteQueue(name="kdspec-writes-test")
    writes.submit(lambda: None)
    writes.close()
    assert not any(t.name == "kdspec-writes-test" for t in threading.enumerate())
    done: list[int] = []
    writes.submit(lambda: done.append(1))
    writes.close()
    assert done == [1]


def test_writes_queued_after_the_error_was_handed_over_all_happen() -> None:
    """Once the caller has had the error, the queue is as new: nothing later is dropped."""
    writes = WriteQueue()

    def boom() -> None:
        raise OSError("first")

    writes.submit(boom)
    with pytest.raises(OSError, match="first"):
        writes.flush()
    done: list[int] = []
    for i in range(20):
        writes.submit(lambda i=i: done.append(i))
    writes.close()
    assert done == list(range(20))
