"""Reading a data folder by its content: where the classes are, which folders are splits, which lists name a split,
what is junk, and what kit cannot read.

Names are hints; content decides. kit takes an inventory of the folder's image tree once (how many images each
folder holds, directly and below), then scores the readings: a folder whose sub-folders hold the images and are not
named like splits is a class folder (`101_ObjectCategories/<class>/`, `images/Images/<breed>/`,
`imgs/train/c0..c9/`); a folder holding train/ and val/ or test/ of the same classes is a split folder
(`chest_xray/{train,val,test}/<class>/`); text files whose lines name the images split them (Food-101's
`meta/train.txt`, Oxford Pets' `annotations/test.txt`). The decision is data (`Reading`), with its evidence and the
runner-up, so `kit validate --explain` can show why.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from .images import is_image_name
from .paths import inside_data

JUNK_DIRS = {"__MACOSX", "__pycache__", ".ipynb_checkpoints", ".git", "$RECYCLE.BIN", "System Volume Information"}
JUNK_FILES = {".DS_Store", "Thumbs.db", "desktop.ini", "Icon\r"}
MAX_DEPTH = 6
# Folders that hold a split, never a class (seg_train, test1, train-jpg, images, …).
SPLIT_NAME = re.compile(r"(^|[_\-\s.])(train|training|test|testing|val|valid|validation|dev|pred|images?|imgs|"
                        r"trainval|holdout)([_\-\s.\d]|jpg|png|$)", re.IGNORECASE)
ARRAY_FORMATS = {".npy": "NumPy arrays (.npy)", ".npz": "NumPy archives (.npz)", ".pkl": "pickles",
                 ".pickle": "pickles", ".h5": "HDF5 files", ".hdf5": "HDF5 files", ".mat": "MATLAB files",
                 ".parquet": "Parquet tables", ".feather": "Feather tables", ".tfrecord": "TFRecord files",
                 ".tfrecords": "TFRecord files", ".lmdb": "LMDB databases", ".idx": "idx arrays",
                 "-ubyte": "idx arrays (MNIST's format)", "-ubyte.gz": "idx arrays (MNIST's format)",
                 ".dcm": "DICOM images", ".nii": "NIfTI volumes", ".nii.gz": "NIfTI volumes",
                 ".7z": "7-Zip archives", ".rar": "RAR archives"}


def is_junk(name: str) -> bool:
    """macOS' AppleDouble files and folders, system thumbnails and caches: never data."""
    return name in JUNK_DIRS or name in JUNK_FILES or name.startswith("._")


def subfolders(folder: Path) -> list[Path]:
    """A folder's sub-folders that may hold data (junk and hidden ones aside), by name."""
    return sorted(d for d in folder.iterdir() if d.is_dir() and not is_junk(d.name) and not d.name.startswith("."))


def is_split_name(name: str) -> bool:
    return bool(SPLIT_NAME.search(name))


def split_kind(name: str) -> str | None:
    """train, validation or test for a folder named like a split (seg_train, val, test1, valid), else None."""
    low = name.lower()
    if re.search(r"(^|[_\-\s.])(train|training)([_\-\s.\d]|$)", low):
        return "train"
    if re.search(r"(^|[_\-\s.])(val|valid|validation|dev)([_\-\s.\d]|$)", low):
        return "validation"
    if re.search(r"(^|[_\-\s.])(test|testing|pred|holdout)([_\-\s.\d]|$)", low):
        return "test"
    return None


@dataclass
class Folder:
    """One folder of the image tree: its images (directly inside) and everything below."""

    path: Path
    depth: int
    direct: int = 0
    children: list["Folder"] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.direct + sum(c.total for c in self.children)

    def walk(self):
        yield self
        for child in self.children:
            yield from child.walk()


def image_tree(root: Path, folder: Path | None = None, depth: int = 0) -> Folder:
    """The folders under `root` with their image counts (junk and hidden entries skipped; links followed only
    inside the data folder, the reader refuses the others by name)."""
    node = Folder(folder or root, depth)
    try:
        entries = sorted(os.scandir(node.path), key=lambda e: e.name)
    except OSError:
        return node
    for entry in entries:
        if is_junk(entry.name) or entry.name.startswith("."):
            continue
        if entry.is_dir():
            if depth < MAX_DEPTH and (not entry.is_symlink() or inside_data(entry.path, root)):
                node.children.append(image_tree(root, Path(entry.path), depth + 1))
        elif is_image_name(entry.name):
            node.direct += 1
    node.children = [c for c in node.children if c.total]
    return node


def class_children(folder: Folder) -> list[Folder]:
    """Sub-folders that behave like classes: they hold images and are not named like splits."""
    return [c for c in folder.children if not is_split_name(c.path.name)]


@dataclass
class Reading:
    """Where a class-folder competition's parts are, and why."""

    train: Path
    validation: Path | None = None
    test: Path | None = None
    evidence: str = ""
    runner_up: str = ""


def _unwrap(folder: Folder) -> Folder:
    """A folder holding nothing but one folder stands for it (Intel's seg_train/seg_train/)."""
    while not folder.direct and len(folder.children) == 1:
        folder = folder.children[0]
    return folder


def _splits(folder: Folder) -> dict[str, Folder]:
    found: dict[str, Folder] = {}
    for child in folder.children:
        kind = split_kind(child.path.name)
        if kind and kind not in found:
            found[kind] = _unwrap(child)
    return found


def _candidates(tree: Folder) -> list[tuple[tuple, Reading]]:
    """Every reading the tree allows, with its score: images it trains on, then splits honoured, then shallower."""
    found = []
    for folder in tree.walk():
        classes = class_children(folder)
        # sub-folders that each hold class folders of their own are datasets side by side, not classes
        nested = sum(c.total for c in classes if len(class_children(c)) >= 2)
        covered = sum(c.total for c in classes)
        if len(classes) >= 2 and nested <= covered // 2 and covered >= 2 * folder.direct:
            found.append(((0, covered, 0, -folder.depth), Reading(
                folder.path, evidence=f"{len(classes)} sub-folders holding {covered} images, named like classes")))
        splits = _splits(folder)
        train = splits.get("train")
        if train is not None and len(class_children(train)) >= 2:
            other = [s for k, s in splits.items() if k != "train"]
            covered = sum(c.total for c in class_children(train))
            # official splits are the organisers' own reading: they outrank a bare folder of classes
            found.append(((1 if other else 0, covered, 1 + len(other), -folder.depth), Reading(
                train.path, validation=splits["validation"].path if "validation" in splits else None,
                test=splits["test"].path if "test" in splits else None,
                evidence=f"split folders {', '.join(sorted(k for k in splits))} of "
                         f"{len(class_children(train))} classes")))
    return found


class Ambiguous(Exception):
    """Two readings of a folder are equally likely: the message names both and the flag that settles it."""


def find_class_folders(root: Path) -> Reading | None:
    """The best class-folder reading of the data folder, or None when no folder holds two classes of images;
    Ambiguous when two different folders of classes are equally likely."""
    found = sorted(_candidates(image_tree(root)), key=lambda item: item[0], reverse=True)
    if not found:
        return None
    best = found[0][1]
    rest = [(score, r) for score, r in found[1:] if r.train != best.train]
    if rest:
        best.runner_up = f"{relative(rest[0][1].train, root)}/ ({rest[0][1].evidence})"
        tied = rest[0][0] == found[0][0] and not _within(rest[0][1].train, best.train)
        if tied:
            raise Ambiguous(f"{relative(best.train, root)}/ and {relative(rest[0][1].train, root)}/ both hold "
                            f"class folders of {found[0][0][1]} images; which is the competition?|"
                            f"--train-images {relative(best.train, root)}")
    return best


def _within(a: Path, b: Path) -> bool:
    return a == b or b in a.parents or a in b.parents


def image_folders(root: Path) -> list[str]:
    """Every folder of the image tree holding images directly, relative to the data folder, most images first."""
    found = [(-f.direct, relative(f.path, root)) for f in image_tree(root).walk() if f.direct]
    return [rel for _, rel in sorted(found)]


def image_names(root: Path, limit: int = 500_000) -> set[str]:
    """The image files under the data folder as ids could name them: file name and stem, lower case (a quick
    inventory, for judging which column holds the ids)."""
    names: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not is_junk(d) and not d.startswith(".")]
        for name in filenames:
            if is_image_name(name) and not is_junk(name):
                low = name.lower()
                names.update((low, low.rsplit(".", 1)[0]))
        if len(names) > limit:
            break
    return names


LABEL_NAMES = ("label", "labels", "class", "classname", "class_name", "category", "target", "y", "dx", "species",
               "breed", "emotion", "diagnosis", "classid", "class_id", "category_id", "landmark_id", "variety", "type",
               "id")  # by priority; a column named id that is not the image's is Humpback's whale id


def id_column_by_content(table, names: set[str]) -> str | None:
    """The column whose values name image files (file name or stem, any case), judged on its first 200 values;
    None when no column names any."""
    best, best_score = None, (0, False, False)
    for column in table.columns:
        values = [str(v).replace("\\", "/").rsplit("/", 1)[-1].lower() for v in table[column].head(200)]
        hits = sum(v in names for v in values if v)
        # ties (an index 0..n beside file names 0.jpg..n.jpg): values written as file names, then the column's name
        score = (hits, any(is_image_name(v) for v in values), bool(ID_HINT.search(str(column))))
        if hits and score > best_score:
            best, best_score = column, score
    return best


ID_HINT = re.compile(r"file|image|img|name|path|id$", re.IGNORECASE)


def one_hot_columns(table, exclude: set[str]) -> list[str]:
    """Columns that together one-hot encode the label: each 0/1 (or 0.0/1.0), exactly one 1 per row; [] if none."""
    ones = {"1", "1.0", "1.00"}
    binary = [c for c in table.columns if c not in exclude and len(table) and
              table[c].str.strip().isin(ones | {"0", "0.0", "0.00"}).all()]
    if len(binary) < 2:
        return []
    per_row = sum(table[c].str.strip().isin(ones).astype(int) for c in binary)
    return binary if bool((per_row == 1).all()) else []


def relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix() or "."
    except ValueError:
        return str(path)


def unwrapped_root(root: Path) -> Path:
    """A data folder holding nothing but one folder (and junk) stands for that folder (a download unzipped into a
    folder of its own name)."""
    while True:
        entries = [e for e in os.scandir(root) if not is_junk(e.name) and not e.name.startswith(".")
                   and (e.is_dir() or _is_data_file(e.name))]
        if len(entries) != 1 or not entries[0].is_dir() or entries[0].is_symlink() or split_kind(entries[0].name):
            return root
        root = Path(entries[0].path)


SPLIT_LIST = re.compile(r"^(train|trainval|training|val|valid|validation|test|testing)([_\-.]?(list|images|split|"
                        r"files|set|\d+))?\.(txt|csv|lst|list)$", re.IGNORECASE)
DOCUMENTS = (".md", ".rst", ".pdf", ".html", ".htm", ".doc", ".docx", ".ipynb", ".py", ".r")


def _is_data_file(name: str) -> bool:
    """Whether a file may be data (a README, a licence or a notebook beside a wrapping folder is not)."""
    low = name.lower()
    if SPLIT_LIST.match(name):  # TrainImages.txt beside Images/: the split, so data
        return True
    return not (low.endswith(DOCUMENTS) or low.startswith(("license", "licence", "readme", "citation")))


def unreadable_formats(root: Path) -> list[str]:
    """Formats of data files kit does not read (arrays, pickles, DICOM, …), found in the folder's top levels."""
    found = set()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not is_junk(d) and not d.startswith(".")]
        if Path(dirpath) != root and len(Path(dirpath).relative_to(root).parts) >= 3:
            dirnames.clear()
        for name in filenames:
            low = name.lower()
            for suffix, what in ARRAY_FORMATS.items():
                if low.endswith(suffix):
                    found.add(what)
    return sorted(found)


# ------------------------------------------------------------------------------------------ split lists




def split_lists(root: Path) -> dict[str, tuple[Path, list[str]]]:
    """Files that name a split's images, by split, up to three folders down: lists per split (meta/train.txt,
    annotations/test.txt, TrainImages.txt), or CUB-200's numbered images.txt with train_test_split.txt."""
    found: dict[str, tuple[Path, list[str]]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        depth = len(Path(dirpath).relative_to(root).parts)
        dirnames[:] = sorted(d for d in dirnames if not is_junk(d) and not d.startswith(".")) if depth < 3 else []
        if "images.txt" in filenames and "train_test_split.txt" in filenames:
            for kind, stems in _numbered_split(Path(dirpath)).items():
                found.setdefault(kind, (Path(dirpath) / "train_test_split.txt", stems))
        for name in sorted(filenames):
            if SPLIT_LIST.match(name) and not name.lower().endswith(".csv"):
                stem = Path(name).stem.lower()
                kind = "test" if stem.startswith("test") else "validation" if stem.startswith(("val", "valid")) \
                    else "train"  # TrainImages.txt, trainval.txt, train_list.txt
                if kind not in found:
                    found[kind] = (Path(dirpath) / name, listed_stems(Path(dirpath) / name))
    return found


def _numbered_split(folder: Path) -> dict[str, list[str]]:
    """CUB-200-2011: images.txt (`id path`) and train_test_split.txt (`id 1` for training, `id 0` for test)."""
    paths = dict(line.split(None, 1) for line in _lines(folder / "images.txt") if len(line.split()) >= 2)
    sides: dict[str, list[str]] = {"train": [], "test": []}
    for line in _lines(folder / "train_test_split.txt"):
        parts = line.split()
        if len(parts) == 2 and parts[0] in paths:
            path = paths[parts[0]].strip()
            sides["train" if parts[1] == "1" else "test"].append(path.rsplit(".", 1)[0] if is_image_name(path)
                                                                 else path)
    return {kind: stems for kind, stems in sides.items() if stems}


def _lines(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]


def listed_stems(path: Path) -> list[str]:
    """The images a split list names, as written: the first field of each line (`apple_pie/1005649`,
    `Abyssinian_100 1 1 1`), without an image extension."""
    stems = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        first = re.split(r"[\s,]+", line)[0]
        if is_image_name(first):
            first = first.rsplit(".", 1)[0]
        stems.append(first)
    return stems
