"""``imagefolder``: a researcher's own images (a folder per class) and a CSV of attributes,
without a plugin: the layout and CSV checks, the spec's errors at their positions, decoding,
the cached normalisation, and a study that trains and reports fairness over a CSV column."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kdspec.catalogue.image_folder_layout import read_attribute_table, scan_image_folder
from kdspec.cli import main
from kdspec.dsl import compile_text
from kdspec.errors import DataError
from kdspec.runtime.data import load_dataset
from kdspec.runtime.data.image_folder import channel_statistics, decode_image
from tests.runtime.run_helpers import fresh_store

COLOURS = {"circle": (200, 40, 40), "square": (40, 200, 40), "star": (40, 40, 200)}


def make_folder(root: Path, *, per_class: tuple[int, int] = (24, 9), seed: int = 0) -> Path:
    """Tiny images whose colour is their class, of mixed sizes and formats (PNG and JPEG), and
    a CSV with two attributes: ``skin`` (a darker copy of half the images) and ``site``."""
    rng = np.random.default_rng(seed)
    rows = [["file", "skin", "site"]]
    for split, count in zip(("train", "test"), per_class, strict=True):
        for name, colour in COLOURS.items():
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                width, height = (20, 14) if i % 3 == 0 else (16, 16)
                dark = i % 2 == 1
                base = np.array(colour) * (0.6 if dark else 1.0)
                pixels = np.clip(base + rng.normal(0, 20, (height, width, 3)), 0, 255)
                file = f"{i:03d}.{'jpg' if i % 4 == 0 else 'png'}"
                Image.fromarray(pixels.astype(np.uint8)).save(folder / file)
                rows.append([f"{split}/{name}/{file}", "dark" if dark else "light",
                             "north" if i < count // 2 else "south"])
    with (root / "attributes.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    return root


SPEC = """
recipe r {{ epochs = 3  batch_size = 16  optimizer = adam  lr = 0.003 }}
study mine {{
  dataset imagefolder {{ root = "data"  attributes = "data/attributes.csv"  image_size = 12 {extra} }}
  teacher lenet5 {{ recipe = r }}
  student lenet5 {{ recipe = r }}
  distill {{ temperatures = [2, 4]  loss = 0.2 * hard + 0.8 * soft }}
  fairness {{ sensitive = [skin, site]  multiclass = one_vs_rest }}
  seeds = 2
}}
"""


def write_spec(folder: Path, extra: str = "") -> Path:
    spec = folder / "mine.kdspec"
    spec.write_text(SPEC.format(extra=extra))
    return spec


def test_the_layout_names_classes_in_sorted_order_and_its_digest_follows_the_files(
        tmp_path: Path) -> None:
    root = make_folder(tmp_path / "data")
    layout = scan_image_folder(root)
    assert layout.class_names == ("circle", "square", "star")
    assert len(layout.train_files) == 72 and len(layout.test_files) == 27
    assert layout.train_files[0] == "train/circle/000.jpg" and layout.train_labels[0] == 0
    assert layout.test_labels[-1] == 2
    moved = tmp_path / "moved"
    root.rename(moved)
    assert scan_image_folder(moved).content_digest == layout.content_digest
    Image.new("RGB", (9, 9)).save(moved / "test" / "star" / "extra.png")
    assert scan_image_folder(moved).content_digest != layout.content_digest


@pytest.mark.parametrize(("damage", "message"), [
    (lambda root: (root / "test").rename(root / "val"), "data/test is missing"),
    (lambda root: (root / "test" / "oval").mkdir(), "has class folder(s) oval that"),
    (lambda root: [p.unlink() for p in (root / "train" / "star").iterdir()],
     "train/star holds no image"),
])
def test_a_broken_layout_names_the_folder(tmp_path: Path, damage, message: str) -> None:  # type: ignore[no-untyped-def]
    root = make_folder(tmp_path / "data")
    damage(root)
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        scan_image_folder(root)


def test_csv_errors_name_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("file,skin\ntest/a/1.png,dark\ntest/a/2.png,dark,extra\n")
    with pytest.raises(DataError, match=r"a\.csv:3: 3 fields, the header has 2"):
        read_attribute_table(path)
    path.write_text("file,skin\ntest/a/1.png,dark\n\ntest/a/1.png,light\n")
    with pytest.raises(DataError, match=r"a\.csv:4: test/a/1\.png already has a row \(line 2\)"):
        read_attribute_table(path)
    path.write_text("path,skin\n")
    with pytest.raises(DataError, match=r"a\.csv:1: the header must be 'file'"):
        read_attribute_table(path)
    path.write_text("file,skin,age\ntest/a/1.png,dark,30\ntest/a/2.png,,40\ntest/a/3.png,l,5\n")
    table = read_attribute_table(path)
    codes, groups = table.codes("age", ("test/a/3.png", "test/a/1.png", "test/a/2.png"))
    assert groups == ("5", "30", "40") and codes == [0, 1, 2]  # numbers in numeric order
    with pytest.raises(DataError, match=r"a\.csv:3: 'skin' is empty for 1 test image: "
                                        r"test/a/2\.png"):
        table.codes("skin", ("test/a/2.png",))
    with pytest.raises(DataError, match=r"has no row for 1 of the 1 test images: test/a/9\.png"):
        table.codes("skin", ("test/a/9.png",))
    files = tuple(f"test/a/{i}.png" for i in range(1, 10))
    with pytest.raises(DataError, match=r"has no row for 6 of the 9 test images: test/a/4\.png, "
                                        r"test/a/5\.png, test/a/6\.png, test/a/7\.png, "
                                        r"test/a/8\.png and 1 more \(every test image"):
        table.check_rows(("skin",), files)


def test_the_spec_reads_classes_and_attributes_from_the_folder(tmp_path: Path) -> None:
    make_folder(tmp_path / "data")
    spec = write_spec(tmp_path)
    plan = compile_text(spec.read_text(), str(spec))
    data = plan.studies[0].dataset
    assert data.class_names == ("circle", "square", "star") and data.num_classes == 3
    assert data.root == str((tmp_path / "data").resolve()) and data.counted_train_images == 72
    assert data.sensitive == ("skin", "site") and data.content_digest is not None
    assert data.attributes_file == str((tmp_path / "data" / "attributes.csv").resolve())
    # Where the folder lives is not part of the run ids; what it holds is.
    (tmp_path / "data").rename(tmp_path / "elsewhere")
    moved = tmp_path / "moved.kdspec"
    moved.write_text(spec.read_text().replace('"data', '"elsewhere'))
    assert compile_text(moved.read_text(), str(moved)).studies[0].run_ids == \
        plan.studies[0].run_ids
    Image.new("RGB", (9, 9)).save(tmp_path / "elsewhere" / "train" / "star" / "extra.png")
    grown = compile_text(moved.read_text(), str(moved)).studies[0]
    assert not set(grown.run_ids) & set(plan.studies[0].run_ids)


@pytest.mark.parametrize(("extra", "expected"), [
    ("", None),
    ('sensitive = skn', "imagefolder has no attribute 'skn'"),
    ("channels = 2", "channels is 1 (grey) or 3 (RGB), found 2"),
])
def test_spec_mistakes_are_reported_at_their_position(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: str,
        expected: str | None) -> None:
    make_folder(tmp_path / "data")
    spec = write_spec(tmp_path, extra)
    code = main(["check", str(spec)])
    err = capsys.readouterr().err
    if expected is None:
        assert code == 0, err
    else:
        assert code == 2 and expected in err and "mine.kdspec:4:" in err


def _drop_rows(csv_path: Path, prefix: str) -> list[str]:
    """Remove the CSV rows of the images under ``prefix``; the files whose rows went."""
    lines = csv_path.read_text().splitlines(keepends=True)
    dropped = [line.split(",")[0] for line in lines[1:] if line.startswith(prefix)]
    csv_path.write_text("".join(line for line in lines if not line.startswith(prefix)))
    return dropped


@pytest.mark.parametrize("command", [["check"], ["plan"], ["run", "--dry-run"]])
def test_test_images_without_attribute_rows_stop_the_spec_at_check_time(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        command: list[str]) -> None:
    """Fairness is measured on the test split: a test image the CSV has no row for would stop
    the first run that loads the data. The spec stops now, naming the first few images."""
    make_folder(tmp_path / "data")
    dropped = _drop_rows(tmp_path / "data" / "attributes.csv", "test/star/")
    spec = write_spec(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert main([command[0], str(spec), *command[1:]]) == 2
    err = capsys.readouterr().err
    assert f"{spec}:4:" in err and "^" in err and "1 error found" in err
    assert (f"has no row for 9 of the 27 test images: {', '.join(dropped[:5])} and 4 more"
            in err)
    assert not (tmp_path / "mlruns.db").exists()


def test_a_plan_json_whose_csv_lost_rows_stops_before_any_run(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A plan compiled while the CSV was complete: the run's data check finds the rows gone."""
    make_folder(tmp_path / "data")
    spec = write_spec(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert main(["plan", str(spec), "--json"]) == 0
    plan_json = tmp_path / "plan.json"
    plan_json.write_text(capsys.readouterr().out)
    _drop_rows(tmp_path / "data" / "attributes.csv", "test/circle/00")
    assert main(["run", str(plan_json), "--dry-run"]) == 1
    err = capsys.readouterr().err
    assert "has no row for 9 of the 27 test images: test/circle/000.jpg" in err
    assert "Traceback" not in err


def test_a_missing_root_or_csv_is_an_error_at_its_key(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    spec = write_spec(tmp_path)
    assert main(["check", str(spec)]) == 2
    err = capsys.readouterr().err
    assert f"{spec}:4:" in err and "is not a folder" in err and "^" in err
    make_folder(tmp_path / "data")
    (tmp_path / "data" / "attributes.csv").unlink()
    assert main(["check", str(spec)]) == 2
    assert "cannot read the attributes file" in capsys.readouterr().err
    other = tmp_path / "other.kdspec"
    other.write_text(SPEC.replace("imagefolder {{ root", "cifar10 {{ attributes = \"x.csv\" root")
                     .format(extra=""))
    assert main(["check", str(other)]) == 2
    assert "cifar10 has no 'attributes' setting" in capsys.readouterr().err


def test_decoding_resizes_the_shorter_side_and_crops_the_centre(tmp_path: Path) -> None:
    pixels = np.zeros((10, 30, 3), dtype=np.uint8)
    pixels[:, 10:20] = 255  # a white centre third on a black image 3x as wide as high
    Image.fromarray(pixels).save(tmp_path / "wide.png")
    image = decode_image(tmp_path / "wide.png", 10, 3)
    assert image.shape == (3, 10, 10) and image.min() == 255  # only the centre is kept
    grey = decode_image(tmp_path / "wide.png", 5, 1)
    assert grey.shape == (1, 5, 5)
    (tmp_path / "broken.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match=r"cannot decode .*broken\.png"):
        decode_image(tmp_path / "broken.png", 8, 3)


def test_channel_statistics_match_numpy() -> None:
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (9000, 2, 3, 3), dtype=np.uint8)
    mean, std = channel_statistics(images)
    scaled = images.astype(np.float64) / 255
    assert np.allclose(mean, scaled.mean(axis=(0, 2, 3)), atol=1e-12)
    assert np.allclose(std, scaled.std(axis=(0, 2, 3)), atol=1e-9)


def test_the_loaded_data_carries_attributes_and_its_own_normalisation(tmp_path: Path) -> None:
    import torch

    make_folder(tmp_path / "data")
    spec = write_spec(tmp_path)
    data_spec = compile_text(spec.read_text(), str(spec)).studies[0].dataset
    cache = tmp_path / "cache"
    loaded = load_dataset(data_spec, device=torch.device("cpu"), cache_dir=cache)
    assert loaded.train.num_samples == 72 and loaded.test.num_samples == 27
    assert "skin: 0=dark, 1=light" in loaded.description
    cached = list((cache / "imagefolder").glob("*.npz"))
    assert len(cached) == 1
    with np.load(cached[0]) as stored:
        images, mean = stored["train_images"], stored["mean"]
    assert np.allclose(mean, channel_statistics(images)[0])
    # The training images, normalised with their own statistics, have mean ~0 per channel.
    batch = loaded.train.augmenter.normalize(torch.from_numpy(images))
    assert torch.allclose(batch.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4)
    (tmp_path / "data" / "test" / "star" / "000.jpg").unlink()
    with pytest.raises(DataError, match="changed since the plan was compiled"):
        load_dataset(data_spec, device=torch.device("cpu"), cache_dir=cache)


@pytest.mark.integration
def test_an_imagefolder_study_trains_and_reports_fairness_over_a_csv_attribute(
        tmp_path: Path, blank_store: Path) -> None:
    make_folder(tmp_path / "data")
    spec = write_spec(tmp_path)
    uri = fresh_store(blank_store, tmp_path / "store")
    assert main(["run", str(spec), "--tracking-uri", uri, "--quiet", "--cache-dir",
                 str(tmp_path / "cache"), "--log-dir", str(tmp_path / "logs")]) == 0
    out = tmp_path / "report"
    assert main(["report", str(spec), "--tracking-uri", uri, "--out", str(out), "--quiet"]) == 0
    with (out / "fairness.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert {r["attribute"] for r in rows} == {"skin", "site"}
    assert {r["role"] for r in rows} == {"teacher", "NDS", "DS"}
    text = (out / "report.md").read_text()
    assert "imagefolder" in text and "'skin'" in text


def test_init_writes_an_imagefolder_spec_that_checks(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    make_folder(tmp_path / "data")
    spec = tmp_path / "specs" / "faces.kdspec"
    assert main(["init", str(spec), "--dataset", "imagefolder", "--root",
                 str(tmp_path / "data"), "--attributes", str(tmp_path / "data/attributes.csv"),
                 "--sensitive", "skin", "--teacher", "resnet20", "--student", "lenet5"]) == 0
    text = spec.read_text()
    assert 'root = "../data"' in text and "columns: skin, site" in text
    assert "multiclass = one_vs_rest" in text  # three classes
    assert main(["check", str(spec)]) == 0
    capsys.readouterr()
    assert main(["init", str(tmp_path / "x.kdspec"), "--dataset", "imagefolder", "--teacher",
                 "resnet20", "--student", "lenet5"]) != 0
    assert "imagefolder needs --root" in capsys.readouterr().err
