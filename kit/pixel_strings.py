"""Tables whose images are one column of space-separated pixel values (FER-2013's `emotion,pixels,Usage`, 2,304
values of a 48×48 face per row), turned into PNGs and tables kit reads, in a derived folder (kit.sources).

A `Usage` column is the official split: Training trains, PublicTest validates, PrivateTest is the held-out test set
(its labels become the answer key); without one, the table's name says its split (train.csv, test.csv).
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from .errors import DataError

PIXEL_STRING_NAMES = ("pixels", "pixel", "image", "img", "data")
USAGE_SPLITS = {"training": "train", "train": "train", "publictest": "validation", "validation": "validation",
                "val": "validation", "privatetest": "test", "test": "test"}
LABEL_HINTS = ("label", "emotion", "class", "target", "category", "y")
ANSWERS_FILE = "answers.csv"


def pixel_string_column(path: Path) -> str | None:
    """The column of space-separated pixel values of a table (judged on its header and first row), else None."""
    try:
        head = pd.read_csv(path, dtype=str, nrows=3, keep_default_na=False, skipinitialspace=True)
    except (ValueError, OSError, UnicodeDecodeError, pd.errors.ParserError):
        return None
    for column in head.columns:
        values = [v.split() for v in head[column]]
        counts = {len(v) for v in values}
        if str(column).strip().lower() in PIXEL_STRING_NAMES and len(counts) == 1 and _square(counts.pop()) and \
                all(re.fullmatch(r"\d{1,3}", p) for v in values for p in v[:64]):
            return column
    return None


def _square(n: int) -> tuple[int, ...] | None:
    side, rgb = math.isqrt(n), math.isqrt(n // 3)
    if n >= 16 and side * side == n:
        return side, side
    if n >= 48 and n % 3 == 0 and rgb * rgb * 3 == n:
        return rgb, rgb, 3
    return None


def convert(out: Path, table: Path, column: str, kind: str | None) -> None:
    """Write the table's images and the train/validation/test tables (and answers.csv and a sample) into `out`."""
    frame = pd.read_csv(table, dtype=str, keep_default_na=False, skipinitialspace=True)
    frame.columns = [str(c).strip() for c in frame.columns]
    column = str(column).strip()
    usage = next((c for c in frame.columns if c.lower() == "usage"), None)
    others = [c for c in frame.columns if c not in (column, usage)]
    label = next((c for c in others if c.lower() in LABEL_HINTS), others[0] if len(others) == 1 else None)
    split = frame[usage].str.strip().str.lower().map(USAGE_SPLITS).fillna("train") if usage else \
        pd.Series([kind or "train"] * len(frame))
    if label is None and (split != "test").any():
        raise DataError(f"{table.name}: a column of pixel values but no label column kit can tell (columns: "
                        f"{', '.join(frame.columns)}); name it label")
    for side in ("train", "validation", "test"):
        rows = frame[split == side]
        if len(rows):
            _write_side(out, table, rows, column, label, side)


def _write_side(out: Path, table: Path, rows: pd.DataFrame, column: str, label: str | None, side: str) -> None:
    folder = f"{table.stem}_{side}_images"
    (out / folder).mkdir(exist_ok=True)
    ids = []
    for index, text in zip(rows.index, rows[column]):
        line = index + 2  # the CSV's line of this row (one header line)
        values = np.array(text.split(), dtype=np.float64) if text.strip() else np.array([])
        shape = _square(len(values))
        if shape is None or not np.isfinite(values).all() or (values < 0).any() or (values > 255).any() or \
                (values != np.round(values)).any():
            raise DataError(f"{table.name}:{line}: '{column}' must hold a square number of whole pixel values 0..255 "
                            f"(found {len(values)} values)")
        image_id = str(line)
        Image.fromarray(values.astype(np.uint8).reshape(shape)).save(out / folder / f"{image_id}.png",
                                                                   compress_level=1)
        ids.append(image_id)
    labels = rows[label].str.strip().tolist() if label else [""] * len(ids)
    if side == "test":
        pd.DataFrame({"id": ids}).to_csv(out / "test.csv", index=False)
        if label:
            pd.DataFrame({"id": ids, "label": labels}).to_csv(out / ANSWERS_FILE, index=False)
        if not (out / "sample_submission.csv").exists():
            pd.DataFrame({"id": ids, "label": labels[0] if label else ""}).to_csv(out / "sample_submission.csv",
                                                                                  index=False)
        return
    name = "train.csv" if side == "train" else "validation.csv"
    pd.DataFrame({"id": [f"{folder}/{i}.png" for i in ids], "label": labels}).to_csv(out / name, index=False)
