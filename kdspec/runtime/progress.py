"""Progress on stderr and the run log file.

Interactive: two tqdm bars, one per lockstep group over its epochs (last loss and accuracy in the
postfix) and one per epoch over its batches, each with its ETA. ``--quiet``: no bars, one log line
per finished run. Every message also goes to the log file ``.kdspec/logs/<timestamp>.log``.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import time
from pathlib import Path

from tqdm import tqdm

LOGGER_NAME = "kdspec.run"


def open_log(log_dir: Path, *, quiet: bool, to_file: bool = True
             ) -> tuple[logging.Logger, Path | None]:
    """A logger writing every message (tracebacks included, at DEBUG) to a new file under
    ``log_dir`` and, from INFO up, to stderr. Returns the logger and the file's path; with
    ``to_file`` False (``--dry-run``) there is no file and the path is None."""
    # Host and process id in the name: processes of one `accelerate launch` (or shards on a
    # shared filesystem) start in the same second and must not append to one file.
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = log_dir / f"{stamp}-{socket.gethostname()}-{os.getpid()}.log"
    logger = logging.getLogger(f"{LOGGER_NAME}.{path.stem}")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    if to_file:
        log_dir.mkdir(parents=True, exist_ok=True)
        file_handler = logging.FileHandler(path, encoding="utf-8")
        file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger.addHandler(file_handler)
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.INFO)
    console.setFormatter(logging.Formatter("kdspec run: %(message)s"))
    logger.addHandler(console)
    return logger, path if to_file else None


def close_log(logger: logging.Logger) -> None:
    """Flush and detach the handlers (a long-lived process may run several plans)."""
    for handler in list(logger.handlers):
        handler.close()
        logger.removeHandler(handler)


class GroupProgress:
    """The bars of one lockstep group; every method is a no-op when ``enabled`` is False."""

    def __init__(self, label: str, *, epochs: int, start_epoch: int, batches_per_epoch: int,
                 enabled: bool):
        self.enabled = enabled
        self.batches_per_epoch = batches_per_epoch
        self._epoch_bar: tqdm | None = None
        self._batch_bar: tqdm | None = None
        if enabled:
            self._epoch_bar = tqdm(total=epochs, initial=start_epoch, desc=label, unit="epoch",
                                   file=sys.stderr, position=0, leave=True, dynamic_ncols=True)

    def batch(self) -> None:
        """One batch done (opens the epoch's batch bar on its first batch)."""
        if not self.enabled:
            return
        if self._batch_bar is None:
            self._batch_bar = tqdm(total=self.batches_per_epoch, desc="  epoch", unit="batch",
                                   file=sys.stderr, position=1, leave=False,
                                   dynamic_ncols=True)
        self._batch_bar.update(1)

    def epoch(self, *, loss: float, accuracy: float | None) -> None:
        """One epoch done: close its batch bar, advance the epoch bar with loss and accuracy."""
        if not self.enabled or self._epoch_bar is None:
            return
        if self._batch_bar is not None:
            self._batch_bar.close()
            self._batch_bar = None
        postfix = {"loss": f"{loss:.4f}"}
        if accuracy is not None:
            postfix["acc"] = f"{accuracy:.4f}"
        self._epoch_bar.set_postfix(postfix)
        self._epoch_bar.update(1)

    def close(self) -> None:
        for bar in (self._batch_bar, self._epoch_bar):
            if bar is not None:
                bar.close()
        self._batch_bar = self._epoch_bar = None
