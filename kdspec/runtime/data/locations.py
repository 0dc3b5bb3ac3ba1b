"""Where each dataset's files are looked for, and the one error a user sees when they are not.

``root`` in a spec is the folder handed to torchvision (the one *containing*
``cifar-10-batches-py/``, ``FashionMNIST/``, ``celeba/``, ...). When the spec gives none:

- Fashion-MNIST: the Debian package's folder ``/usr/share/datasets/fashion-mnist`` (gz IDX files);
- Trifeature: ``<cache>/trifeature/trifeature-<hash of the generation options>.npz``;
- digits: scikit-learn's bundled copy (no files);
- HateXplain: ``root`` holds ``dataset.json`` and ``post_id_divisions.json`` (the authors'
  ``Data/`` folder); without one, ``<cache>/data/hatexplain``;
- everything else: ``<cache>/data``,

where ``<cache>`` is the ``cache_dir`` argument, else ``~/.cache/kdspec``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kdspec.catalogue.registry import dataset_facts
from kdspec.errors import DataError
from kdspec.plan import DatasetSpec

DEFAULT_CACHE_DIR = Path("~/.cache/kdspec")
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_FILES = (
    "train-images-idx3-ubyte", "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte",
)
TINY_IMAGENET_FOLDER = "tiny-imagenet-200"
#: Datasets whose torchvision class can download them when the spec says ``download = true``.
DOWNLOADABLE = frozenset({"cifar10", "cifar100", "svhn", "fashion_mnist", "celeba"})


def cache_root(cache_dir: Path | None) -> Path:
    """The kdspec cache folder: ``cache_dir`` or ``~/.cache/kdspec``, user-expanded."""
    return Path(cache_dir or DEFAULT_CACHE_DIR).expanduser()


#: The authors' release of HateXplain (their repository's ``Data/`` folder).
HATEXPLAIN_FILES = ("dataset.json", "post_id_divisions.json")


def hatexplain_folder(spec: DatasetSpec, cache_dir: Path | None) -> Path:
    """The folder holding HateXplain's two files: ``root`` itself, else
    ``<cache>/data/hatexplain``."""
    if spec.root is not None:
        return Path(spec.root).expanduser()
    return cache_root(cache_dir) / "data" / "hatexplain"


def data_root(spec: DatasetSpec, cache_dir: Path | None) -> Path:
    """The folder handed to torchvision for ``spec`` (see the module docstring)."""
    if spec.root is not None:
        return Path(spec.root).expanduser()
    return cache_root(cache_dir) / "data"


def missing_data_error(spec: DatasetSpec, path: Path, detail: str = "") -> DataError:
    """The one message for absent data: what was looked for, where, and how to get it."""
    how = dataset_facts(spec.name).how_to_get
    allow = ""
    if spec.name in DOWNLOADABLE and not spec.download and "download = true" not in how:
        allow = " (or allow torchvision to download it: `download = true` in the dataset section)"
    extra = f" ({detail})" if detail else ""
    return DataError(f"{spec.name}: data not found at {path}{extra}. To get it: {how}{allow}")


@dataclass(frozen=True)
class FashionMnistFiles:
    """Where Fashion-MNIST is read from: a torchvision root, or a folder of the four gz files."""

    torchvision_root: Path | None  # holds FashionMNIST/raw/<name> (uncompressed)
    gzip_folder: Path | None  # holds <name>.gz (Debian layout), to be unpacked into the cache


def locate_fashion_mnist(spec: DatasetSpec, cache_dir: Path | None) -> FashionMnistFiles:
    """Find Fashion-MNIST files, or raise DataError naming every place looked at."""
    candidates = [Path(spec.root).expanduser()] if spec.root else [DEBIAN_FASHION_MNIST,
                                                                   data_root(spec, cache_dir)]
    for folder in candidates:
        raw = folder / "FashionMNIST" / "raw"
        if all((raw / name).is_file() for name in FASHION_MNIST_FILES):
            return FashionMnistFiles(torchvision_root=folder, gzip_folder=None)
        if all((folder / f"{name}.gz").is_file() for name in FASHION_MNIST_FILES):
            return FashionMnistFiles(torchvision_root=None, gzip_folder=folder)
    if spec.download:
        return FashionMnistFiles(torchvision_root=candidates[-1], gzip_folder=None)
    looked = " or ".join(str(c) for c in candidates)
    raise missing_data_error(
        spec, candidates[0],
        f"looked in {looked} for FashionMNIST/raw/*-ubyte or *-ubyte.gz",
    )


def required_files(spec: DatasetSpec, cache_dir: Path | None) -> list[Path]:
    """The files whose absence means the dataset cannot load (torchvision datasets only)."""
    root = data_root(spec, cache_dir)
    if spec.name in ("cifar10", "cifar100"):
        folder = root / ("cifar-10-batches-py" if spec.name == "cifar10" else "cifar-100-python")
        names = (["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4",
                  "data_batch_5", "test_batch", "batches.meta"] if spec.name == "cifar10"
                 else ["train", "test", "meta"])
        return [folder / n for n in names]
    if spec.name == "svhn":
        return [root / "train_32x32.mat", root / "test_32x32.mat"]
    if spec.name == "celeba":
        folder = root / "celeba"
        return [folder / "img_align_celeba", folder / "list_attr_celeba.txt",
                folder / "list_eval_partition.txt", folder / "identity_CelebA.txt",
                folder / "list_bbox_celeba.txt", folder / "list_landmarks_align_celeba.txt"]
    if spec.name == "imagenet":
        return [root / "train", root / "val"]
    if spec.name == "imagefolder":
        extra = [Path(spec.attributes_file)] if spec.attributes_file else []
        return [root / "train", root / "test", *extra]
    if spec.name == "hatexplain":
        folder = hatexplain_folder(spec, cache_dir)
        return [folder / name for name in HATEXPLAIN_FILES]
    if spec.name == "tiny_imagenet":
        folder = root / TINY_IMAGENET_FOLDER
        return [folder / "train", folder / "val" / "images", folder / "val" /
                "val_annotations.txt"]
    return []


def check_files(spec: DatasetSpec, cache_dir: Path | None) -> None:
    """Raise DataError for the first required file or folder that does not exist."""
    if spec.download and spec.name in DOWNLOADABLE:
        return
    for path in required_files(spec, cache_dir):
        if not path.exists():
            raise missing_data_error(spec, path)
