"""Validation: everything training and submission rely on, checked before any training, every bad row named —
and the same checks again when an image breaks while kit reads it. kit.data reads the folder; this module judges
it."""

from __future__ import annotations

import hashlib
import math
import unicodedata
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd
from .progress import tqdm  # a widget in notebooks, a text bar elsewhere

from .data import MIN_IMAGES_PER_CLASS, Competition, Problem, relative_name, split_tags
from .errors import ImageError, few, image_error_in, stage
from .images import (
    FORMAT_OF_EXTENSION,
    PROCESSES_FROM,
    ImageInfo,
    check_image,
    checked_images,
    in_order,
    process_pool,
    usable_cores,
)


@dataclass
class ValidationReport:
    """All problems found in a data folder, the fallbacks applied, and a short summary of what it holds."""

    problems: list[Problem]
    class_counts: dict[str, int]
    num_test: int
    sizes: Counter
    modes: Counter
    fallbacks: Counter = field(default_factory=Counter)
    bad_paths: set[str] = field(default_factory=set)
    fingerprint: str = ""  # hash of every table and every image's name and content: "the same data"
    signatures: dict[str, bytes] = field(default_factory=dict)  # image path → kit.hashes signature

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    @property
    def channels(self) -> int:
        """1 when every image is grayscale (kept 1-channel), else 3."""
        gray = {"L", "1", "I", "I;16", "I;16B", "I;16L", "F", "LA"}
        return 1 if self.modes and all(m in gray for m in self.modes) else 3

    @property
    def median_size(self) -> int:
        if not self.sizes:
            return 0
        sides = sorted(s for (w, h), n in self.sizes.items() for s in [min(w, h)] * n)
        return sides[len(sides) // 2]

    def summary(self) -> str:
        lines = [f"train: {sum(self.class_counts.values())} images in {len(self.class_counts)} classes; "
                 f"test: {self.num_test} images"]
        ordered = sorted(self.class_counts.items())
        if len(ordered) > 30:  # thousands of classes: the largest few and the count
            ordered = sorted(ordered, key=lambda kv: -kv[1])[:10]
        counts = ", ".join(f"{k}: {v}" for k, v in ordered)
        more = f" … ({len(self.class_counts)} classes; the 10 largest shown)" if len(self.class_counts) > 30 else ""
        lines.append(f"per class: {counts}{more}")
        common = ", ".join(f"{w}x{h} ({n})" for (w, h), n in self.sizes.most_common(3))
        lines.append(f"image sizes: {common}{' …' if len(self.sizes) > 3 else ''}; "
                     f"modes: {', '.join(f'{m} ({n})' for m, n in self.modes.most_common())}")
        for what, n in sorted(self.fallbacks.items()):
            lines.append(f"fallback: {what}: {n} image(s)")
        return "\n".join(lines)

    def summary_line(self) -> str:
        """One line: what was checked and what was found."""
        return (f"Validated: train {sum(self.class_counts.values())} images in {len(self.class_counts)} classes, test "
                f"{self.num_test}; {len(self.errors)} error(s), {len(self.warnings)} warning(s)")

    def seen(self, shown: int = 10) -> dict:
        """What validation saw, for a run folder (validation.json) and its report: the summary, every warning
        (and skipped error) as one line each, their count."""
        return {"summary": self.summary_line(), "details": self.summary(),
                "warnings": [str(p) for p in self.problems], "count": len(self.problems), "shown": shown}

    def to_dict(self, first: int = 5) -> dict:
        """Machine-readable form for `kit validate --json`: counts per case and the first rows of each."""
        cases: dict[str, dict] = {}
        for p in self.problems:
            case = cases.setdefault(p.code, {"severity": p.severity, "count": 0, "first": []})
            case["count"] += 1
            if len(case["first"]) < first:
                case["first"].append({"file": p.file, "row": p.row, "message": p.message})
        return {"errors": len(self.errors), "warnings": len(self.warnings), "cases": cases,
                "fallbacks": dict(self.fallbacks), "class_counts": self.class_counts, "num_test": self.num_test,
                "sizes": {f"{w}x{h}": n for (w, h), n in self.sizes.most_common(20)}, "modes": dict(self.modes)}


def _fallbacks_of(info: ImageInfo, path: str) -> list[str]:
    """What the loader will do to this image beyond a plain decode (reported, never silent)."""
    done = []
    if info.transparent:
        done.append("transparency composited on white")
    if info.frames > 1:
        done.append("animation: first frame used")
    if info.rotated:
        done.append("EXIF orientation applied")
    if info.mode.startswith("I;16") or info.mode in ("I", "F"):
        done.append("16-bit or float pixels scaled to 8 bits")
    if info.mode == "CMYK":
        done.append("CMYK converted to RGB")
    return done


SKIPPABLE = {"missing_image", "unreadable_image"}  # what --on-bad-image skip trains without


def without_bad_training_images(comp: Competition, report: "ValidationReport"
                                ) -> tuple[Competition, "ValidationReport", list[Problem]]:
    """--on-bad-image skip: the competition without its missing or unreadable training images, the report without
    their errors, and the problems that were skipped (for RUN/skipped.csv)."""
    skipped = sorted((p for p in report.errors if p.code in SKIPPABLE and p.file == comp.train_file),
                     key=lambda p: p.row or 0)
    bad_rows = {p.row for p in skipped}
    train = comp.train[~comp.train["row"].isin(bad_rows)].reset_index(drop=True)
    return (replace(comp, train=train), replace(report, problems=[p for p in report.problems if p not in skipped]),
            skipped)


def first_broken_image(paths) -> ImageError | None:
    """The first of `paths` that no longer reads as an image (gone, changed or damaged since validation)."""
    for path in paths:
        try:
            check_image(str(path))
        except ImageError as e:
            return ImageError(str(e), path=str(path))
        except OSError as e:
            return ImageError(f"{path}: {e.strerror or e}", path=str(path))
    return None


@contextmanager
def images_named_on_failure(paths):
    """A TensorFlow error while reading images becomes one line naming the image at fault: an image that
    disappears or breaks after validation stops the run with its name, never a traceback."""
    try:
        yield
    except Exception as e:
        if not type(e).__module__.startswith("tensorflow"):
            raise
        paths = [str(p) for p in paths]
        culprit = image_error_in(e) or first_broken_image(paths)
        if culprit is None:
            raise
        path = culprit.path or next((p for p in paths if str(culprit).startswith(p + ": ")), None)
        raise ImageError(f"{culprit} (it changed after validation, while kit was reading it)", path=path) from None


def _check_images(table: pd.DataFrame, file_name: str, root: Path, problems: list[Problem], stats: dict,
                  labels: bool, progress: bool = False) -> dict[str, list]:
    """Decode every image in parallel; record errors, fallbacks, sizes, and content hashes for duplicate checks."""
    rows = {p: (r, i, lab) for p, r, i, lab in zip(table["path"], table["row"], table["id"],
                                                    table["label"] if labels else [None] * len(table))}
    paths = [p for p in table["path"] if p]
    hashes: dict[str, list] = {}
    checked = tqdm(_checked(paths), total=len(paths), desc=f"Checking {file_name}", unit="img", leave=False,
                   disable=not progress or len(paths) < 1000 or None)
    for path, info, digest, damage, error in checked:
        row, image_id, label = rows[path]
        rel = relative_name(Path(path), root)
        if damage:  # damaged, but Pillow (which reads this file) decodes its pixels
            problems.append(Problem("warning", "damaged_image", file_name,
                                    f"image '{rel}' is damaged ({damage}); Pillow, which reads this file, still "
                                    "decodes it, but check the file", _row(row)))
        elif error is not None:
            stats["bad"].add(path)
            reason = error.split(": ", 1)[-1]
            problems.append(Problem("error", "unreadable_image", file_name, f"image '{rel}' {reason}", _row(row)))
            continue
        stats["sizes"][(info.width, info.height)] += 1
        stats["modes"][info.mode] += 1
        for what in _fallbacks_of(info, path):
            stats["fallbacks"][what] += 1
        expected = FORMAT_OF_EXTENSION.get(Path(path).suffix.lower())
        if expected and info.format and info.format != expected:
            stats["fallbacks"]["decoded by content, not by extension"] += 1
            problems.append(Problem("warning", "extension_mismatch", file_name,
                                    f"image '{rel}' holds {info.format} data; decoded by its content", _row(row)))
        hashes.setdefault(digest, []).append((file_name, _row(row), image_id, label, rel))
        stats["signatures"][path] = info.signature
        stats.setdefault("digests", []).append(f"{rel}\t{digest}\t{image_id}\t{label}")
    return hashes


def _checked(paths: list[str]):
    """kit.images.checked_images over every path, in order, on every core: many files in one process per core
    (Pillow holds the GIL for much of a small image's work, and only a description comes back), a few on
    threads."""
    pool, processes = process_pool() if len(paths) >= PROCESSES_FROM else (None, 1)
    chunks = [paths[i:i + 64] for i in range(0, len(paths), 64)]
    if pool is None:
        with ThreadPoolExecutor(max_workers=max(2, usable_cores())) as threads:
            for chunk in threads.map(checked_images, chunks):
                yield from chunk
        return
    for checked in in_order(pool, processes, checked_images, chunks):
        yield from checked


def _check_duplicate_images(train_hashes: dict, test_hashes: dict, problems: list[Problem]) -> None:
    for digest, items in train_hashes.items():
        if len(items) > 1:
            labels = sorted({it[3] for it in items})
            where = ", ".join(f"'{it[4]}'" for it in items[:4]) + (", …" if len(items) > 4 else "")
            file_name, row = items[1][0], items[1][1]
            if len(labels) > 1:
                problems.append(Problem("warning", "duplicate_image_conflict", file_name,
                                        f"identical images with different labels ({', '.join(labels)}): {where}", row))
            else:
                problems.append(Problem("warning", "duplicate_image", file_name,
                                        f"{len(items)} identical images (label {labels[0]}): {where}", row))
        if digest in test_hashes:
            t = test_hashes[digest][0]
            problems.append(Problem("warning", "train_test_duplicate", t[0],
                                    f"test image '{t[4]}' is identical to training image '{items[0][4]}' (label "
                                    f"{items[0][3]})", t[1]))


INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"))  # zero-width, BOM, soft hyphen


def _label_key(label: str) -> str:
    """What two labels have in common when they differ only in case, number format or invisible characters."""
    key = unicodedata.normalize("NFKC", label.translate(INVISIBLE)).replace("\u00a0", " ").strip().casefold()
    return format(float(key), "g") if _is_number(key) else key


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def _shown(label: str) -> str:
    """A label in quotes with its invisible characters spelled out (\\u200b, \\xa0)."""
    return "'" + "".join(c if c.isprintable() and c not in "\u00a0\u00ad" else ascii(c)[1:-1] for c in label) + "'"


def _check_labels(train: pd.DataFrame, raw_labels: pd.Series | None, name: str, problems: list[Problem]) -> None:
    """Labels that are probably mistakes but cannot be fixed safely: report them, never merge them."""
    counts = Counter(lab for lab in train["label"] if lab)
    if raw_labels is not None:
        padded = int((raw_labels != train["label"]).sum())
        if padded:
            first = _row(train["row"][raw_labels != train["label"]].iloc[0])
            problems.append(Problem("warning", "label_whitespace", name, f"{padded} label(s) had spaces around them; "
                                    "stripped (first here)", first))
    by_folded: dict[str, list[str]] = {}
    for lab in counts:
        by_folded.setdefault(_label_key(lab), []).append(lab)
    for variants in by_folded.values():
        if len(variants) > 1:
            variants = sorted(variants)
            shown = ", ".join(_shown(v) for v in variants)
            problems.append(Problem("warning", "label_variants", name, f"labels {shown} "
                                    "differ only in case, number format or invisible characters; they are kept as "
                                    f"separate classes — fix {name} if they are one class"))
    formulas = [lab for lab in counts if lab[:1] in "=+-@" and not _is_number(lab)]
    if formulas:
        first = _row(train.loc[train["label"] == formulas[0], "row"].iloc[0])
        problems.append(Problem("warning", "formula_label", name, f"{len(formulas)} label(s) start with =, +, - or @ "
                                f"(first {_shown(formulas[0])}); spreadsheets run such cells as formulas, so check "
                                "the table was not saved from one", first))
    if "NA" in counts or "nan" in counts or "NaN" in counts or "null" in counts:
        odd = [lab for lab in ("NA", "nan", "NaN", "null") if lab in counts]
        problems.append(Problem("warning", "na_label", name, f"label {odd[0]!r} ({counts[odd[0]]} rows) is kept as a "
                                "class name; if it means 'missing', remove those rows"))


@stage("validating the data")
def validate(comp: Competition, check_images: bool = True, check_train: bool = True,
             progress: bool = False) -> ValidationReport:
    """Check everything training and submission rely on; name every bad row."""
    problems = [p for p in comp.problems if check_train or p.file in (comp.test_file, comp.sample_file)]
    train, name = comp.train, comp.train_file
    sep = comp.tag_separator
    counts = Counter(t for lab in train["label"] if lab for t in (split_tags(lab, sep) if sep else [lab]))
    if check_train:
        for row in train.loc[train["label"] == "", "row"]:
            problems.append(Problem("error", "empty_label", name, "empty label; every training row needs a class",
                                    _row(row)))
        _check_duplicates(train, name, problems, labels=True)
        _check_labels(train, comp.raw_labels, name, problems)
        singles = sorted(label for label, n in counts.items() if n < MIN_IMAGES_PER_CLASS)
        if singles:  # one line for all of them: whale-style sets have thousands
            holds = train["label"].map(lambda lab: singles[0] in (split_tags(lab, sep) if sep else [lab]))
            row = _row(train.loc[holds, "row"].iloc[0])
            problems.append(Problem("warning", "single_image_class", name, f"{len(singles)} "
                                    f"{'tag(s) are on' if sep else 'class(es) have'} a single image ({few(singles)}); "
                                    "they are kept in training only, never in validation", row))
        if len(counts) < 2:
            hint = "; if a table gives the classes, pass --train-csv FILE" if comp.layout == "folders" else ""
            problems.append(Problem("error", "one_class", name, f"found {len(counts)} class(es) "
                                    f"({few(sorted(counts))}); need at least 2{hint}"))
    if comp.test is not None:
        _check_duplicates(comp.test, comp.test_file, problems, labels=False)
    _check_sample(comp, problems)

    stats = {"sizes": Counter(), "modes": Counter(), "fallbacks": Counter(), "bad": set(), "signatures": {}}
    if check_images:
        train_hashes: dict = {}
        if check_train:
            train_hashes = _check_images(train, name, comp.root, problems, stats, labels=True, progress=progress)
            if comp.validation is not None:
                for digest, items in _check_images(comp.validation, "validation/", comp.root, problems, stats,
                                                   labels=True, progress=progress).items():
                    train_hashes.setdefault(digest, []).extend(items)
        test_stats = {"sizes": Counter(), "modes": Counter(), "fallbacks": stats["fallbacks"], "bad": stats["bad"],
                      "signatures": stats["signatures"]}
        test_hashes = _check_images(comp.test, comp.test_file, comp.root, problems, test_stats, labels=False,
                                    progress=progress) \
            if comp.test is not None else {}
        _check_duplicate_images(train_hashes, test_hashes, problems)
        if comp.unlisted_images:
            problems.append(Problem("warning", "unlisted_images", comp.unlisted_images[0],
                                    f"{len(comp.unlisted_images)} image file(s) in the image folders are in no table "
                                    "(ignored)"))
    return ValidationReport(problems=problems, class_counts=dict(counts),
                            num_test=0 if comp.test is None else len(comp.test), sizes=stats["sizes"],
                            modes=stats["modes"], fallbacks=stats["fallbacks"], bad_paths=stats["bad"],
                            signatures=stats["signatures"],
                            fingerprint=_fingerprint(comp, stats.get("digests", []) + test_stats.get("digests", []))
                            if check_images else "")


def _fingerprint(comp: Competition, image_lines: list[str]) -> str:
    digest = hashlib.blake2b(digest_size=16)
    for name in (comp.train_file, comp.test_file, comp.sample_file):
        path = comp.root / name if name else None
        if path is not None and path.is_file():
            digest.update(name.encode() + b"\0" + path.read_bytes())
    for line in sorted(image_lines):
        digest.update(line.encode() + b"\n")
    return digest.hexdigest()


def _row(value):
    return None if value is None or pd.isna(value) else int(value)


def _check_duplicates(table: pd.DataFrame, file_name: str, problems: list[Problem], labels: bool) -> None:
    dup = table[table["id"].duplicated(keep=False)]
    for image_id, group in dup.groupby("id", sort=False):
        rows = [_row(r) for r in group["row"]]
        where = ", ".join(str(r) for r in rows if r is not None)
        if labels and group["label"].nunique() == 1:
            continue  # identical repeated rows were merged when the table was read (and reported there)
        conflict = f" with labels {', '.join(sorted(set(group['label'])))}" if labels else ""
        problems.append(Problem("error", "duplicate_id", file_name,
                                f"id '{image_id}' appears {len(group)} times{conflict} (rows {where}); ids must be "
                                "unique", rows[1] if len(rows) > 1 else None))


def _check_sample(comp: Competition, problems: list[Problem]) -> None:
    """The sample's ids are the test set's, and its columns are a submission kit can write (checked before any
    training, so a run never fails after it)."""
    if comp.sample is not None and len(comp.sample.columns) > 2 and \
            set(comp.sample.columns[1:]) != set(comp.class_names):
        extra = sorted(set(comp.sample.columns[1:]) - set(comp.class_names))
        missing = sorted(set(comp.class_names) - set(comp.sample.columns[1:]))
        boxes = {c.lower() for c in comp.sample.columns} & {"xmin", "ymin", "xmax", "ymax", "bbox", "x_min", "y_min"}
        if boxes:  # Zindi's Passion Fruit: class, confidence, ymin, xmin, ymax, xmax
            problems.append(Problem("error", "sample_columns", comp.sample_file,
                                    f"columns {', '.join(sorted(boxes))} are bounding boxes: this is an object "
                                    "detection competition, and kit classifies whole images"))
            return
        problems.append(Problem("error", "sample_columns", comp.sample_file,
                                f"columns after the id are neither one label nor one probability per training "
                                f"class: {len(extra)} not a class ({few(extra)}), {len(missing)} class(es) without a "
                                f"column ({few(missing)}); kit could not write this submission"))
    if comp.sample is None or comp.test is None or comp.test_file == comp.sample_file:
        return
    sample_ids = set(comp.sample[comp.sample.columns[0]])
    test_ids = set(comp.test["id"])
    if sample_ids != test_ids:
        only_sample = sorted(sample_ids - test_ids)
        only_test = sorted(test_ids - sample_ids)
        problems.append(Problem("error", "sample_mismatch", comp.sample_file,
                                f"ids differ from {comp.test_file}: {len(only_sample)} only in the sample "
                                f"({few(only_sample)}), {len(only_test)} only in the test set ({few(only_test)})"))
