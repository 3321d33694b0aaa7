"""Competitions published as archives or as pixel tables, made readable without touching the data folder.

kit reads image files. When organisers ship the images inside zips or tars (train.zip, test.zip, one zip holding
the whole competition, images.tar.gz) or as tables of pixel values (label, pixel0 … pixel783), kit builds, once,
a folder of its own in its cache: the archives extracted with kit.archives' guards, each pixel row written as a
PNG, the tables beside them with the same names and line numbers, and every other entry of the data folder a
link back to the user's (nothing is copied, and no byte of the user's files is ever shared or written: the
folder is built in a fresh temporary folder, links last, then renamed into place and never written again). Where
an archive and the user's own extracted folder both hold a name, the user's wins.

The folder is keyed by what it was made from (the archives' and pixel tables' content, the data folder's entry
names), built under a lock (a second kit waits for the first), and a half-built one left by a killed kit is
removed at the next build. Everything downstream reads it like any other data folder (kit.paths lets its reader
follow the links back into the user's folder, and no further).
"""

from __future__ import annotations

import fcntl
import hashlib
import math
import os
import re
import shutil
import tempfile
import zipfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from . import archives, pixel_strings
from .errors import DataError, columns_text, stage
from .pixel_strings import pixel_string_column
from .paths import ORIGIN_FILE, readable_table, under

PIXEL_COLUMN = re.compile(r"pixels?_?(\d+)$", re.IGNORECASE)
ANSWERS_FILE = "answers.csv"  # a labelled test table's labels, kept beside the derived folder's test table
DERIVE_VERSION = "3"  # bump when the derived folder's layout changes: older ones are then built again


def cache_root() -> Path:
    if os.environ.get("KIT_CACHE_DIR"):
        return Path(os.environ["KIT_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "kit"


@stage("deriving image files from archives and pixel tables")
def readable_folder(data: Path, follow: bool = False) -> Path:
    """The folder kit reads the competition from: `data` itself, or the folder derived from its archives and pixel
    tables (built once in kit's cache). follow: --follow-symlinks (tables linked from outside may be read)."""
    pending = _pending_archives(data, follow)
    pixel_tables = [p for p in _top_csvs(data) if table_kind(p.name) in ("train", "test")
                    and pixel_columns(_header(p, data, follow))]
    pixel_tables += [p for p, _, _ in _string_tables(data, follow)]
    if not pending and not pixel_tables:
        return data
    cache = cache_root()
    if under(cache, data):
        raise DataError(f"KIT_CACHE_DIR {cache}: inside the data folder {data}; kit never writes there, so point "
                        "KIT_CACHE_DIR at a folder outside it")
    derived = cache / "derived" / f"{_safe(data.name)[:40] or 'data'}-{_key(data, pending, pixel_tables)}"
    if derived.is_dir():
        return derived
    derived.parent.mkdir(parents=True, exist_ok=True)
    with _locked(derived):
        if derived.is_dir():  # another kit built it while this one waited
            return derived
        _remove_half_built(derived.parent, derived.name)
        staging = Path(tempfile.mkdtemp(dir=derived.parent, prefix=f".{derived.name}."))
        try:
            _derive(data, staging, pending, follow)
            os.replace(staging, derived)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return derived


def _remove_half_built(folder: Path, ours: str) -> None:
    """Staging folders a killed kit left (of this data folder or any other): removed once no kit holds their
    lock (this kit holds `ours`)."""
    for stale in [p for p in folder.glob(".*.*") if p.is_dir()]:
        name = stale.name[1:].rsplit(".", 1)[0]
        if name == ours:
            shutil.rmtree(stale, ignore_errors=True)
            continue
        lock_path = folder / f"{name}.lock"
        with open(lock_path, "a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # being built right now
            shutil.rmtree(stale, ignore_errors=True)
            fcntl.flock(lock, fcntl.LOCK_UN)


@contextmanager
def _locked(derived: Path):
    """One builder per derived folder: the others wait here, then find it built."""
    with open(derived.parent / f"{derived.name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def answer_key(data, follow: bool = False) -> Path | None:
    """The held-out answers of a labelled test table (Kaggle's Fashion-MNIST CSVs), once derived; else None."""
    folder = readable_folder(Path(data), follow)
    return folder / ANSWERS_FILE if (folder / ANSWERS_FILE).is_file() else None


def table_kind(name: str) -> str | None:
    """"train", "test" or "sample" for a CSV name as organisers spell them, else None: train.csv, train_v2.csv,
    trainLabels.csv, train_labels.csv, labels.csv, fashion-mnist_train.csv; test.csv, Test_fCbTej3.csv;
    sample_submission.csv, sampleSubmission.csv, Sample_Submission_lxuyBuB.csv, any *submission*.csv."""
    stem = Path(name).stem.lower()
    if "submission" in stem:
        return "sample"
    if stem.startswith("train") or re.search(r"[_\-]train$", stem) or stem == "labels":
        return "train"
    if stem.startswith("test") or re.search(r"[_\-]test$", stem):
        return "test"
    if re.match(r"(val|valid|validation|dev)([_\-.\d]|$)", stem) or re.search(r"[_\-](val|valid|validation)$", stem):
        return "validation"
    return None


def _string_tables(folder: Path, follow: bool = False, users: bool = True) -> list[tuple[Path, str, str | None]]:
    """Tables of images as pixel strings (FER-2013's pixels column): (table, column, its split by name). A table
    named like no split (fer2013.csv with a Usage column) is read only when no table is named train. users: the
    folder is the user's (its tables pass the read policy), not kit's staging folder."""
    found = []
    for path in _top_csvs(folder):
        kind = table_kind(path.name)
        if kind in ("sample", "validation"):
            continue
        if users:
            readable_table(path, folder, follow)
        column = pixel_string_column(path)
        if column is not None:
            found.append((path, column, kind))
    named = [t for t in found if t[2] in ("train", "test")]
    return named or found[:1]


def _top_csvs(data: Path) -> list[Path]:
    return sorted(p for p in data.iterdir() if p.is_file() and p.suffix.lower() == ".csv")


def _header(path: Path, root: Path | None = None, follow: bool = False) -> list[str]:
    if root is not None:
        readable_table(path, root, follow)  # a table linked from outside the data folder is refused, not read
    with open(path, "rb") as f:
        line = f.readline(1 << 20).decode("utf-8-sig", "replace").strip()
    return [c.strip().strip('"') for c in line.split(",")]


def pixel_number(column: str) -> int | None:
    found = PIXEL_COLUMN.match(column)
    return int(found[1]) if found else None


def pixel_columns(header: list[str]) -> list[str]:
    """The pixel columns of a pixel table in pixel order (pixel0…pixelN or pixel1…, N+1 a square or three times
    one), else []."""
    pixels = sorted((c for c in header if PIXEL_COLUMN.match(c)), key=pixel_number)
    n = len(pixels)
    side = math.isqrt(n) if n else 0
    rgb_side = math.isqrt(n // 3) if n else 0
    if n >= 16 and (side * side == n or (n % 3 == 0 and rgb_side * rgb_side * 3 == n)):
        return pixels
    return []


def _pending_archives(data: Path, follow: bool = False) -> list[Path]:
    """Archives at the top of the data folder whose contents are not already there extracted: train.zip beside
    train/ is an old download, and a zip whose every member's top folder or file is already in the data folder
    (the Kaggle CLI's zip, unzipped by hand) too."""
    entries = set(os.listdir(data))
    pending = []
    for path in sorted(p for p in data.iterdir() if p.is_file() and archives.is_archive(p)):
        readable_table(path, data, follow)  # an archive linked from outside is refused like any table
        if archives.archive_stem(path) in entries:
            continue
        if path.name.lower().endswith(".zip") and _all_extracted(path, entries):
            continue
        pending.append(path)
    return pending


def _all_extracted(archive: Path, entries: set[str]) -> bool:
    try:
        with zipfile.ZipFile(archive) as z:
            names = [n for n in z.namelist() if not archives.is_junk(n)]
    except (zipfile.BadZipFile, OSError, ValueError):
        return False  # judged, with its one line, when extracted
    return bool(names) and all(n.split("/", 1)[0] in entries for n in names)


def _key(data: Path, pending: list[Path], pixel_tables: list[Path]) -> str:
    """What the derived folder is made from: the data folder's entry names, the archives' and the pixel tables'
    content (not their times, which a copy or a re-download can keep while the bytes change)."""
    digest = hashlib.blake2b(digest_size=10)
    digest.update(f"{DERIVE_VERSION}\0{os.path.realpath(data)}\0".encode("utf-8", "surrogateescape"))
    for name in sorted(os.listdir(data)):
        digest.update(f"{name}\0{os.path.isdir(data / name)}\n".encode("utf-8", "surrogateescape"))
    for path in pending + pixel_tables:
        digest.update(_content_digest(path))
    return digest.hexdigest()


def _content_digest(path: Path) -> bytes:
    """A file's content, hashed whole up to 512 MB; beyond, its size, head, tail and 64 blocks between, and for a
    zip every member's name, size and CRC-32 (its central directory)."""
    size = path.stat().st_size
    digest = hashlib.blake2b(str(size).encode(), digest_size=16)
    with open(path, "rb") as f:
        if size <= 512 << 20:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
            return digest.digest()
        for offset in [size * i // 64 for i in range(64)] + [max(0, size - (1 << 20))]:
            f.seek(offset)
            digest.update(f.read(1 << 20))
    if path.name.lower().endswith(".zip"):
        try:
            with zipfile.ZipFile(path) as z:
                for info in z.infolist():
                    digest.update(f"{info.filename}\0{info.file_size}\0{info.CRC}\n".encode("utf-8", "replace"))
        except (zipfile.BadZipFile, OSError, ValueError):
            pass
    return digest.digest()


def _derive(data: Path, out: Path, pending: list[Path], follow: bool) -> None:
    """Fill `out` with the competition as image files and tables: archives extracted (and archives inside them),
    pixel tables turned into PNGs, then every other entry of `data` a link to the user's own."""
    taken = set(os.listdir(data)) - {p.name for p in pending}  # the user's entries win over archive members
    budget = archives.Budget()
    for archive in pending:
        _unpack(archive, out, taken, budget)
    for inner in sorted(p for p in out.iterdir() if p.is_file() and archives.is_archive(p)):
        if archives.archive_stem(inner) not in set(os.listdir(out)) | taken:  # the Kaggle CLI's zip of zips
            _unpack(inner, out, taken, budget)
        inner.unlink()
    kinds = ("train", "test")  # an extra labelled table (Kannada-MNIST's Dig-MNIST.csv) is neither, and left alone
    tables = [p for p in _top_csvs(out) if table_kind(p.name) in kinds and pixel_columns(_header(p))]
    tables += [p for p in _top_csvs(data) if p.name not in os.listdir(out) and table_kind(p.name) in kinds
               and pixel_columns(_header(p, data, follow))]
    if tables:
        _convert_pixel_tables(out, tables, data, follow)
    for table, column, kind in _string_tables(out, users=False) + [t for t in _string_tables(data, follow)
                                                      if t[0].name not in os.listdir(out)]:
        pixel_strings.convert(out, table, column, kind)
    made = set(os.listdir(out))
    for name in sorted(taken - made):
        os.symlink(os.path.abspath(data / name), out / name)
    (out / ORIGIN_FILE).write_text(os.path.realpath(data), encoding="utf-8")


def _unpack(archive: Path, out: Path, taken: set[str], budget: archives.Budget) -> None:
    """Extract an archive's members into `out` (under a folder named after it when its members are loose images),
    leaving out those the user's folder already holds and those an earlier archive wrote."""
    members = archives.members(archive)
    tops = {m.name.split("/", 1)[0] for m in members}
    in_one_folder = len(tops) == 1 and all("/" in m.name for m in members)  # train.zip → train/…
    whole = any(m.name.lower().endswith((".csv", ".zip") + archives.TAR_SUFFIXES) for m in members)
    base = "" if in_one_folder or whole else archives.archive_stem(archive)
    chosen = [m for m in members if (base or m.name.split("/", 1)[0]) not in taken
              and not os.path.lexists(out / base / m.name)]
    archives.extract(archive, out, chosen, base, budget)


def _convert_pixel_tables(out: Path, tables: list[Path], data: Path, follow: bool) -> None:
    """Each pixel table becomes PNGs in a folder named after it and a table of (id, label) with the same name and
    line numbers, in `out`. Ids: the table's id column, else (test tables) the sample submission's ids when they
    are as many as the rows (Digit Recognizer's ImageId = row number), else the 1-based row number. Every table
    must hold the same number of pixels (train and test images of one size)."""
    sizes = {table.name: len(pixel_columns(_header(table))) for table in tables}
    if len(set(sizes.values())) > 1:
        shown = ", ".join(f"{name} {n}" for name, n in sizes.items())
        raise DataError(f"pixel tables of different image sizes ({shown} pixel columns); train and test images must "
                        "have the same size")
    samples = [p for p in _top_csvs(out) + _top_csvs(data) if "submission" in p.stem.lower()]
    sample_ids = pd.read_csv(readable_table(samples[0], data, follow) if samples[0].parent == data else samples[0],
                             dtype=str, keep_default_na=False).iloc[:, 0] if samples else None
    is_train = {t: table_kind(t.name) == "train" for t in tables}
    for table in sorted(tables, key=lambda t: not is_train[t]):  # training first: a made sample names its labels
        _pixel_table_to_images(out, table, is_train[table], sample_ids, bool(samples))


def _checked_pixel_columns(table: Path, header: list[str]) -> list[str]:
    """The pixel columns in pixel order, numbered without gaps or repeats from 0 or 1 (else one line)."""
    pixels = pixel_columns(header)
    numbers = [pixel_number(c) for c in pixels]
    expected = list(range(numbers[0], numbers[0] + len(numbers)))
    if numbers[0] not in (0, 1) or numbers != expected:
        wrong = next((e for n, e in zip(numbers, expected) if n != e), numbers[0])
        raise DataError(f"{table.name}:1: pixel columns are not numbered {numbers[0]}…{numbers[0] + len(numbers) - 1} "
                        f"without gaps or repeats (pixel{wrong} is missing or repeated); kit places pixels by their "
                        "number")
    return pixels


def _pixel_table_to_images(out: Path, table: Path, is_train: bool, sample_ids, has_sample: bool) -> None:
    header = _header(table)
    pixels = _checked_pixel_columns(table, header)
    others = [c for c in header if c not in pixels]
    label_col = _label_column(table, others, is_train)
    id_col = next((c for c in others if c != label_col), None)
    images = out / (table.stem + "_images")
    images.mkdir()
    rows, line, names = [], 2, set()
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
            for image_id, pixel_row, number in zip(ids, values.astype(np.uint8), numbers):
                name = f"{_safe(image_id)}.png"
                if name.lower() in names:  # kit finds images by name without regard to case
                    raise DataError(f"{table.name}:{number + 1}: id '{image_id}' would share its image file {name} "
                                    "with an earlier id (ids that differ only in case or punctuation); make them "
                                    "distinct")
                names.add(name.lower())
                _write_image(images / name, pixel_row)
            rows += zip(ids, labels)
            line += len(chunk)
    except ValueError as e:
        raise DataError(f"{table.name}: a pixel column holds something that is not a number "
                        f"({str(e).splitlines()[0][:80]})") from None
    _write_image_tables(out, table, rows, label_col, id_col, sample_ids, is_train, has_sample)


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


def _write_image_tables(out: Path, table: Path, rows: list, label_col, id_col, sample_ids, is_train: bool,
                        has_sample: bool) -> None:
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
    target = out / table.name
    if target.exists():
        target.unlink()  # an extracted copy (kit's own): replaced by the table of image ids
    frame.to_csv(target, index=False)
    if not is_train and not has_sample and not (out / "sample_submission.csv").exists():
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
