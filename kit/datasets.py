"""Built-in datasets as uint8 arrays, and export to the competition layouts organisers publish."""

from __future__ import annotations

import csv
import gzip
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .errors import DataError
from .outputs import check_output, record_written, remove_output
from .runs import atomic_write

LAYOUTS = ("av", "digits", "folders")
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot"]
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
IDX_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
             "t10k-labels-idx1-ubyte.gz")


@dataclass
class ArrayDataset:
    x_train: np.ndarray  # (N, H, W) or (N, H, W, 3), uint8
    y_train: np.ndarray  # (N,) int
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str]


def load_digits_arrays(test_fraction: float = 0.2, seed: int = 0) -> ArrayDataset:
    """scikit-learn's bundled 8×8 digits (1,797 images), scaled 0..16 → 0..255, split reproducibly."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
    x_tr, x_te, y_tr, y_te = train_test_split(images, digits.target, test_size=test_fraction, random_state=seed,
                                              stratify=digits.target)
    return ArrayDataset(x_tr, y_tr, x_te, y_te, [str(i) for i in range(10)])


def keras_cache_dir() -> Path:
    """Keras' dataset cache: $KERAS_HOME/datasets, default ~/.keras/datasets."""
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "datasets"


def _load_idx_dataset(folder: str, npz: str | None, class_names: list[str]) -> ArrayDataset:
    """MNIST-style data from the raw idx .gz files in <cache>/<folder>/, else Keras' own loader (cache/download)."""
    cache = keras_cache_dir()
    files = [cache / folder / name for name in IDX_FILES]
    if all(f.is_file() for f in files):
        x_tr, y_tr, x_te, y_te = (read_idx(f) for f in files)
        return ArrayDataset(x_tr, y_tr.astype(np.int64), x_te, y_te.astype(np.int64), class_names)
    name = "mnist" if folder == "mnist" else "fashion_mnist"
    wanted = f"{cache / folder}/{{{','.join(IDX_FILES)}}}" + (f" or {cache / npz}" if npz else "")
    (x_tr, y_tr), (x_te, y_te) = _keras_load(name, wanted)
    return ArrayDataset(x_tr, y_tr.astype(np.int64), x_te, y_te.astype(np.int64), class_names)


def _keras_load(name: str, wanted: str):
    from .quiet import keras

    try:
        return getattr(keras.datasets, name).load_data()
    except Exception as e:  # offline, partial download, bad hash: all mean "the files are not there"
        reason = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
        raise DataError(f"dataset {name}: not in the Keras cache and the download failed ({reason}); "
                        f"put the files at {wanted}") from None


def _load_cifar(name: str) -> ArrayDataset:
    cache = keras_cache_dir()
    folder = "cifar-10-batches-py" if name == "cifar10" else "cifar-100-python"
    wanted = f"{cache / (folder + '-target') / folder}/ (Keras' extracted {folder}.tar.gz)"
    (x_tr, y_tr), (x_te, y_te) = _keras_load(name, wanted)
    names = CIFAR10_CLASSES if name == "cifar10" else [str(i) for i in range(100)]
    return ArrayDataset(x_tr, y_tr.reshape(-1).astype(np.int64), x_te, y_te.reshape(-1).astype(np.int64), names)


def flowers_folder() -> Path:
    """TensorFlow's flower photos (class folders), from the Keras cache or downloaded there."""
    cache = keras_cache_dir()
    for candidate in (cache / "flower_photos", cache / "flower_photos_extracted" / "flower_photos"):
        if candidate.is_dir():
            return candidate
    from .quiet import keras

    url = "https://storage.googleapis.com/download.tensorflow.org/example_images/flower_photos.tgz"
    try:
        path = Path(keras.utils.get_file("flower_photos", origin=url, extract=True))
    except Exception as e:
        raise DataError(f"dataset flowers: not in the Keras cache and the download failed ({str(e)[:100]}); "
                        f"put the extracted class folders at {cache / 'flower_photos'}/") from None
    return path / "flower_photos" if (path / "flower_photos").is_dir() else path


@dataclass(frozen=True)
class DatasetInfo:
    classes: int
    sizes: str
    cached_files: tuple[str, ...]  # relative to the Keras cache; any one present means "cached"
    load: object


DATASETS: dict[str, DatasetInfo] = {
    "digits": DatasetInfo(10, "1437 + 360, 8x8 gray", (), load_digits_arrays),
    "mnist": DatasetInfo(10, "60000 + 10000, 28x28 gray", ("mnist/" + IDX_FILES[0], "mnist.npz"),
                         lambda: _load_idx_dataset("mnist", "mnist.npz", [str(i) for i in range(10)])),
    "fashion_mnist": DatasetInfo(10, "60000 + 10000, 28x28 gray", ("fashion-mnist/" + IDX_FILES[0],),
                                 lambda: _load_idx_dataset("fashion-mnist", None, FASHION_CLASSES)),
    "cifar10": DatasetInfo(10, "50000 + 10000, 32x32 RGB", ("cifar-10-batches-py-target", "cifar-10-batches-py"),
                           lambda: _load_cifar("cifar10")),
    "cifar100": DatasetInfo(100, "50000 + 10000, 32x32 RGB", ("cifar-100-python-target", "cifar-100-python"),
                            lambda: _load_cifar("cifar100")),
    "flowers": DatasetInfo(5, "3670 photos, class folders", ("flower_photos",), None),
}


def dataset_status() -> list[tuple[str, DatasetInfo, bool]]:
    cache = keras_cache_dir()
    return [(name, info, not info.cached_files or any((cache / f).exists() for f in info.cached_files))
            for name, info in DATASETS.items()]


def load_arrays(name: str) -> ArrayDataset:
    info = DATASETS.get(name)
    if info is None or info.load is None:
        choices = ", ".join(n for n, i in DATASETS.items() if i.load is not None)
        raise DataError(f"dataset {name}: not available as arrays; choose one of {choices}")
    return info.load()


def read_idx(path) -> np.ndarray:
    """Read an MNIST-style idx file (optionally .gz) into a NumPy array."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DataError(f"{path}: not an idx file of unsigned bytes")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    expected = 4 + 4 * ndim + int(np.prod(dims))
    if len(data) != expected:
        raise DataError(f"{path}: truncated idx file ({len(data)} bytes, expected {expected})")
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _write_png(array: np.ndarray, path: Path) -> None:
    Image.fromarray(array).save(path, format="PNG", compress_level=6)


def export_arrays(ds: ArrayDataset, out_dir, layout: str = "av", limit: int = 0, answers=None,
                  force: bool = False) -> Path:
    """Write a competition folder (train table + images, test table + images, sample submission).

    The answer key goes to `answers` (default: answers.csv beside the folder, never inside it). A non-empty
    folder is replaced only with force and only if kit exported it; the new folder is written beside it and
    swapped in, so an interrupted export leaves the old one. Returns the answers path.
    """

    if layout not in LAYOUTS:
        raise DataError(f"--layout {layout}: expected one of {', '.join(LAYOUTS)}")
    out = check_output(Path(out_dir), "DIR", force, folder=True)
    answers = check_output(Path(answers) if answers else out.resolve().parent / "answers.csv", "--answers", force,
                           data_dirs=[out])
    out.parent.mkdir(parents=True, exist_ok=True)
    answers.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.partial-"))
    try:
        _write_competition(ds, staging, layout, limit, answers)
        remove_output(out)
        os.replace(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    record_written(out)
    record_written(answers)
    return answers


def _write_competition(ds: ArrayDataset, out: Path, layout: str, limit: int, answers: Path) -> None:
    """The files of one competition folder in `out` (which exists) and its answer key at `answers`."""
    x_tr, y_tr, x_te, y_te = ds.x_train, ds.y_train, ds.x_test, ds.y_test
    if limit:
        x_tr, y_tr, x_te, y_te = x_tr[:limit], y_tr[:limit], x_te[: max(1, limit // 5)], y_te[: max(1, limit // 5)]
    train_ids = [str(i) for i in range(len(x_tr))]
    test_ids = [str(len(x_tr) + i) for i in range(len(x_te))]

    if layout == "folders":
        label = lambda y: ds.class_names[int(y)].replace("/", "_")  # noqa: E731 - class names become folder names
        for i, (img, y) in enumerate(zip(x_tr, y_tr)):
            d = out / "train" / label(y)
            d.mkdir(parents=True, exist_ok=True)
            _write_png(img, d / f"{train_ids[i]}.png")
        (out / "test").mkdir(exist_ok=True)
        ids = [f"{t}.png" for t in test_ids]
        for img, name in zip(x_te, ids):
            _write_png(img, out / "test" / name)
        _write_rows(out / "sample_submission.csv", ["id", "label"], [[i, label(y_tr[0])] for i in ids])
        _write_rows(answers, ["id", "label"], [[i, label(y)] for i, y in zip(ids, y_te)])
        return

    if layout == "av":  # AV "Identify the apparels": id,label; ids without extension; train/<id>.png
        id_col, train_dir, test_dir, ext = "id", out / "train", out / "test", ""
        train_csv, test_csv, sample_csv = "train.csv", "test.csv", "sample_submission.csv"
    else:  # AV "Identify the digits": filename,label; Images/train/<id>.png; odd file names
        id_col, train_dir, test_dir, ext = "filename", out / "Images" / "train", out / "Images" / "test", ".png"
        train_csv, test_csv, sample_csv = "train.csv", "Test_fCbTej3.csv", "Sample_Submission_lxuyBuB.csv"
    train_dir.mkdir(parents=True, exist_ok=True)
    test_dir.mkdir(parents=True, exist_ok=True)
    for i, img in zip(train_ids, x_tr):
        _write_png(img, train_dir / f"{i}.png")
    for i, img in zip(test_ids, x_te):
        _write_png(img, test_dir / f"{i}.png")
    _write_rows(out / train_csv, [id_col, "label"], [[i + ext, str(int(y))] for i, y in zip(train_ids, y_tr)])
    _write_rows(out / test_csv, [id_col], [[i + ext] for i in test_ids])
    _write_rows(out / sample_csv, [id_col, "label"], [[i + ext, str(int(y_tr[0]))] for i in test_ids])
    _write_rows(answers, [id_col, "label"], [[i + ext, str(int(y))] for i, y in zip(test_ids, y_te)])


def _write_rows(path: Path, header: list[str], rows) -> None:
    with atomic_write(path, newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def dataset_folder(name: str) -> tuple[Path, Path | None]:
    """A built-in dataset as a competition folder under the Keras cache (exported once); returns (folder, answers)."""
    if name == "flowers":
        return flowers_folder(), None
    base = keras_cache_dir() / "kit"
    folder, answers = base / name, base / f"{name}_answers.csv"
    if not (folder / "train.csv").is_file() or not answers.is_file():
        arrays = load_arrays(name)
        base.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=base, prefix=f".{name}."))
        try:
            export_arrays(arrays, tmp / "data", layout="av", answers=tmp / "answers.csv")
            shutil.rmtree(folder, ignore_errors=True)
            os.replace(tmp / "data", folder)  # a complete folder or none: an interrupted export is not reused
            os.replace(tmp / "answers.csv", answers)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return folder, answers
