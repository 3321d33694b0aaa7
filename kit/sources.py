"""Competitions published as zips or as pixel tables, made readable without touching the data folder.

kit reads image files. When organisers ship the images inside zips (train.zip, test.zip, or one zip holding the
whole competition) or as tables of pixel values (label, pixel0 … pixel783), kit builds, once, a folder of its
own in its cache (never in the data folder): the zips extracted with guards against path traversal and zip
bombs, each pixel row written as a PNG, and the tables beside them with the same names and line numbers. The
folder is keyed by the data folder's path and the names, sizes and times of its files, so a changed download is
derived again; everything downstream (validation, the one image loader, the pipeline) reads it like any other.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import shutil
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from .errors import DataError, columns_text

PIXEL_COLUMN = re.compile(r"pixels?_?(\d+)$", re.IGNORECASE)
MAX_UNZIPPED_BYTES = 200 << 30  # a download that claims more than this is refused before anything is written
MAX_RATIO = 200  # a member that claims to grow more than this many times is a zip bomb, not a competition
ANSWERS_FILE = "answers.csv"  # a labelled test table's labels, kept beside the derived folder's test table


def cache_root() -> Path:
    if os.environ.get("KIT_CACHE_DIR"):
        return Path(os.environ["KIT_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "kit"


def readable_folder(data: Path) -> Path:
    """The folder kit reads the competition from: `data` itself, or the folder derived from its zips and pixel
    tables (built once in kit's cache)."""
    zips = _pending_zips(data)
    pixel_tables = [p for p in _top_csvs(data) if pixel_columns(_header(p))]
    if not zips and not pixel_tables:
        return data
    derived = cache_root() / "derived" / f"{data.name or 'data'}-{_key(data)}"
    if not derived.is_dir():
        derived.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=derived.parent, prefix=f".{derived.name}."))
        try:
            _derive(data, staging, zips)
            os.replace(staging, derived)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return derived


def answer_key(data) -> Path | None:
    """The held-out answers of a labelled test table (Kaggle's Fashion-MNIST CSVs), once derived; else None."""
    folder = readable_folder(Path(data))
    return folder / ANSWERS_FILE if (folder / ANSWERS_FILE).is_file() else None


def _top_csvs(data: Path) -> list[Path]:
    return sorted(p for p in data.iterdir() if p.is_file() and p.suffix.lower() == ".csv")


def _header(path: Path) -> list[str]:
    with open(path, "rb") as f:
        line = f.readline(1 << 20).decode("utf-8-sig", "replace").strip()
    return [c.strip().strip('"') for c in line.split(",")]


def pixel_columns(header: list[str]) -> list[str]:
    """The pixel columns of a pixel table (pixel0…pixelN or pixel1…, N+1 a square or three times one), else []."""
    pixels = [c for c in header if PIXEL_COLUMN.match(c)]
    n = len(pixels)
    side = math.isqrt(n) if n else 0
    rgb_side = math.isqrt(n // 3) if n else 0
    if n >= 16 and (side * side == n or (n % 3 == 0 and rgb_side * rgb_side * 3 == n)):
        return pixels
    return []


def _pending_zips(data: Path) -> list[Path]:
    """Zips at the top of the data folder whose contents are not already there unzipped (train.zip beside train/
    is an old download, already extracted)."""
    return sorted(p for p in data.iterdir() if p.is_file() and p.suffix.lower() == ".zip"
                  and not (data / p.stem).is_dir())


def _key(data: Path) -> str:
    digest = hashlib.sha256(str(data.resolve()).encode())
    for entry in sorted(data.iterdir()):
        info = entry.stat()
        digest.update(f"{entry.name}\0{info.st_size}\0{info.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()[:16]


def _derive(data: Path, out: Path, zips: list[Path]) -> None:
    """Fill `out` with the competition as image files and tables: zips extracted (and zips inside them), pixel
    tables turned into PNGs, every other top-level file and folder of `data` linked or copied in."""
    for entry in data.iterdir():
        if entry in zips:
            continue
        _link_or_copy(entry, out / entry.name)
    for archive in zips:
        _extract(archive, out)
    for inner in sorted(out.glob("*.zip")):  # the Kaggle CLI's one zip holds train.zip, test.zip, …
        if not (out / inner.stem).is_dir():
            _extract(inner, out)
        inner.unlink()
    tables = [p for p in _top_csvs(out) if pixel_columns(_header(p))]
    if tables:
        _convert_pixel_tables(out, tables)


def _link_or_copy(source: Path, target: Path) -> None:
    """Folders of images as hard links where the cache shares the data folder's disk (no bytes copied; kit never
    writes to them), else copies; top-level files (tables, which kit may rewrite here) always as copies."""
    if source.is_dir():
        shutil.copytree(source, target, copy_function=_link_file)
    else:
        shutil.copy2(source, target)


def _link_file(source, target) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _extract(archive: Path, out: Path) -> None:
    """Extract a zip into `out` (its members under a folder named after it unless they already sit in one), with
    guards: no member may leave `out`, and none may claim an absurd size or compression ratio."""
    try:
        with zipfile.ZipFile(archive) as z:
            members = [m for m in z.infolist() if not m.is_dir() and not m.filename.startswith("__MACOSX/")]
            _check_members(archive, members)
            tops = {m.filename.split("/", 1)[0] for m in members}
            in_one_folder = len(tops) == 1 and all("/" in m.filename for m in members)  # train.zip → train/…
            whole = any(m.filename.lower().endswith((".csv", ".zip")) for m in members)  # the competition's zip
            base = out if in_one_folder or whole else out / archive.stem  # loose images: a folder named after it
            for member in members:
                target = base / member.filename
                target.parent.mkdir(parents=True, exist_ok=True)
                with z.open(member) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
    except zipfile.BadZipFile as e:
        raise DataError(f"{archive.name}: not a readable zip ({e}); download it again") from None


def _check_members(archive: Path, members: list) -> None:
    total = sum(m.file_size for m in members)
    if total > MAX_UNZIPPED_BYTES:
        raise DataError(f"{archive.name}: claims {total / 2**30:.0f} GB unzipped; refusing (a zip bomb?)")
    for m in members:
        parts = m.filename.replace("\\", "/").split("/")
        if m.filename.startswith(("/", "\\")) or ".." in parts or re.match(r"^[a-zA-Z]:", m.filename):
            raise DataError(f"{archive.name}: member '{m.filename}' would be written outside the folder; refusing "
                            "the zip")
        if m.compress_size and m.file_size / m.compress_size > MAX_RATIO and m.file_size > 10 << 20:
            raise DataError(f"{archive.name}: member '{m.filename}' grows {m.file_size // m.compress_size}x when "
                            "unzipped; refusing the zip (a zip bomb?)")


def _convert_pixel_tables(out: Path, tables: list[Path]) -> None:
    """Each pixel table becomes PNGs in a folder named after it and a table of (id, label) with the same name and
    line numbers. Ids: the table's id column, else (test tables) the sample submission's ids when they are as
    many as the rows (Digit Recognizer's ImageId = row number), else the 1-based row number."""
    sample = next((p for p in _top_csvs(out) if "submission" in p.stem.lower()), None)
    sample_ids = pd.read_csv(sample, dtype=str, keep_default_na=False).iloc[:, 0] if sample else None
    for table in tables:
        is_train = bool(re.search(r"train", table.stem, re.IGNORECASE))
        _pixel_table_to_images(out, table, is_train, sample_ids)


def _pixel_table_to_images(out: Path, table: Path, is_train: bool, sample_ids) -> None:
    header = _header(table)
    pixels = pixel_columns(header)
    others = [c for c in header if c not in pixels]
    label_col = _label_column(table, others, is_train)
    id_col = next((c for c in others if c != label_col), None)
    images = out / (table.stem + "_images")
    images.mkdir()
    rows, line = [], 2
    reader = pd.read_csv(table, dtype={**{c: str for c in others}, **{c: np.float64 for c in pixels}},
                         keep_default_na=False, chunksize=2_000)
    try:
        for chunk in reader:
            values = chunk[pixels].to_numpy()
            bad = ~np.isfinite(values) | (values < 0) | (values > 255) | (values != np.round(values))
            if bad.any():
                first = int(np.argwhere(bad)[0][0])
                raise DataError(f"{table.name}:{line + first}: pixel values must be whole numbers 0..255")
            numbers = range(line - 1, line - 1 + len(chunk))  # 1-based row numbers
            ids = chunk[id_col].tolist() if id_col else [_row_id(n, sample_ids, is_train) for n in numbers]
            labels = chunk[label_col].tolist() if label_col else [None] * len(chunk)
            for image_id, pixel_row in zip(ids, values.astype(np.uint8)):
                _write_image(images / f"{_safe(image_id)}.png", pixel_row)
            rows += zip(ids, labels)
            line += len(chunk)
    except ValueError as e:
        raise DataError(f"{table.name}: a pixel column holds something that is not a number "
                        f"({str(e).splitlines()[0][:80]})") from None
    _write_image_tables(out, table, rows, label_col, id_col, sample_ids, is_train)


ID_NAME = re.compile(r"^(image_?)?(id|name|file(name)?)$|^index$", re.IGNORECASE)


def _label_column(table: Path, others: list[str], is_train: bool) -> str | None:
    """The label column of a pixel table: one named like a label, else the one column that is not an id. A test
    table may have none; a training table must."""
    named = [c for c in others if c.lower() in ("label", "labels", "class", "target", "y")]
    candidates = named or [c for c in others if not ID_NAME.match(c)]
    if len(candidates) == 1:
        return candidates[0]
    if is_train:
        raise DataError(f"{table.name}: a table of pixel columns with no label column kit can tell (columns: "
                        f"{columns_text(others + ['pixel…'])}); name it label")
    return None


def _row_id(number: int, sample_ids, is_train: bool) -> str:
    """A row's id without an id column: the sample's id of that row for a test table (Digit Recognizer's ImageId),
    else the 1-based row number."""
    if not is_train and sample_ids is not None and number <= len(sample_ids):
        return str(sample_ids.iloc[number - 1])
    return str(number)


def _write_image(path: Path, pixel_row: np.ndarray) -> None:
    """One row of pixels as a PNG: a square of gray, or three squares' worth of RGB."""
    n = len(pixel_row)
    side = math.isqrt(n)
    shape = (side, side) if side * side == n else (math.isqrt(n // 3), math.isqrt(n // 3), 3)
    Image.fromarray(pixel_row.reshape(shape)).save(path, compress_level=1)


def _safe(image_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", image_id)


def _write_image_tables(out: Path, table: Path, rows: list, label_col, id_col, sample_ids, is_train: bool) -> None:
    """The derived table keeps the original's name: id and label for training, id alone for testing (a labelled
    test table's labels go to answers.csv), with a sample submission made when the competition has none."""
    id_name = id_col or ("id" if is_train or sample_ids is None else str(sample_ids.name))
    folder = table.stem + "_images"
    frame = pd.DataFrame({id_name: [f"{folder}/{_safe(i)}.png" if not id_col and is_train else i for i, _ in rows]})
    if is_train or label_col is None:
        if is_train:
            frame[label_col or "label"] = [label for _, label in rows]
    else:
        answers = pd.DataFrame({id_name: [i for i, _ in rows], label_col: [label for _, label in rows]})
        answers.to_csv(out / ANSWERS_FILE, index=False)
    table.unlink()  # a copy of the user's table: replaced by the table of image ids
    frame.to_csv(table, index=False)
    has_sample = any("submission" in p.stem.lower() for p in _top_csvs(out))
    if not is_train and not has_sample:
        first = _first_label(out)
        pd.DataFrame({id_name: [i for i, _ in rows], label_col or "label": first}).to_csv(
            out / "sample_submission.csv", index=False)


def _first_label(out: Path) -> str:
    for p in _top_csvs(out):
        if re.search(r"train", p.stem, re.IGNORECASE):
            labels = pd.read_csv(p, dtype=str, keep_default_na=False)
            if len(labels.columns) > 1 and len(labels):
                return str(labels.iloc[0, -1])
    return ""
