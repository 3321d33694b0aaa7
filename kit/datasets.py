"""Built-in datasets as uint8 arrays, and export to the competition layouts organisers publish."""

from __future__ import annotations

import csv
import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .errors import DataError
from .runs import atomic_write

LAYOUTS = ("av", "digits", "folders")


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

    The answer key goes to `answers` (default: answers.csv beside the folder, never inside it).
    Returns the answers path.
    """
    if layout not in LAYOUTS:
        raise DataError(f"--layout {layout}: expected one of {', '.join(LAYOUTS)}")
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not force:
        raise DataError(f"{out}: exists and is not empty; pass --force or choose another folder")
    answers = Path(answers) if answers else out.resolve().parent / "answers.csv"
    x_tr, y_tr, x_te, y_te = ds.x_train, ds.y_train, ds.x_test, ds.y_test
    if limit:
        x_tr, y_tr, x_te, y_te = x_tr[:limit], y_tr[:limit], x_te[: max(1, limit // 5)], y_te[: max(1, limit // 5)]
    out.mkdir(parents=True, exist_ok=True)
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
        return answers

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
    return answers


def _write_rows(path: Path, header: list[str], rows) -> None:
    with atomic_write(path, newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
