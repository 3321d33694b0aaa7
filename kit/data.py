"""Read a competition folder as published (tables, class folders, images named by class; zips and pixel tables
through kit.sources) into tables of (id, path, label). kit.validation judges what is read.

Nothing here writes to the data folder. Every CSV is read as strings, so ids like `00123` survive.
"""

from __future__ import annotations

import csv
import io
import os
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd

from .config import class_in_name, parse_name_pattern
from .errors import ConfigError, DataError, columns_text, few, one_line, stage
from .images import (
    IMAGE_EXTENSIONS,
    is_image_name,
)
from .layout import (
    LABEL_NAMES,
    Ambiguous,
    Reading,
    find_class_folders,
    id_column_by_content,
    image_folders,
    image_names,
    one_hot_columns,
    is_junk,
    is_split_name,
    split_kind,
    split_lists,
    subfolders,
    unreadable_formats,
    unwrapped_root,
)
from .paths import confined as _confined
from .paths import inside_data as _inside
from .paths import relative_name, under, unsafe_path_reason
from .sources import readable_folder, table_kind

TRAIN_IMAGE_DIRS = ("train", "train/images", "images/train", "Images/train", "train_images", "images", "Images", ".")
TEST_IMAGE_DIRS = ("test", "test/images", "images/test", "Images/test", "test_images", "images", "Images", ".")
VALIDATION_DIRS = ("validation", "valid", "val")
MIN_IMAGES_PER_CLASS = 2


@dataclass
class Problem:
    """One finding of validation: where (file, CSV line) and what, with how to fix it."""

    severity: str  # "error" | "warning"
    code: str
    file: str
    message: str
    row: int | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.row}" if self.row is not None else self.file
        return one_line(f"{where}: {self.message}")


@dataclass
class Competition:
    """A data folder as kit understands it: one table per split plus what the submission must look like."""

    root: Path
    layout: str  # "csv" or "folders"
    train: pd.DataFrame  # columns: id, path, label, row
    test: pd.DataFrame | None  # columns: id, path, row (and label when the folder has answers)
    validation: pd.DataFrame | None  # an explicit validation/ folder, else None
    class_names: list[str]
    id_col: str = "id"
    label_col: str = "label"
    train_file: str = "train/"
    test_file: str | None = None
    sample_file: str | None = None
    sample: pd.DataFrame | None = None
    problems: list[Problem] = field(default_factory=list)
    raw_labels: pd.Series | None = None  # labels as written (before stripping spaces), for reporting
    unlisted_images: list[str] = field(default_factory=list)  # image files in the used folders that no table lists
    tag_separator: str = ""  # multi-label: what separates the tags in a label (class_names are then the tags)
    evidence: list[str] = field(default_factory=list)  # why kit reads the folder so (kit validate --explain)
    wrapper: str = ""  # the folder(s) the data sits in inside DATA (comp/comp/…), '' when none: for showing paths

    def shown(self, name: str | None) -> str | None:
        """A file or folder of the competition as the user finds it in DATA (inside its wrapping folder)."""
        if not name or not self.wrapper:
            return name
        return f"{self.wrapper}/" if name in ("./", ".") else f"{self.wrapper}/{name}"

    def reading(self) -> list[str]:
        """How kit reads the folder, in a few lines: where the training images and classes are, and the test."""
        held = f" (+ {len(self.validation)} validation images)" if self.validation is not None else ""
        where = self.shown
        lines = [f"train: {len(self.train)} images{held} from {where(self.train_file)}, {len(self.class_names)} "
                 "classes"]
        if self.test is not None:
            answers = ", labelled (held-out answers)" if "label" in self.test.columns else ""
            lines.append(f"test: {len(self.test)} images from {where(self.test_file)}{answers}")
        else:
            lines.append("test: none")
        return lines

    @property
    def submission_columns(self) -> list[str]:
        return list(self.sample.columns) if self.sample is not None else [self.id_col, self.label_col]


# ----------------------------------------------------------------------------------------- tables


def read_table(path: Path, root: Path | None = None) -> pd.DataFrame:
    """Read a CSV as strings: BOM-tolerant (UTF-8 or UTF-16), delimiter sniffed (, ; tab |), any line ending.

    Every row must have the header's number of fields; each row's line in the file is kept in
    table.attrs["lines"] for messages. A file that is really gzip, a spreadsheet or not text is named as such.
    """
    name = relative_name(path, root)
    raw = path.read_bytes()
    text = _decode_table(raw, name)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        raise DataError(f"{name}: the file is empty; expected a header line and rows")
    header_line = text.split("\n", 1)[0]
    sep = max([",", ";", "\t", "|"], key=header_line.count)
    reader = csv.reader(io.StringIO(text), delimiter=sep, quotechar='"')
    try:
        header = [c.strip() for c in next(reader)]
        rows, lines = [], []
        while True:
            line = reader.line_num + 1  # where the row starts (a quoted field may span lines)
            row = next(reader, None)
            if row is None:
                break
            if not row or (len(row) == 1 and not row[0].strip() and len(header) > 1):
                continue  # a blank line
            if len(row) != len(header):
                raise DataError(f"{name}:{line}: {len(row)} field(s) where the header has {len(header)} "
                                f"({columns_text(header)}); check the quoting and delimiters of that line")
            rows.append(row)
            lines.append(line)
    except csv.Error as e:
        raise DataError(f"{name}:{reader.line_num}: cannot parse as CSV ({e})") from None
    repeated = sorted({c for c in header if header.count(c) > 1})
    if repeated:
        raise DataError(f"{name}:1: column '{repeated[0]}' appears {header.count(repeated[0])} times; column names "
                        "must be unique")
    if not rows:
        raise DataError(f"{name}: has a header ({columns_text(header)}) but no rows")
    table = pd.DataFrame(rows, columns=header, dtype=str)
    table.attrs["lines"] = lines
    return table


# What a table file really is when it is not text: its first bytes say so.
NOT_TEXT = ((b"\x1f\x8b", "a gzip-compressed file; decompress it (gunzip) first"),
            (b"PK\x03\x04", "a zip archive (an .xlsx spreadsheet is one); unzip it, or save the sheet as CSV"),
            (b"\xd0\xcf\x11\xe0", "an old Excel (.xls) workbook; save the sheet as CSV (UTF-8)"),
            (b"PAR1", "a Parquet file; convert it to CSV"),
            (b"BZh", "a bzip2-compressed file; decompress it first"),
            (b"\xfd7zXZ", "an xz-compressed file; decompress it first"))


def _decode_table(raw: bytes, name: str) -> str:
    """The text of a table file: UTF-8 (with or without BOM) or UTF-16 with its BOM; else one line naming what the
    file is."""
    for magic, what in NOT_TEXT:
        if raw.startswith(magic):
            raise DataError(f"{name}: is {what}")
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return raw.decode("utf-16")
        except UnicodeDecodeError:
            raise DataError(f"{name}: starts like UTF-16 text but does not decode as it; save it as UTF-8") from None
    if b"\0" in raw[:4096]:
        raise DataError(f"{name}: holds NUL bytes, so it is not a text table (UTF-16 without a BOM, or binary); "
                        "save it as CSV in UTF-8")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(f"{name}:{line}: not UTF-8 (byte 0x{raw[e.start]:02x}); save the file as UTF-8") from None


def table_lines(table: pd.DataFrame) -> list[int]:
    """Each row's line in its file (read_table keeps them); 2, 3, … for a table built otherwise."""
    return list(table.attrs.get("lines") or range(2, len(table) + 2))


def _find_tables(root: Path, given: dict[str, str]) -> dict[str, Path | None]:
    """The train, test and sample tables: given ones (--train-csv, --test-csv, --sample, relative to the folder),
    else found by name at the top of the folder, else one folder down (train/train.csv)."""
    found: dict[str, list[Path]] = {"train": [], "test": [], "sample": [], "validation": []}
    for folder in [root] + subfolders(root):
        for entry in sorted(folder.iterdir()) if folder.is_dir() else []:
            kind = table_kind(entry.name) if entry.is_file() and entry.suffix.lower() == ".csv" else None
            if kind and (folder == root or not found[kind]):
                found[kind].append(entry)
        if folder == root and found["train"]:
            break  # a table at the top: nothing one folder down is needed
    chosen: dict[str, Path | None] = {}
    for kind, paths in found.items():
        if given.get(kind):
            chosen[kind] = _given_table(root, kind, given[kind])
            continue
        exact = [p for p in paths if p.stem.lower() == kind or (kind == "sample" and p.stem.lower() ==
                                                                "sample_submission")]
        if len(paths) > 1 and len(exact) != 1:
            labelled = _labelled_tables(root, paths) if kind == "train" else []
            if len(labelled) == 1:  # train_labels.csv beside train_features.csv: the one that holds labels
                chosen[kind] = labelled[0]
                continue
            names = ", ".join(relative_name(p, root) for p in paths)
            raise DataError(f"{root}: several {kind} tables ({names}); pass {TABLE_OPTIONS[kind]} FILE to choose one: "
                            f"`kit run DATA {TABLE_OPTIONS[kind]} {relative_name((labelled or paths)[0], root)}`")
        chosen[kind] = exact[0] if exact else (paths[0] if paths else None)
    if chosen["train"] is None and not given.get("train"):
        chosen["train"] = _table_by_content(root, [p for p in chosen.values() if p is not None])
        train = chosen["train"]
        if train is not None and chosen["test"] is None and split_kind(train.parent.name) == "train":
            beside = [d / train.name for d in sorted(root.iterdir()) if d.is_dir() and split_kind(d.name) == "test"]
            chosen["test"] = next((p for p in beside if p.is_file()), None)  # HF imagefolder: test/metadata.csv
    return chosen


TABLE_OPTIONS = {"train": "--train-csv", "test": "--test-csv", "sample": "--sample", "validation": "--train-csv"}


def _labelled_tables(root: Path, paths: list[Path]) -> list[Path]:
    """Of several training tables, those holding a label: a column named like one, or a one-hot group."""
    found = []
    for path in paths:
        try:
            table = read_table(path, root)
        except DataError:
            continue
        names = {c.strip().lower().replace(" ", "_") for c in table.columns[1:]}
        if names & set(LABEL_NAMES[:-1]) or one_hot_columns(table, {table.columns[0]}):
            found.append(path)
    return found


def _table_by_content(root: Path, taken: list[Path]) -> Path | None:
    """A training table named like nothing kit knows (meta.csv, HAM10000_metadata.csv): the table at the top or one
    folder down whose one column names image files and which holds another column, most such rows first."""
    names, best, best_hits = None, None, 0
    folders = [root] + subfolders(root)
    for path in [p for f in folders for p in sorted(f.iterdir()) if p.is_file() and p.suffix.lower() in
                 (".csv", ".tsv") and p not in taken and table_kind(p.name) is None]:
        try:
            table = read_table(path, root)
        except DataError:
            continue
        if len(table.columns) < 2:
            continue
        names = names if names is not None else image_names(root)
        column = id_column_by_content(table, names)
        hits = sum(str(v).replace("\\", "/").rsplit("/", 1)[-1].lower() in names
                   for v in table[column].head(200)) if column else 0
        if hits > best_hits and hits >= 0.5 * min(200, len(table)):
            best, best_hits = path, hits
    return best


def _given_table(root: Path, kind: str, value: str) -> Path:
    path = root / value
    if unsafe_path_reason(value) or not path.is_file():
        raise DataError(f"{TABLE_OPTIONS[kind]} {value}: not a file inside {root}")
    return path


# ------------------------------------------------------------------------------------ image lookup


def _nfc(name: str) -> str:
    return unicodedata.normalize("NFC", name)


class ImageFolder:
    """The image files directly inside one folder, indexed by NFC-normalised, case-folded name."""

    def __init__(self, root: Path, rel: str):
        self.root, self.rel = root, rel
        self.path = (root / rel) if rel != "." else root
        self.by_name: dict[str, list[str]] = {}
        self.links: set[str] = set()  # names that are symbolic links: the only files here that can lead out
        if self.path.is_dir():
            with os.scandir(self.path) as entries:
                for e in entries:
                    if e.is_file():  # follows symlinks; a dangling one is not a file
                        self.by_name.setdefault(_nfc(e.name).lower(), []).append(e.name)
                        if e.is_symlink():
                            self.links.add(e.name)

    def candidates(self, image_id: str) -> list[str]:
        """File names that can hold the image for this id: the id itself, or id + an image extension; those that
        spell the id exactly (the extension in any case: 1.JPG for id 1) first, then those differing in case."""
        key = _nfc(image_id).lower()
        names = list(self.by_name.get(key, [])) if is_image_name(key) else []
        if not names:
            for ext in IMAGE_EXTENSIONS:
                names += self.by_name.get(key + ext, [])
        exact = [n for n in names if spelled(n, image_id) == _nfc(image_id)]
        return exact + [n for n in names if n not in exact]


def spelled(name: str, image_id: str) -> str:
    """How a file name spells an id it matched (its first len(id) characters, NFC)."""
    return _nfc(name)[:len(_nfc(image_id))]


def image_dirs(root: Path, side: str, given: tuple[str, ...] = ()) -> tuple[str, ...]:
    """Where a side's images may be: the folders given (--train-images/--test-images), else the usual names plus
    every top-level folder whose name holds the side's name (train-jpg/, test-jpg-additional/, test1/, …) and
    its images/ folder."""
    if given:
        return given
    usual = TRAIN_IMAGE_DIRS if side == "train" else TEST_IMAGE_DIRS
    named = [d.name for d in sorted(root.iterdir()) if d.is_dir() and side in d.name.lower()] if root.is_dir() else []
    extra = [n for name in named for n in (name, f"{name}/images") if n not in usual]
    return tuple(usual[:-1]) + tuple(extra) + (".",)


def _resolve_ids(root: Path, table: pd.DataFrame, id_col: str, table_name: str, side: str,
                 problems: list[Problem], options: "ReadOptions") -> tuple[list[str], list[ImageFolder]]:
    """Map every id to an image path (empty string when missing, with a problem recorded). Each id is looked up
    in the folder holding most of them first, then in the others (Planet's test images fill two folders)."""
    ids = table[id_col].tolist()
    dirs = image_dirs(root, side, options.train_images if side == "train" else options.test_images)
    follow = options.follow_symlinks
    by_path = any("/" in str(v) or "\\" in str(v) for v in ids[:50])
    folders = _folders_holding(root, dirs, ids, by_path)
    if not folders and not (options.train_images if side == "train" else options.test_images):
        folders = _folders_holding(root, tuple(image_folders(root)), ids, by_path)  # anywhere (HAM10000's parts)
    if not folders:
        looked = ", ".join(d + "/" for d in dirs if d != ".") or "no folder"
        zips = sorted(p.name for p in root.glob("*.zip"))
        formats = unreadable_formats(root)
        hint = f"; the images may be in {', '.join(zips)}" if zips else \
            f"; the folder holds {', '.join(formats)}, which kit does not read: convert them to image files" \
            if formats else ""
        raise DataError(f"{table_name}: no image found for any id (first id '{ids[0]}'; looked in {looked} and the "
                        f"folder itself, with extensions {' '.join(IMAGE_EXTENSIONS)}{hint}); pass --{side}-images "
                        "FOLDER")
    for folder in folders:
        _confined(folder.path, root, follow)  # a folder that is a link out: named once, not per image
    start = len(problems)
    paths = [_resolved_path(root, folders, image_id, table_name, row, problems, follow)
             for row, image_id in zip(table_lines(table), ids)]
    _one_case_warning(problems, start)
    return paths, folders


def _folders_holding(root: Path, dirs, ids: list[str], by_path: bool) -> list[ImageFolder]:
    """The folders among `dirs` that hold the images of some ids, most first."""
    folders = [f for f in (ImageFolder(root, d) for d in dict.fromkeys(dirs)) if f.by_name or
               (by_path and f.path.is_dir())]
    sample = ids if len(ids) <= 2000 else ids[:: len(ids) // 2000]
    hits = {id(f): sum(1 for i in sample if not unsafe_path_reason(i) and _lookup(f, i)) for f in folders}
    return sorted((f for f in folders if hits[id(f)]), key=lambda f: -hits[id(f)])


def _lookup(folder: ImageFolder, image_id: str) -> list[str]:
    if "/" in image_id or "\\" in image_id:
        p = folder.path / image_id.replace("\\", "/")
        return [image_id.replace("\\", "/")] if p.is_file() else []
    return folder.candidates(image_id)


def _resolved_path(root: Path, folders: list[ImageFolder], image_id: str, table_name: str, row: int,
                   problems: list[Problem], follow: bool) -> str:
    """One id's image path, or "" with the problem recorded."""
    reason = unsafe_path_reason(image_id)
    if reason:
        problems.append(Problem("error", "unsafe_path", table_name, f"id '{image_id}' {reason}; ids must name "
                                "files inside the data folder", row))
        return ""
    if not image_id.strip():
        problems.append(Problem("error", "empty_id", table_name, "empty id; every row needs the id of its image", row))
        return ""
    looked_up = image_id
    folder, names = next(((f, n) for f in folders for n in [_lookup(f, image_id)] if n), (folders[0], []))
    if not names and re.fullmatch(r"\d+\.0+", image_id):
        looked_up = image_id.split(".")[0]
        folder, names = next(((f, n) for f in folders for n in [_lookup(f, looked_up)] if n), (folders[0], []))
        if names:
            problems.append(Problem("warning", "float_id", table_name, f"id '{image_id}' looks like a number "
                                    f"saved as a float (Excel?); matched {names[0]}", row))
    if not names:
        problems.append(Problem("error", "missing_image", table_name, _missing_reason(folders[0], image_id), row))
        return ""
    if not _chosen_by_case(names, looked_up.replace("\\", "/"), folder, table_name, row, problems):
        return ""
    path = folder.path / names[0]
    # the folder itself is confined (checked once), so only a link, or a path through subfolders, can lead out
    if not follow and (names[0] in folder.links or "/" in names[0]) and not _inside(path, root):
        problems.append(Problem("error", "unsafe_path", table_name,
                                f"image '{names[0]}' is a symlink that leads outside the data folder", row))
        return ""
    return str(path)


def _chosen_by_case(names: list[str], image_id: str, folder: ImageFolder, table_name: str, row: int,
                    problems: list[Problem]) -> bool:
    """Whether names[0] is this id's image: spelled exactly, or the one file that differs from it only in case
    (a warning); files spelling the id in several cases, none exactly, are an error. Several extensions of the
    chosen spelling (1.png, 1.jpg) are a warning."""
    spelling = spelled(names[0], image_id)
    same = [n for n in names if spelled(n, image_id) == spelling]
    if spelling != _nfc(image_id):
        variants = sorted({spelled(n, image_id) for n in names})
        if len(variants) > 1:
            problems.append(Problem("error", "ambiguous_case", table_name, f"id '{image_id}' matches "
                                    f"{', '.join(sorted(names))} in {folder.rel}/, which differ only in case, and none "
                                    "is spelled exactly like the id; rename the files or fix the id", row))
            return False
        problems.append(Problem("warning", "case_mismatch", table_name, f"id '{image_id}' matched {names[0]} in "
                                f"{folder.rel}/, which differs from it in case", row))
    if len(same) > 1:
        problems.append(Problem("warning", "ambiguous_image", table_name,
                                f"id '{image_id}' matches {', '.join(sorted(same))} in {folder.rel}/; using {names[0]}",
                                row))
    return True


def _one_case_warning(problems: list[Problem], start: int) -> None:
    """Ids matched to files differing in case: one warning per table, with the count and the first row."""
    found = [p for p in problems[start:] if p.code == "case_mismatch"]
    if len(found) > 1:
        first = found[0]
        problems[start:] = [p for p in problems[start:] if p.code != "case_mismatch"]
        problems.append(Problem("warning", "case_mismatch", first.file, f"{len(found)} ids matched image files that "
                                f"differ from them in case (first: {first.message.split(', which')[0]})", first.row))


def _missing_reason(folder: ImageFolder, image_id: str) -> str:
    where = f"{folder.rel}/" if folder.rel != "." else "the data folder"
    if re.fullmatch(r"\d(\.\d+)?[eE][+-]?\d+", image_id):
        return (f"id '{image_id}' looks like Excel scientific notation, so the real id was lost; re-export the "
                "table with the id column formatted as text")
    target = folder.path / image_id
    if target.is_symlink() and not target.exists():
        return f"image '{image_id}' in {where} is a dangling symlink"
    for name in [image_id] + [image_id + ext for ext in IMAGE_EXTENSIONS]:
        if (folder.path / name).is_dir():
            return f"'{name}' in {where} is a folder, not an image"
    tried = image_id if is_image_name(image_id) else f"{image_id}, {image_id}.png, {image_id}.jpg, …"
    return f"image '{image_id}' not found in {where} (looked for {tried})"


def _unlisted(folders: list[ImageFolder], tables: list[pd.DataFrame]) -> list[str]:
    """Image files in the folders kit took images from that no table mentions."""
    used = {os.path.normpath(p) for t in tables for p in t["path"] if p}
    found = []
    for folder in {f.path: f for f in folders}.values():
        for names in folder.by_name.values():
            for name in names:
                path = os.path.normpath(str(folder.path / name))
                if is_image_name(name) and path not in used:
                    found.append(relative_name(Path(path), folder.root))
    return sorted(found)


# --------------------------------------------------------------------------------------- layouts


ONE_HOT_LABEL = "label (one-hot)"  # the label column kit makes from a one-hot group of columns


def _pick_columns(root: Path, train: pd.DataFrame, sample: pd.DataFrame | None, test: pd.DataFrame | None,
                  train_name: str, label_col: str | None) -> tuple[str, str, pd.DataFrame]:
    """The id and label columns, by content: the column naming image files is the id (the sample's first column
    when the training table has it); the label is --label-col, the sample's value column, a one-hot group of 0/1
    columns (made into one label column), a column named like a label, or the one other column."""
    id_col = sample.columns[0] if sample is not None and sample.columns[0] in train.columns else None
    id_col = id_col or id_column_by_content(train, image_names(root)) or \
        (test.columns[0] if test is not None and test.columns[0] in train.columns else train.columns[0])
    if label_col:
        if label_col not in train.columns:
            raise DataError(f"{train_name}: no column '{label_col}' (--label-col); columns are: "
                            f"{columns_text(train.columns)}")
        return id_col, label_col, train
    if sample is not None and len(sample.columns) == 2 and sample.columns[1] in train.columns and \
            sample.columns[1] != id_col:
        return id_col, sample.columns[1], train
    others = [c for c in train.columns if c != id_col]
    group = one_hot_columns(train, {id_col})
    if group and (len(group) == len(others) or (sample is not None and set(group) <= set(sample.columns[1:]))):
        labels = train[group].apply(lambda row: group[[v.strip() in ("1", "1.0", "1.00") for v in row].index(True)],
                                    axis=1)
        return id_col, ONE_HOT_LABEL, train.assign(**{ONE_HOT_LABEL: labels})
    if len(others) == 1:
        return id_col, others[0], train
    if not others:
        raise DataError(f"{train_name}: only one column ({id_col}); expected an id column and a label column")
    repeating = [c for c in others if train[c].nunique() < len(train) or len(train) <= 10]  # a label repeats
    named = sorted((c for c in repeating if c.strip().lower().replace(" ", "_") in LABEL_NAMES),
                   key=lambda c: LABEL_NAMES.index(c.strip().lower().replace(" ", "_")))
    if named:
        return id_col, named[0], train
    formats = unreadable_formats(root)
    if formats and not image_names(root):  # Bengali.AI: the images are in Parquet files
        raise DataError(f"{root}: holds {', '.join(formats)} but no image files, and {train_name} names no image; "
                        f"the images are in the {', '.join(formats)}, which kit does not read: convert them to image "
                        "files (PNG, JPEG, …) or a pixel table")
    raise DataError(f"{train_name}: cannot tell which column is the label (columns: {columns_text(train.columns)}); "
                    f"pass --label-col NAME: `kit run DATA --label-col {_likeliest_label(train, others)}`")


def _likeliest_label(train: pd.DataFrame, columns: list[str]) -> str:
    """The column most like a label: values that repeat, fewest distinct but at least two."""
    def score(column):
        distinct = train[column].nunique()
        return (2 <= distinct < len(train), -distinct)
    return max(columns, key=score)


@dataclass(frozen=True)
class ReadOptions:
    """How to read a data folder where kit's own finding is not enough: the flags of the same names."""

    label_col: str = ""
    group_col: str = ""
    train_csv: str = ""
    test_csv: str = ""
    sample: str = ""
    train_images: tuple[str, ...] = ()  # --train-images A,B: folders (inside the data folder) to look in
    test_images: tuple[str, ...] = ()
    label_from_name: str = ""  # a regular expression whose one group is the class, matched against file names
    follow_symlinks: bool = False
    submission: str = "auto"  # auto: labels that are tags are read as tags; tags: they must be; else: never
    tag_separator: str = ""  # a run's recorded tag separator (its tags are read with it)

    @classmethod
    def of(cls, settings) -> "ReadOptions":
        """From a Config (or anything with these attributes); comma-separated folders become tuples."""
        values = {f: getattr(settings, f, "") or "" for f in cls.__dataclass_fields__}
        for f in ("train_images", "test_images"):
            value = values[f]
            values[f] = tuple(v.strip() for v in value.split(",") if v.strip()) if isinstance(value, str) else \
                tuple(value)
        values["follow_symlinks"] = bool(values["follow_symlinks"])
        return cls(**values)


def _read_csv_layout(root: Path, tables: dict[str, Path | None], options: ReadOptions) -> Competition:
    problems: list[Problem] = []
    train_name = relative_name(tables["train"], root)
    train = read_table(tables["train"], root)
    sample = read_table(tables["sample"], root) if tables["sample"] else None
    test = read_table(tables["test"], root) if tables["test"] else None
    if test is not None and sample is not None and sample.columns[0] not in test.columns:
        test, tables = None, {**tables, "test": None}  # a table of something else (Planet's file mapping)
    id_col, label_col, train = _pick_columns(root, train, sample, test, train_name, options.label_col)
    if options.group_col and options.group_col not in train.columns:
        raise DataError(f"{train_name}: no column '{options.group_col}' (--group-col); columns are: "
                        f"{columns_text(train.columns)}")
    hint = None if options.group_col else _group_column_hint(train, id_col, label_col, train_name)
    if hint:
        problems.append(hint)
    train, repeated = _drop_repeated_rows(train, [id_col, label_col])
    for row in repeated:
        problems.append(Problem("warning", "repeated_row", train_name, "exact repeat of an earlier row; used once", row))
    train_paths, folders = _resolve_ids(root, train, id_col, train_name, "train", problems, options)
    validation = _validation_table(root, tables.get("validation"), id_col, label_col, problems, options)
    labels = train[label_col].str.strip()
    train_df = pd.DataFrame({"id": train[id_col], "path": train_paths, "label": labels, "row": train["_row"]})
    if options.group_col:
        train_df["group"] = train[options.group_col].to_numpy()
    test_df, test_name = None, None
    if test is not None or sample is not None:
        source, test_name = (test, relative_name(tables["test"], root)) if test is not None else \
            (sample, relative_name(tables["sample"], root))
        test_id_col = id_col if id_col in source.columns else source.columns[0]
        test_paths, test_folders = _resolve_ids(root, source, test_id_col, test_name, "test", problems, options)
        test_df = pd.DataFrame({"id": source[test_id_col], "path": test_paths, "row": table_lines(source)})
        folders += test_folders
    separator = options.tag_separator if options.submission == "tags" and options.tag_separator else \
        tag_separator(labels, options.submission or "auto")
    class_names = sorted({t for lab in labels for t in split_tags(lab, separator)} if separator else
                         {lab for lab in labels if lab})
    evidence = [f"train table {train_name}: id column '{id_col}', label column '{label_col}'"
                + (" (made from the one-hot columns)" if label_col == ONE_HOT_LABEL else ""),
                f"images of the ids found in {', '.join(dict.fromkeys(f.rel + '/' for f in folders))}"]
    return Competition(root=root, layout="csv", train=train_df, test=test_df, validation=validation,
                       class_names=class_names, evidence=evidence,
                       tag_separator=separator,
                       id_col=id_col, label_col=label_col, train_file=train_name, test_file=test_name,
                       sample_file=relative_name(tables["sample"], root) if tables["sample"] else None, sample=sample,
                       problems=problems, raw_labels=train[label_col].reset_index(drop=True),
                       unlisted_images=_unlisted(folders, [t for t in (train_df, test_df) if t is not None]))


def _validation_table(root: Path, path: Path | None, id_col: str, label_col: str, problems: list[Problem],
                      options: ReadOptions) -> pd.DataFrame | None:
    """An official validation table (val.csv, valid.csv, validation.csv) with the training table's columns: the
    validation split, instead of one drawn from the training images."""
    if path is None:
        return None
    table = read_table(path, root)
    if id_col not in table.columns or label_col not in table.columns:
        return None
    name = relative_name(path, root)
    paths, _ = _resolve_ids(root, table, id_col, name, "train", problems, options)
    return pd.DataFrame({"id": table[id_col], "path": paths, "label": table[label_col].str.strip(),
                         "row": table_lines(table)})


TAG_SEPARATORS = (" ", "|", ";")


def split_tags(label: str, separator: str) -> list[str]:
    """The tags of one label, in their order, each once."""
    return list(dict.fromkeys(t.strip() for t in label.split(separator) if t.strip()))


def tag_separator(labels, submission: str = "auto") -> str:
    """The separator when the labels are multi-label tags, '' when each is one class. Tags: some label holds two
    or more, and there are fewer distinct tags than distinct labels (tags recur across rows: Planet's 17 tags in
    hundreds of combinations); class names with spaces (Plant Seedlings' "Common wheat") have more words than
    classes. submission "tags" takes the first separator some label holds (none: the labels are not tags); any other
    kind but auto: never tags."""
    if submission not in ("auto", "tags"):
        return ""
    distinct = {lab for lab in labels if lab}
    for separator in TAG_SEPARATORS:
        split = [split_tags(lab, separator) for lab in distinct]
        if max(map(len, split), default=0) < 2:
            continue
        if submission == "tags" or len({t for tags in split for t in tags}) < len(distinct):
            return separator
    return ""


def strata(labels: pd.Series, separator: str = "", min_count: int = MIN_IMAGES_PER_CLASS) -> pd.Series:
    """What a split stratifies on: the label, or for tags each image's rarest tag among those on at least
    min_count images (the most common tag when it has none), so rare tags land on both sides where they can — a
    cheap stand-in for iterative stratification."""
    if not separator:
        return labels
    tags = labels.map(lambda label: split_tags(label, separator))
    counts = pd.Series([t for row in tags for t in row]).value_counts()
    common = counts.index[0] if len(counts) else ""
    return tags.map(lambda row: min((t for t in row if counts[t] >= min_count), key=lambda t: (counts[t], t),
                                    default=common))


# Columns that name who or what a photo is of: several photos of one driver (State Farm), patient (SIIM-ISIC
# Melanoma, RANZCR) or lesion (HAM10000) on both sides of the validation split make its score lie.
GROUP_COLUMN_NAMES = ("subject", "subject_id", "patient", "patient_id", "patientid", "driver", "driver_id", "user",
                      "user_id", "lesion_id", "case", "case_id", "study_id", "individual", "individual_id", "person",
                      "person_id", "group", "group_id", "source_id", "animal_id", "plant_id", "field_id")


def _group_column_hint(train: pd.DataFrame, id_col: str, label_col: str, train_name: str) -> Problem | None:
    """A warning naming the training table's column of repeated people or things, when it has one."""
    for column in train.columns:
        name = column.strip().lower().replace(" ", "_")
        if column in (id_col, label_col) or name not in GROUP_COLUMN_NAMES:
            continue
        values = train[column][train[column].str.strip() != ""]
        count = values.nunique()
        if 1 < count < len(values):
            return Problem("warning", "group_column", train_name,
                           f"column '{column}' repeats ({count} values over {len(values)} rows): images of one "
                           f"{name.removesuffix('_id')} on both sides of the validation split make its score lie; "
                           f"pass --group-col {column} to keep each on one side")
    return None


def _drop_repeated_rows(table: pd.DataFrame, columns: list[str]) -> tuple[pd.DataFrame, list[int]]:
    """Keep the first of identical (id, label) rows; remember every row's CSV line number."""
    table = table.assign(_row=table_lines(table))
    repeated = table.duplicated(subset=columns, keep="first")
    kept = table[~repeated].reset_index(drop=True)
    kept.attrs["lines"] = kept["_row"].tolist()
    return kept, table.loc[repeated, "_row"].tolist()


def _image_files(folder: Path, root: Path, follow: bool) -> list[str]:
    """Image files under a folder (recursively, regular files only), as sorted POSIX paths relative to it.

    A link (to a file or a folder) that leads outside the data folder stops the reading with one line naming
    it, unless follow; with follow, each real folder is walked once (links may form cycles)."""
    found, seen = [], set()
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=follow):
        real = os.path.realpath(dirpath)
        if real in seen:
            dirnames.clear()
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if not is_junk(d))
        filenames = [f for f in filenames if not is_junk(f)]
        for name in dirnames + filenames:
            if not follow and os.path.islink(os.path.join(dirpath, name)):
                _confined(Path(dirpath) / name, root, follow)
        for name in filenames:
            path = os.path.join(dirpath, name)
            if is_image_name(name) and os.path.isfile(path):  # not a FIFO, device or dangling link
                found.append(Path(path).relative_to(folder).as_posix())
    return sorted(found)


def _class_dirs(folder: Path, root: Path, follow: bool) -> list[Path]:
    if not folder.is_dir():
        return []
    _confined(folder, root, follow)
    dirs = sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith(".") and not is_junk(d.name)
                  and not is_split_name(d.name))
    for d in dirs:
        _confined(d, root, follow)
    return dirs


def _labelled_folder(folder: Path, root: Path, follow: bool) -> pd.DataFrame:
    rows = []
    for class_dir in _class_dirs(folder, root, follow):
        for rel in _image_files(class_dir, root, follow):
            rows.append({"id": f"{class_dir.name}/{rel}", "path": str(class_dir / rel), "label": _nfc(class_dir.name)})
    table = pd.DataFrame(rows, columns=["id", "path", "label"])
    table["row"] = None
    return table


NAME_LABEL = r"^([A-Za-z][A-Za-z_ -]*?)[._ -]\d+\.[A-Za-z]+$"  # cat.0.jpg (Dogs vs. Cats), great_pyrenees_12.jpg (Pets)


def _labelled_by_name(folder: Path, root: Path, options: ReadOptions) -> pd.DataFrame:
    """Training images whose class is in their file name (`--label-from-name REGEX`, one group; by default a
    word before a number, as in cat.0.jpg), when every file matches and each class has at least two."""
    files = [f for f in _image_files(folder, root, options.follow_symlinks) if "/" not in f]
    pattern = options.label_from_name or NAME_LABEL
    try:
        compiled = parse_name_pattern(pattern)
        found = [class_in_name(compiled, pattern, f) for f in files]
    except ConfigError as e:
        raise DataError(str(e)) from None
    labels = [lab for lab in found if lab is not None]
    if not files or (not options.label_from_name and (len(labels) < len(files) or len(set(labels)) < 2
                                                      or min(Counter(labels).values()) < 2)):
        return pd.DataFrame(columns=["id", "path", "label", "row"])
    matches = found
    unmatched = [f for f, m in zip(files, matches) if not m]
    if unmatched:
        raise DataError(f"{relative_name(folder / unmatched[0], root)}: its name does not match --label-from-name {pattern} "
                        f"({len(unmatched)} file(s) do not)")
    return pd.DataFrame({"id": files, "path": [str(folder / f) for f in files], "label": labels, "row": None})


def _train_folder(root: Path, options: ReadOptions) -> tuple[Path, pd.DataFrame, Reading | None]:
    """The training images of a layout without a table: class folders at any depth (train/<class>/, <class>/,
    101_ObjectCategories/<class>/, chest_xray/train/<class>/; kit.layout decides by content), or one folder of
    images whose names carry the class (train/cat.0.jpg)."""
    follow = options.follow_symlinks
    named = [_unwrapped(root / d) for d in options.train_images or
             [d.name for d in sorted(root.iterdir()) if d.is_dir() and "train" in d.name.lower()]]
    if not options.label_from_name:
        with_classes = [f for f in named if f.is_dir() and _class_dirs(f, root, follow)]
        if with_classes:  # trainingSet/ over trainingSample/: the one with most images
            folder = max(with_classes, key=lambda f: (len(_image_files(f, root, follow)), -with_classes.index(f)))
            return folder, _labelled_folder(folder, root, follow), None
        try:
            reading = None if options.train_images else find_class_folders(root)
        except Ambiguous as e:
            what, flag = str(e).split("|")
            raise DataError(f"{root}: {what} Pass {flag.split()[0]}: `kit run DATA {flag}`") from None
        if reading is not None:
            for part in (reading.train, reading.validation, reading.test):
                if part is not None:
                    _confined(part, root, follow)
            return reading.train, _labelled_folder(reading.train, root, follow), reading
    for folder in named + _image_folders(root, named):
        table = _labelled_by_name(folder, root, options)
        if len(table):
            return folder, table, None
    for folder in named:
        if folder.is_dir() and _image_files(folder, root, follow):
            formats = unreadable_formats(root)
            where = f" (the labels may be in its {', '.join(formats)}, which kit does not read: write them as a CSV " \
                "of file,label)" if formats else ""
            raise DataError(f"{relative_name(folder, root)}/: images, but no class folders and no table says their "
                            f"classes{where}; pass --label-from-name REGEX (one group, the class) if their names "
                            "carry it, or --train-csv FILE")
    formats = unreadable_formats(root)
    if formats:
        raise DataError(f"{root}: holds {', '.join(formats)} but no image files or tables kit reads; kit reads "
                        "images (PNG, JPEG, …), CSV tables, pixel tables, zips and tars, so convert the data to one "
                        "of those")
    raise DataError(f"{root}: no training table and no class folders with images (expected train.csv or "
                    "labels.csv, or train/<class>/<image>, or <class>/<image>, or train/<class>.<n>.jpg)")


def _image_folders(root: Path, named: list[Path]) -> list[Path]:
    """Top-level folders (and their one sub-folder) holding images directly, most images first: where images
    named by class may be (Oxford Pets' images/)."""
    found = []
    for d in subfolders(root):
        if d not in named:
            folder = _unwrapped(d)
            count = sum(1 for p in folder.iterdir() if p.is_file() and is_image_name(p.name))
            if count:
                found.append((-count, folder))
    return [f for _, f in sorted(found, key=lambda item: item[0])]


def _unwrapped(folder: Path) -> Path:
    """A folder that holds nothing but one folder stands for that folder (Intel's seg_train/seg_train/)."""
    while folder.is_dir():
        entries = [e for e in folder.iterdir() if not e.name.startswith(".")]
        if len(entries) != 1 or not entries[0].is_dir():
            break
        folder = entries[0]
    return folder


def _validation_folder(root: Path, options: ReadOptions, problems: list[Problem]) -> pd.DataFrame | None:
    """validation/, valid/ or val/: class folders, or images with a labels file beside them (Tiny ImageNet's
    val_annotations.txt: file, class, … separated by tabs or commas); images with neither are left out, said so."""
    follow = options.follow_symlinks
    for name in VALIDATION_DIRS:
        folder = root / name
        if _class_dirs(folder, root, follow):
            return _labelled_folder(folder, root, follow)
        files = _image_files(folder, root, follow) if folder.is_dir() else []
        if not files:
            continue
        by_name = {Path(f).name: f for f in files}
        for labels_file in sorted(p for p in folder.iterdir() if p.suffix.lower() in (".txt", ".csv", ".tsv")):
            _confined(labels_file, root, follow)
            rows = [re.split(r"[\t,]", line.strip()) for line in labels_file.read_text("utf-8", "replace").splitlines()]
            pairs = [(r[0], r[1].strip()) for r in rows if len(r) >= 2 and Path(r[0]).name in by_name]
            if len(pairs) >= len(files) // 2:
                return pd.DataFrame({"id": [by_name[Path(f).name] for f, _ in pairs],
                                     "path": [str(folder / by_name[Path(f).name]) for f, _ in pairs],
                                     "label": [lab for _, lab in pairs], "row": None})
        problems.append(Problem("warning", "unlabelled_validation", f"{name}/", f"{len(files)} image(s) with no class "
                                "folders and no labels file beside them; not used (the validation split comes from "
                                "the training images)"))
    return None


def _official_splits(root: Path, train: pd.DataFrame, validation, problems: list[Problem]):
    """Split lists (Food-101's meta/train.txt and test.txt, Oxford Pets' annotations/trainval.txt and test.txt)
    decide which images train, validate and test: an image an official test list names is never trained on."""
    lists = split_lists(root)
    if not lists or not len(train):
        return train, validation, None
    keys = train["id"].map(lambda i: i.rsplit(".", 1)[0] if is_image_name(i) else i)
    names = keys.map(lambda k: k.rsplit("/", 1)[-1])
    sides = {}
    for kind, (path, listed) in lists.items():
        stems = set(listed)
        hit = keys.isin(stems) | names.isin(stems)
        if hit.mean() > 0 and hit.sum() >= 0.5 * len(stems):
            sides[kind] = (hit, relative_name(path, root))
    if "test" not in sides and "validation" not in sides:
        return train, validation, None
    listed_test = None
    if "test" in sides:
        hit, name = sides["test"]
        test = train[hit].drop(columns=["row"]).assign(row=None)
        listed_test = (test[["id", "path", "label", "row"]].reset_index(drop=True), name)
    if "validation" in sides and validation is None:
        validation = train[sides["validation"][0]].reset_index(drop=True)
    kept = sides["train"][0] if "train" in sides else ~np.logical_or.reduce(
        [hit for kind, (hit, _) in sides.items() if kind != "train"])
    problems.append(Problem("warning", "official_split", ", ".join(name for _, name in sides.values()),
                            f"official split lists used: {int(kept.sum())} training images"
                            + (f", {int(sides['test'][0].sum())} test images (never trained on)" if "test" in sides
                               else "")))
    return train[kept].reset_index(drop=True), validation, listed_test


def _read_folder_layout(root: Path, tables: dict[str, Path | None], options: ReadOptions) -> Competition:
    problems: list[Problem] = []
    train_dir, train, reading = _train_folder(root, options)
    follow = options.follow_symlinks
    if reading is not None and reading.validation is not None:
        validation = _labelled_folder(reading.validation, root, follow) \
            if _class_dirs(reading.validation, root, follow) else None
    else:
        validation = _validation_folder(root, options, problems)
    train, validation, listed_test = _official_splits(root, train, validation, problems)
    if validation is not None:
        unknown = sorted(set(validation["label"]) - set(train["label"]))
        if unknown:
            raise DataError(f"{relative_name(Path(validation['path'].iloc[0]).parent, root)}/: validation classes "
                            f"{few(unknown)} are not among the training classes ({len(unknown)} of "
                            f"{validation['label'].nunique()}); check the layout, or pass --train-images")
    sample = read_table(tables["sample"], root) if tables["sample"] else None
    test, test_name = _test_folder(root, train_dir, options, reading)
    if listed_test is not None:
        test, test_name = listed_test
    id_col = "id"
    if sample is not None:
        id_col, test_name = sample.columns[0], relative_name(tables["sample"], root)
        paths, _ = _resolve_ids(root, sample, id_col, test_name, "test", problems, options)
        test = pd.DataFrame({"id": sample[id_col], "path": paths, "row": table_lines(sample)})
    label_col = sample.columns[1] if sample is not None and len(sample.columns) == 2 else "label"
    evidence = [f"class folders in {relative_name(train_dir, root)}/: {reading.evidence}" if reading else
                f"classes from {'class folders' if train['id'].str.contains('/').any() else 'file names'} in "
                f"{relative_name(train_dir, root)}/"]
    if reading is not None and reading.runner_up:
        evidence.append(f"runner-up: {reading.runner_up}")
    return Competition(root=root, layout="folders", train=train, test=test, validation=validation, evidence=evidence,
                       class_names=sorted(set(train["label"])), id_col=id_col, label_col=label_col,
                       train_file=relative_name(train_dir, root) + "/" if train_dir != root else "./", test_file=test_name,
                       sample_file=relative_name(tables["sample"], root) if tables["sample"] else None, sample=sample,
                       problems=problems)


def _test_folder(root: Path, train_dir: Path, options: ReadOptions, reading: Reading | None = None
                 ) -> tuple[pd.DataFrame | None, str | None]:
    """The test images of a layout without a test table: the split folder kit.layout found beside the training
    one, else the first test folder holding images (test/, test1/, …); a test folder of class folders is labelled
    (its ids carry the class: kept as answers)."""
    follow = options.follow_symlinks
    beside = [relative_name(reading.test, root)] if reading is not None and reading.test is not None else []
    for rel in beside + list(image_dirs(root, "test", options.test_images)):
        folder = _unwrapped(root / rel)
        if rel == "." or not folder.is_dir() or folder == train_dir:
            continue
        if train_dir == root and split_kind(Path(rel).name) != "test":  # the classes sit at the top: only test/…
            continue
        if _class_dirs(folder, root, follow) and not [p for p in folder.iterdir()
                                                      if p.is_file() and is_image_name(p.name)]:
            return _labelled_folder(folder, root, follow), f"{rel}/"
        files = _image_files(folder, root, follow)
        if files:
            return pd.DataFrame({"id": files, "path": [str(folder / f) for f in files], "row": None}), f"{rel}/"
    return None, None


@stage("reading the data folder")
def load_competition(data_dir, options: ReadOptions | None = None, **flags) -> Competition:
    """Read a competition folder as published: tables and image folders, class folders, images named by class,
    zips or pixel tables (see kit.sources). `flags` are ReadOptions fields, for callers without a Config."""
    options = options or ReadOptions.of(SimpleNamespace(**flags))
    if not Path(data_dir).is_dir():
        raise DataError(f"{data_dir}: not a folder (expected a competition folder with train.csv or class folders)")
    given = unwrapped_root(Path(os.path.abspath(data_dir)))  # a download unzipped into a folder of its own name
    root = unwrapped_root(readable_folder(given, options.follow_symlinks))
    wrapper = os.path.relpath(given, os.path.abspath(data_dir))  # absolute: a run folder works from any directory
    options = _flags_inside(options, Path(os.path.abspath(data_dir)), root)
    for option, values in (("--train-images", options.train_images), ("--test-images", options.test_images)):
        for value in values:
            if unsafe_path_reason(value) or not (root / value).is_dir():
                raise DataError(f"{option} {value}: not a folder inside {root}")
            _confined(root / value, root, options.follow_symlinks)
    tables = _find_tables(root, {"train": options.train_csv, "test": options.test_csv, "sample": options.sample})
    for path in tables.values():
        if path is not None:
            _confined(path, root, options.follow_symlinks)  # a table linked from outside is never read
    if tables["train"] is not None:
        comp = _read_csv_layout(root, tables, options)
    elif options.group_col:
        raise DataError(f"--group-col {options.group_col}: needs a training table (train.csv); {root} has none")
    else:
        comp = _read_folder_layout(root, tables, options)
    comp.wrapper = "" if wrapper == "." else wrapper
    return comp


def _flags_inside(options: ReadOptions, given: Path, root: Path) -> ReadOptions:
    """Folders and tables given relative to DATA as the user sees it, made relative to the folder kit reads (the
    one inside a wrapping folder), where they lie inside it."""
    def moved(value: str) -> str:
        if not value or unsafe_path_reason(value) or (root / value).exists() or not (given / value).exists():
            return value
        real = os.path.realpath(given / value)
        return os.path.relpath(real, os.path.realpath(root)) if under(real, root) else value
    changes = {f: moved(getattr(options, f)) for f in ("train_csv", "test_csv", "sample")}
    changes.update({f: tuple(moved(v) for v in getattr(options, f)) for f in ("train_images", "test_images")})
    return replace(options, **changes)
