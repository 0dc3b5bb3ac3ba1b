"""A folder of images per class, and a CSV of attributes per image: what ``imagefolder`` reads.

The layout (torchvision's ``ImageFolder`` layout, once per split)::

    <root>/train/<class>/<any name>.png|.jpg|.jpeg|.bmp|.gif|.webp|.tif|.tiff
    <root>/test/<class>/<any name>...

Class ``c`` is the ``c``-th folder name of ``train/`` in sorted order (as ImageFolder numbers
them); ``test/`` may lack a class but may not add one. Files are listed in sorted order, so the
same folder gives the same arrays on every machine.

The optional CSV (``attributes = "faces.csv"`` in the spec) has a header row whose first column
is ``file`` (the image's path relative to ``<root>``, with ``/``), then one column per
attribute. Every test image needs a row (fairness is measured on the test split); train rows
are optional. Values are any text; each attribute's distinct values become groups 0, 1, ... in
sorted order (numeric order when every value is a number).

Both the compiler (class names, attribute names, the content digest that enters run ids) and
the runtime (the files to decode) read the layout through this module. It imports nothing from
kdspec but ``errors``, and nothing heavy: listing and hashing names and sizes, never pixels.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kdspec.errors import DataError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
SPLITS = ("train", "test")
#: The CSV's first header cell: the image's path relative to the root.
FILE_COLUMN = "file"
#: How many images a missing-row or empty-value error names.
LISTED_FILES = 5
MSG_MISSING_ROWS = (
    "imagefolder: {path} has no row for {count} of the {total} test images: {listed} (every "
    "test image needs one for the sensitive attributes; column '{file}' holds paths relative "
    "to the root, like 'test/<class>/<image>')")
MSG_EMPTY_VALUES = (
    "imagefolder: {path}:{line}: '{attribute}' is empty for {count} test {images}: {listed}")


@dataclass(frozen=True)
class ImageFolderLayout:
    """The images of both splits (paths relative to ``root``, ``/``-separated) and their labels."""

    root: Path
    class_names: tuple[str, ...]
    train_files: tuple[str, ...]
    train_labels: tuple[int, ...]
    test_files: tuple[str, ...]
    test_labels: tuple[int, ...]
    #: sha256 (first 16 hex) over every file's relative path, label and size: the data's
    #: identity in run ids (moving the folder keeps it; adding, removing or replacing an
    #: image of another size changes it).
    content_digest: str


def _class_folders(split_root: Path) -> list[str]:
    return sorted(p.name for p in split_root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*")
                  if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def scan_image_folder(root: Path) -> ImageFolderLayout:
    """List ``root``'s splits, or raise DataError naming what is missing or inconsistent."""
    if not root.is_dir():
        raise DataError(f"imagefolder: {root} is not a folder (expected {root}/train/<class>/ "
                        f"and {root}/test/<class>/ holding the images)")
    for split in SPLITS:
        if not (root / split).is_dir():
            raise DataError(f"imagefolder: {root / split} is missing (expected one folder per "
                            f"class under {root}/train and {root}/test)")
    classes = _class_folders(root / "train")
    if len(classes) < 2:
        raise DataError(f"imagefolder: {root / 'train'} has {len(classes)} class folder(s); a "
                        "classification study needs at least 2")
    extra = sorted(set(_class_folders(root / "test")) - set(classes))
    if extra:
        raise DataError(f"imagefolder: {root / 'test'} has class folder(s) {', '.join(extra)} "
                        f"that {root / 'train'} lacks")
    digest = hashlib.sha256()
    found: dict[str, tuple[list[str], list[int]]] = {}
    for split in SPLITS:
        files: list[str] = []
        labels: list[int] = []
        for label, name in enumerate(classes):
            folder = root / split / name
            if not folder.is_dir():
                continue
            images = _images(folder)
            if split == "train" and not images:
                raise DataError(f"imagefolder: {folder} holds no image (looked for "
                                f"{', '.join(sorted(IMAGE_SUFFIXES))})")
            for path in images:
                relative = path.relative_to(root).as_posix()
                files.append(relative)
                labels.append(label)
                digest.update(f"{relative}\0{label}\0{path.stat().st_size}\n".encode())
        if not files:
            raise DataError(f"imagefolder: {root / split} holds no image in its class folders")
        found[split] = (files, labels)
    return ImageFolderLayout(
        root=root, class_names=tuple(classes),
        train_files=tuple(found["train"][0]), train_labels=tuple(found["train"][1]),
        test_files=tuple(found["test"][0]), test_labels=tuple(found["test"][1]),
        content_digest=digest.hexdigest()[:16])


@dataclass(frozen=True)
class AttributeTable:
    """The CSV: attribute names, and per file its values (text) and the line it came from."""

    path: Path
    attributes: tuple[str, ...]
    rows: dict[str, tuple[tuple[str, ...], int]]

    def check_rows(self, attributes: tuple[str, ...], files: tuple[str, ...]) -> None:
        """Raise DataError unless every one of ``files`` has a row with a value for each of
        ``attributes``, naming the first few images without one and how many there are."""
        unknown = [a for a in attributes if a not in self.attributes]
        if unknown:
            raise DataError(f"imagefolder: {self.path} has no column {', '.join(unknown)} "
                            f"(its attributes: {', '.join(self.attributes)})")
        missing = [f for f in files if f not in self.rows]
        if missing:
            raise DataError(MSG_MISSING_ROWS.format(
                path=self.path, count=len(missing), total=len(files),
                listed=_listed(missing), file=FILE_COLUMN))
        for attribute in attributes:
            column = self.attributes.index(attribute)
            empty = [f for f in files if not self.rows[f][0][column]]
            if empty:
                raise DataError(MSG_EMPTY_VALUES.format(
                    path=self.path, line=self.rows[empty[0]][1], attribute=attribute,
                    count=len(empty), images="image" if len(empty) == 1 else "images",
                    listed=_listed(empty)))

    def codes(self, attribute: str, files: tuple[str, ...]) -> tuple[list[int], tuple[str, ...]]:
        """Each file's group index for ``attribute`` and the value of each group (sorted).

        Raises DataError naming the files without a row or with an empty value."""
        self.check_rows((attribute,), files)
        column = self.attributes.index(attribute)
        values = [self.rows[file][0][column] for file in files]
        groups = sorted(set(values), key=_value_order(set(values)))
        index = {value: i for i, value in enumerate(groups)}
        return [index[v] for v in values], tuple(groups)


def _listed(files: list[str]) -> str:
    """The first ``LISTED_FILES`` of ``files``, and how many more there are."""
    more = len(files) - LISTED_FILES
    return ", ".join(files[:LISTED_FILES]) + (f" and {more} more" if more > 0 else "")


def _value_order(values: set[str]) -> Callable[[str], str | float]:
    """Sort key of an attribute's values: numeric when every value is a number, else text."""
    try:
        for value in values:
            float(value)
    except ValueError:
        return str
    return float


def read_attribute_header(path: Path) -> tuple[str, ...]:
    """The attribute names of a CSV (its header after ``file``); DataError naming the file."""
    return read_attribute_table(path, header_only=True).attributes


def read_attribute_table(path: Path, *, header_only: bool = False) -> AttributeTable:
    """Read the attributes CSV, or raise DataError naming the file and line at fault."""
    try:
        handle = path.open(newline="", encoding="utf-8-sig")
    except OSError as error:
        raise DataError(f"imagefolder: cannot read the attributes file {path}: "
                        f"{error.strerror or error}") from error
    with handle:
        reader = csv.reader(handle)
        try:
            header = [cell.strip() for cell in next(reader, [])]
        except csv.Error as error:
            raise DataError(f"imagefolder: {path}:1: {error}") from error
        if not header or header[0] != FILE_COLUMN or len(header) < 2:
            raise DataError(f"imagefolder: {path}:1: the header must be '{FILE_COLUMN}' followed "
                            f"by one column per attribute, found {','.join(header) or 'nothing'}")
        attributes = tuple(header[1:])
        duplicate = sorted({a for a in attributes if attributes.count(a) > 1})
        if duplicate or "" in attributes:
            raise DataError(f"imagefolder: {path}:1: attribute names must be distinct and "
                            f"non-empty (found {', '.join(duplicate) or 'an empty one'})")
        rows: dict[str, tuple[tuple[str, ...], int]] = {}
        if header_only:
            return AttributeTable(path, attributes, rows)
        try:
            for cells in reader:
                line = reader.line_num
                if not cells or all(not c.strip() for c in cells):
                    continue
                if len(cells) != len(header):
                    raise DataError(f"imagefolder: {path}:{line}: {len(cells)} fields, the "
                                    f"header has {len(header)}")
                file = cells[0].strip().replace("\\", "/").removeprefix("./")
                if file in rows:
                    raise DataError(f"imagefolder: {path}:{line}: {file} already has a row "
                                    f"(line {rows[file][1]})")
                rows[file] = (tuple(c.strip() for c in cells[1:]), line)
        except csv.Error as error:
            raise DataError(f"imagefolder: {path}:{reader.line_num}: {error}") from error
    return AttributeTable(path, attributes, rows)


__all__ = ["AttributeTable", "ImageFolderLayout", "read_attribute_header",
           "read_attribute_table", "scan_image_folder"]
