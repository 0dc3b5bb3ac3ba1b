"""Reading the files a spec names: the spec itself and what it includes.

A spec names files, and the tool reads them; so what may be read is narrow and said up front:
a regular file (not a directory, device, FIFO or socket: ``/dev/zero`` would never end and a
FIFO would block) whose name ends in ``.kdspec``, of at most ``MAX_SPEC_BYTES``, in UTF-8 (a
leading byte-order mark is dropped). Any path is allowed, absolute or outside the spec's folder
(a lab's shared recipe library lives wherever it lives); the suffix rule is what keeps ``include
"/etc/shadow"`` from being read, and a file that is refused is never shown, only named.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

#: A spec is kilobytes; a megabyte is a mistake (or not a spec at all).
MAX_SPEC_BYTES = 1 << 20
#: A plan JSON lists every run: 10,000 runs are ~20 MB.
MAX_PLAN_BYTES = 256 << 20
SPEC_SUFFIX = ".kdspec"
PLAN_SUFFIX = ".json"


class SourceFileError(Exception):
    """A named file cannot be used as a spec: ``reason`` says why, in a few words."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def read_text_file(path: str | Path, *, suffixes: tuple[str, ...], limit: int) -> str:
    """The text of ``path`` after the checks above; SourceFileError says what is wrong."""
    name = str(path)
    if not name.endswith(suffixes):
        raise SourceFileError(f"is not a {' or '.join(suffixes)} file")
    try:
        info = os.stat(name)
    except FileNotFoundError:
        raise SourceFileError("not found") from None
    except (OSError, ValueError) as err:  # a NUL in the path is a ValueError
        raise SourceFileError(f"cannot be read ({getattr(err, 'strerror', None) or err})"
                              ) from None
    if stat.S_ISDIR(info.st_mode):
        raise SourceFileError("is a directory")
    if not stat.S_ISREG(info.st_mode):
        raise SourceFileError("is not a regular file")
    if info.st_size > limit:
        raise SourceFileError(f"is {info.st_size:,} bytes; at most {limit:,}")
    try:
        with open(name, "rb") as handle:
            data = handle.read(limit + 1)  # the file may have grown since stat
    except OSError as err:
        raise SourceFileError(f"cannot be read ({err.strerror or err})") from None
    if len(data) > limit:
        raise SourceFileError(f"is more than {limit:,} bytes")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise SourceFileError("is not UTF-8 text") from None


def read_spec_file(path: str | Path) -> str:
    """A ``.kdspec`` file's text."""
    return read_text_file(path, suffixes=(SPEC_SUFFIX,), limit=MAX_SPEC_BYTES)


def read_spec_or_plan(path: str | Path) -> str:
    """A ``.kdspec`` spec or a plan ``.json`` (as ``kdspec plan --json`` writes it)."""
    limit = MAX_PLAN_BYTES if str(path).endswith(PLAN_SUFFIX) else MAX_SPEC_BYTES
    return read_text_file(path, suffixes=(SPEC_SUFFIX, PLAN_SUFFIX), limit=limit)
