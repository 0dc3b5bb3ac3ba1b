"""Tiny datasets written in each dataset's exact on-disk layout, for torchvision's real readers.

Only the md5 check is bypassed (``skip_md5``): torchvision's CIFAR, SVHN and CelebA readers
compare every file with the published checksum, which tiny test files cannot match.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from kdspec.catalogue.facts import CELEBA_ATTRIBUTES


def skip_md5(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make torchvision's integrity check test existence only (its md5 comparison is skipped).

    The readers call the module-level ``check_integrity(path, md5)`` both from
    ``_check_integrity`` and (CIFAR) from ``_load_meta``, so that function is the narrowest seam.
    """
    import torchvision.datasets.celeba as celeba_module
    import torchvision.datasets.cifar as cifar_module
    import torchvision.datasets.svhn as svhn_module

    def exists(path: str | Path, md5: str | None = None) -> bool:
        return Path(path).is_file()

    for module in (cifar_module, svhn_module, celeba_module):
        monkeypatch.setattr(module, "check_integrity", exists)


def _random_images(rng: np.random.Generator, count: int, size: int = 32) -> np.ndarray:
    return rng.integers(0, 256, (count, 3, size, size), dtype=np.uint8)


def _pickle(path: Path, payload: dict[str, object]) -> None:
    with path.open("wb") as handle:
        pickle.dump(payload, handle)


def write_cifar10(root: Path, per_batch: int = 4, test: int = 6, seed: int = 0) -> np.ndarray:
    """``root/cifar-10-batches-py/``: five data batches, test_batch, batches.meta. Returns the
    test images ``[N, 3, 32, 32]`` in file order."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for k in range(1, 6):
        images = _random_images(rng, per_batch)
        _pickle(folder / f"data_batch_{k}", {
            "data": images.reshape(per_batch, -1), "labels": rng.integers(0, 10, per_batch).tolist(),
        })
    test_images = _random_images(rng, test)
    _pickle(folder / "test_batch", {"data": test_images.reshape(test, -1),
                                    "labels": list(range(test))})
    _pickle(folder / "batches.meta", {"label_names": [f"class{i}" for i in range(10)]})
    return test_images


def write_cifar100(root: Path, train: int = 8, test: int = 5, seed: int = 0) -> None:
    """``root/cifar-100-python/``: train, test (fine and coarse labels) and meta."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    for name, count in (("train", train), ("test", test)):
        _pickle(folder / name, {
            "data": _random_images(rng, count).reshape(count, -1),
            "fine_labels": rng.integers(0, 100, count).tolist(),
            "coarse_labels": rng.integers(0, 20, count).tolist(),
        })
    _pickle(folder / "meta", {"fine_label_names": [f"fine{i}" for i in range(100)],
                              "coarse_label_names": [f"coarse{i}" for i in range(20)]})


def write_svhn(root: Path, train: int = 7, test: int = 4, seed: int = 0) -> np.ndarray:
    """``root/train_32x32.mat`` and ``test_32x32.mat``: X ``[32, 32, 3, N]``, y in 1..10 (10 is
    the digit 0). Returns the test labels as written."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    labels = {}
    for name, count in (("train", train), ("test", test)):
        x = _random_images(rng, count).transpose(2, 3, 1, 0)  # [H, W, C, N]
        y = rng.integers(1, 11, (count, 1)).astype(np.uint8)
        scipy.io.savemat(root / f"{name}_32x32.mat", {"X": x, "y": y})
        labels[name] = y[:, 0]
    return labels["test"]


def write_celeba(root: Path, attributes: np.ndarray, partition: np.ndarray,
                 width: int = 18, height: int = 22, seed: int = 0) -> None:
    """``root/celeba/``: img_align_celeba/*.jpg and the five annotation files.

    ``attributes`` int 0/1 ``[N, 40]``; ``partition`` 0 train, 1 valid, 2 test, ``[N]``.
    """
    rng = np.random.default_rng(seed)
    folder = root / "celeba"
    images = folder / "img_align_celeba"
    images.mkdir(parents=True)
    names = [f"{i + 1:06d}.jpg" for i in range(len(partition))]
    for name in names:
        pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(images / name, quality=95)
    count = len(names)
    signed = attributes * 2 - 1
    lines = [str(count), " ".join(CELEBA_ATTRIBUTES)]
    lines += [f"{n} " + " ".join(str(v) for v in row) for n, row in zip(names, signed, strict=True)]
    (folder / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
    (folder / "list_eval_partition.txt").write_text(
        "".join(f"{n} {p}\n" for n, p in zip(names, partition, strict=True)))
    (folder / "identity_CelebA.txt").write_text("".join(f"{n} {i % 7 + 1}\n"
                                                        for i, n in enumerate(names)))
    (folder / "list_bbox_celeba.txt").write_text(
        f"{count}\nimage_id x_1 y_1 width height\n"
        + "".join(f"{n} 1 2 {width - 2} {height - 3}\n" for n in names))
    landmark_header = ("lefteye_x lefteye_y righteye_x righteye_y nose_x nose_y "
                       "leftmouth_x leftmouth_y rightmouth_x rightmouth_y")
    (folder / "list_landmarks_align_celeba.txt").write_text(
        f"{count}\n{landmark_header}\n" + "".join(f"{n} " + " ".join(["5"] * 10) + "\n"
                                                  for n in names))


def write_image_folder(root: Path, classes: tuple[str, ...], per_class: int,
                       size: tuple[int, int] = (40, 30), seed: int = 0) -> None:
    """``root/<class>/<k>.png`` tiny RGB images (ImageNet's train/ and val/ layout)."""
    rng = np.random.default_rng(seed)
    for name in classes:
        folder = root / name
        folder.mkdir(parents=True)
        for k in range(per_class):
            pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{k}.png")


def write_tiny_imagenet(root: Path, classes: int = 200, train_per_class: int = 1,
                        val: int = 6, seed: int = 0) -> list[str]:
    """The unpacked ``tiny-imagenet-200`` layout with ``classes`` wnid folders of 64x64 JPEGs
    (``train/<wnid>/images/<wnid>_<k>.JPEG``, ``<wnid>_boxes.txt``), ``val/images`` and
    ``val/val_annotations.txt``; the wnids, sorted (class c is the c-th)."""
    rng = np.random.default_rng(seed)
    folder = root / "tiny-imagenet-200"
    wnids = [f"n{1_000_000 + 7 * i:08d}" for i in range(classes)]
    for wnid in wnids:
        images = folder / "train" / wnid / "images"
        images.mkdir(parents=True)
        lines = []
        for k in range(train_per_class):
            pixels = rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(images / f"{wnid}_{k}.JPEG", format="JPEG")
            lines.append(f"{wnid}_{k}.JPEG\t0\t0\t63\t63")
        (folder / "train" / wnid / f"{wnid}_boxes.txt").write_text("\n".join(lines) + "\n")
    (folder / "val" / "images").mkdir(parents=True)
    annotations = []
    for k in range(val):
        wnid = wnids[(k * 37) % classes]
        Image.fromarray(rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)).save(
            folder / "val" / "images" / f"val_{k}.JPEG", format="JPEG")
        annotations.append(f"val_{k}.JPEG\t{wnid}\t1\t2\t60\t61")
    (folder / "val" / "val_annotations.txt").write_text("\n".join(annotations) + "\n")
    (folder / "test" / "images").mkdir(parents=True)  # unlabelled in the official zip
    (folder / "wnids.txt").write_text("\n".join(reversed(wnids)) + "\n")
    return sorted(wnids)
