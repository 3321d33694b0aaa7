"""`kit doctor`: what a data folder hides that spoils validation and the leaderboard — the same picture in train
and test, near-duplicates with conflicting labels, mislabelled training images, and test images unlike training.

It works from the signatures validation makes while it decodes every image (kit.hashes), so the images are decoded
once: near-duplicates by perceptual hash plus a thumbnail check; label issues by confident learning on out-of-sample
probabilities (a k-fold run's oof.csv, or a quick k-fold logistic regression on small pixels); shift by adversarial
validation on cheap image statistics. Results: a dict (the --json file), doctor.html, and a one-line summary kept
in kit's state folder per data folder, so `kit validate` and a run's report can repeat it.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .data import Competition
from .errors import KitError, RunError
from .hashes import (CROPPED, STAT_NAMES, VERIFY_RESIDUAL, copy_residual, crop_residual, crop_view, dihedral,
                     gray_thumbnails, groups_of, near_duplicates, possible_copies, unpack)
from .validation import ValidationReport

VERIFY_DECODE = 256  # pixels: images with a longer side than this are decoded at this size for the second look
CROPPED_ASPECT = 0.02  # shapes this different (log of the aspect ratios' ratio): a crop, not a resize
QUICK_FOLDS = 5
QUICK_MAX_TRAIN = 30_000  # images the quick label model trains on per fold, at most (time, not accuracy, bound)
SHIFT_MAX_ROWS = 20_000  # images per side the shift classifier sees, at most
SHIFT_MEANINGFUL_AUC = 0.60  # below this, train and test are told apart little better than by chance
# how the test image of a train/test pair was turned to match (kit.hashes.dihedral's t), for the report
TRANSFORM_NAMES = ("", "rotated 90", "rotated 180", "rotated 270", "mirrored", "mirrored, rotated 90",
                   "mirrored, rotated 180", "mirrored, rotated 270", "cropped")


@dataclass
class Diagnosis:
    """What the doctor found, ready for the --json file, doctor.html and the summary line."""

    train_test_duplicates: list[dict] = field(default_factory=list)
    train_duplicates: list[dict] = field(default_factory=list)
    label_issues: list[dict] = field(default_factory=list)
    shift: dict | None = None
    notes: list[str] = field(default_factory=list)  # how each part was found (model, folds, thresholds)
    seconds: dict = field(default_factory=dict)
    paths: dict = field(default_factory=dict)  # id → image path, train and test (for doctor.html)

    def summary(self) -> str:
        """One line: the counts, and the shift's AUC."""
        conflicting = sum(1 for g in self.train_duplicates if g["conflicting"])
        shift = "no test set" if self.shift is None else \
            f"shift AUC {self.shift['auc']:.2f}" + (f" (by {', '.join(self.shift['by'][:2])})"
                                                     if self.shift["auc"] >= SHIFT_MEANINGFUL_AUC else " (none)")
        return (f"{len(self.train_test_duplicates)} train/test near-duplicate(s), {len(self.train_duplicates)} "
                f"near-duplicate group(s) in train ({conflicting} with conflicting labels), "
                f"{len(self.label_issues)} likely label error(s), {shift}")

    def to_dict(self) -> dict:
        return {"summary": self.summary(), "train_test_duplicates": self.train_test_duplicates,
                "train_duplicates": self.train_duplicates, "label_issues": self.label_issues, "shift": self.shift,
                "notes": self.notes, "seconds": self.seconds}


def signatures_of(table: pd.DataFrame, report: ValidationReport) -> tuple[pd.DataFrame, list[bytes]]:
    """The rows of a table whose image validation decoded, and their signatures."""
    known = table["path"].map(lambda p: p in report.signatures and report.signatures[p] is not None)
    rows = table[known].reset_index(drop=True)
    return rows, [report.signatures[p] for p in rows["path"]]


def diagnose(comp: Competition, report: ValidationReport, run_dir=None, time_budget: float | None = None,
             log=print, started: float | None = None) -> Diagnosis:
    """Near-duplicates, label issues and shift of a validated competition (see the module's docstring); a time
    budget counts from `started` (default now)."""
    started = started or time.time()
    found = Diagnosis()
    train, train_sigs = signatures_of(comp.train, report)
    thumbs, colors, stats = unpack(train_sigs)
    found.paths = dict(zip(train["id"], train["path"]))
    clock = time.time()
    found.train_duplicates = train_duplicate_groups(train, thumbs)
    found.seconds["train_duplicates"] = round(time.time() - clock, 1)
    test = None
    if comp.test is not None:
        test, test_sigs = signatures_of(comp.test, report)
        test_thumbs, _, test_stats = unpack(test_sigs)
        found.paths.update(zip(test["id"], test["path"]))
        clock = time.time()
        found.train_test_duplicates = train_test_pairs(train, thumbs, test, test_thumbs, stats[:, :2],
                                                       test_stats[:, :2])
        found.seconds["train_test_duplicates"] = round(time.time() - clock, 1)
        clock = time.time()
        found.shift = adversarial_validation(stats, test_stats, list(test["id"]))
        found.seconds["shift"] = round(time.time() - clock, 1)
    clock = time.time()
    log("Doctor: looking for label issues" + (f" with {run_dir}'s out-of-fold predictions" if run_dir else
                                              f" with a quick {QUICK_FOLDS}-fold model"))
    if comp.tag_separator:  # an image's set of tags is not one class: confident learning does not apply as is
        probs, classes, ids, how = np.zeros((0, 0)), [], [], "label issues: not looked for in tags (multi-label)"
    else:
        probs, classes, ids, how = label_probabilities(train, thumbs, colors, comp.class_names, run_dir, time_budget,
                                                       started)
    found.notes.append(how)
    label_of = dict(zip(comp.train["id"], comp.train["label"]))
    known = [k for k, i in enumerate(ids) if i in label_of]  # a run's ids no longer in the table are left out
    probs, ids = probs[known], [ids[k] for k in known]
    labels = np.array([label_of[i] for i in ids], dtype=object)
    found.label_issues = label_issues(probs, classes, ids, labels)
    found.seconds["label_issues"] = round(time.time() - clock, 1)
    found.seconds["total"] = round(time.time() - started, 1)
    return found


def _one_thread():
    """scikit-learn's small models on one thread: on a busy machine OpenMP's threads wait for each other (a 3,000-row
    gradient boosting took 47 s on 2 shared cores instead of 1 s)."""
    import sklearn.ensemble  # noqa: F401  (threadpoolctl limits only the libraries already loaded)
    import sklearn.linear_model  # noqa: F401
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1)


def train_duplicate_groups(train: pd.DataFrame, thumbs: np.ndarray) -> list[dict]:
    """Groups of near-identical training images, those with conflicting labels first, then the largest."""
    i, j, distance = near_duplicates(thumbs)
    if not len(i):
        return []
    group = groups_of(len(train), i, j)
    worst = pd.Series(distance).groupby(group[i]).max()
    groups = []
    for members in pd.Series(np.arange(len(train))).groupby(group).groups.values():
        if len(members) < 2:
            continue
        rows = train.iloc[list(members)]
        labels = list(rows["label"])
        groups.append({"ids": list(rows["id"]), "labels": labels, "distance": round(float(worst[group[members[0]]]), 4),
                       "conflicting": len(set(labels)) > 1})
    return sorted(groups, key=lambda g: (not g["conflicting"], -len(g["ids"]), g["distance"]))


def duplicate_group_column(train: pd.DataFrame, report: ValidationReport) -> np.ndarray | None:
    """A group number per training row (near-duplicates share one), or None when there are no near-duplicates or no
    signatures: what kit's split and k-fold keep together."""
    rows, sigs = signatures_of(train, report)
    if len(rows) != len(train) or len(train) < 2:
        return None
    thumbs = gray_thumbnails(sigs)  # the statistics unpack() also computes are for the doctor's shift, not here
    i, j, _ = near_duplicates(thumbs)
    return groups_of(len(train), i, j) if len(i) else None


def train_test_pairs(train: pd.DataFrame, thumbs: np.ndarray, test: pd.DataFrame, test_thumbs: np.ndarray,
                     train_sizes: np.ndarray | None = None, test_sizes: np.ndarray | None = None) -> list[dict]:
    """Every (test, train) near-duplicate pair, the closest first: a leak, and a hint of the test labels. The
    thumbnails cast a wide net; each pair that does not clearly stand out is verified on the two images themselves
    (verified_copies). The images' sizes (width, height), when known, let big photos be decoded smaller, and leave
    a pair of different shapes (a crop, which the second look cannot align) to the thumbnails' own test."""
    i, j, distance, clear, strict, transform = possible_copies(test_thumbs, thumbs)
    keep = clear.copy()
    if train_sizes is not None and test_sizes is not None:
        # turned a quarter: the test image's width is the train image's height
        quarter = (transform < CROPPED) & (transform % 2 == 1)
        test_w, test_h = np.where(quarter, test_sizes[i, 1], test_sizes[i, 0]), \
            np.where(quarter, test_sizes[i, 0], test_sizes[i, 1])
        aspect = np.log(np.maximum(test_w, 1) / np.maximum(test_h, 1)
                        * np.maximum(train_sizes[j, 1], 1) / np.maximum(train_sizes[j, 0], 1))
        keep |= strict & (np.abs(aspect) > CROPPED_ASPECT)
    look = ~keep
    keep[look] = verified_copies(list(test["path"].iloc[i[look]]), list(train["path"].iloc[j[look]]),
                                 None if test_sizes is None else test_sizes[i[look]].max(axis=1),
                                 None if train_sizes is None else train_sizes[j[look]].max(axis=1), transform[look])
    i, j, distance, transform = i[keep], j[keep], distance[keep], transform[keep]
    order = np.lexsort((distance, j, i))  # a pair kept both as it is and as a crop: once, the closer
    once = order[np.r_[True, (np.diff(i[order]) != 0) | (np.diff(j[order]) != 0)][:len(order)]]
    i, j, distance, transform = i[once], j[once], distance[once], transform[once]
    order = np.argsort(distance, kind="stable")
    return [{"train": str(train["id"].iat[j[k]]), "test": str(test["id"].iat[i[k]]),
             "train_label": str(train["label"].iat[j[k]]), "distance": round(float(distance[k]), 4),
             **({"transform": TRANSFORM_NAMES[min(transform[k], CROPPED)]} if transform[k] else {})} for k in order]


def verified_copies(paths_a: list[str], paths_b: list[str], sides_a=None, sides_b=None, transforms=None
                    ) -> np.ndarray:
    """Which pairs of image files are copies of one picture (kit.hashes.copy_residual at most VERIFY_RESIDUAL),
    decoded again by kit's one loader (big photos at VERIFY_DECODE): the pairs where the thumbnails cannot tell a
    copy from a look-alike (Fashion-MNIST's near-twins between its train and test sets; 2,300 pairs, 3 s, at 70,000
    images). transforms: per pair, the dihedral transform (kit.hashes.dihedral) of image a that matches b."""
    from .images import read_image

    def gray(path: str, side) -> np.ndarray:
        # a big photo is decoded square at VERIFY_DECODE (JPEG's DCT scaling makes that fast): the comparison
        # happens at 64 px anyway, and squeezing to a square then resizing to the other image's shape is the same
        # resize as going there directly
        size = VERIFY_DECODE if side is not None and side > VERIFY_DECODE else None
        return read_image(path, size, channels=1)[:, :, 0]

    sides_a = [None] * len(paths_a) if sides_a is None else sides_a
    sides_b = [None] * len(paths_b) if sides_b is None else sides_b
    keep = np.zeros(len(paths_a), dtype=bool)
    for k, (a, b) in enumerate(zip(paths_a, paths_b)):
        try:
            t = 0 if transforms is None else int(transforms[k])
            if t >= CROPPED:  # one image may be a crop of the other: the second look searches the box
                query_is_crop, zoom_x, zoom_y = crop_view(t)
                first, second = gray(a, sides_a[k]), gray(b, sides_b[k])
                big, small = (second, first) if query_is_crop else (first, second)
                keep[k] = crop_residual(big, small, zoom_x, zoom_y) <= VERIFY_RESIDUAL
            else:
                keep[k] = copy_residual(dihedral(gray(a, sides_a[k]), t), gray(b, sides_b[k])) <= VERIFY_RESIDUAL
        except KitError:  # unreadable since validation: the thumbnails' verdict stands
            keep[k] = True
    return keep


def pixel_features(thumbs: np.ndarray, colors: np.ndarray) -> np.ndarray:
    """Small pixels for the quick label model: the gray thumbnail at 16x16 and the colour one at 8x8, in 0..1."""
    gray = thumbs.reshape(len(thumbs), 16, 2, 16, 2).mean(axis=(2, 4)).reshape(len(thumbs), -1)
    color = colors.reshape(len(colors), -1).astype(np.float32)
    return np.hstack([gray, color]).astype(np.float32) / 255.0


def label_probabilities(train: pd.DataFrame, thumbs, colors, class_names: list[str], run_dir, time_budget,
                        started: float) -> tuple[np.ndarray, list[str], list[str], str]:
    """(out-of-sample probabilities, their classes, the ids they are for, how they were made)."""
    if run_dir is not None:
        return run_probabilities(Path(run_dir))
    labels = train["label"].to_numpy()
    counts = pd.Series(labels).value_counts()
    usable = np.isin(labels, counts.index[counts >= 2])  # a class needs an image in two folds to be predicted
    folds = int(min(QUICK_FOLDS, counts[counts >= 2].min())) if usable.any() else 0
    if folds < 2 or len(set(labels[usable])) < 2:
        return np.zeros((0, 0)), [], [], "label issues: too few images per class for out-of-sample predictions"
    features = pixel_features(thumbs[usable], colors[usable])
    with _one_thread():
        probs, classes = quick_kfold(features, labels[usable], folds, time_budget, started)
    how = (f"label issues: confident learning on {folds}-fold out-of-sample probabilities of a logistic regression "
           "on 16x16 gray + 8x8 colour pixels")
    return probs, classes, list(train["id"][usable]), how


def quick_kfold(features: np.ndarray, labels: np.ndarray, folds: int, time_budget, started: float
                ) -> tuple[np.ndarray, list[str]]:
    """Out-of-fold class probabilities of a logistic regression (standardised pixels), stratified k-fold; with a
    time budget, fewer iterations when the first fold shows the rest would not fit."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.preprocessing import StandardScaler

    classes = sorted(set(labels))
    probs = np.zeros((len(labels), len(classes)), dtype=np.float32)
    iterations = 200
    for k, (fit, held) in enumerate(StratifiedKFold(folds, shuffle=True, random_state=0).split(features, labels)):
        fit = fit[np.random.default_rng(k).permutation(len(fit))[:QUICK_MAX_TRAIN]]
        clock = time.time()
        scaler = StandardScaler().fit(features[fit])
        model = LogisticRegression(C=0.05, max_iter=iterations, tol=1e-3)
        model.fit(scaler.transform(features[fit]), labels[fit])
        index = np.searchsorted(classes, model.classes_)
        probs[np.ix_(held, index)] = model.predict_proba(scaler.transform(features[held]))
        if time_budget and k == 0:  # the rest of the folds must fit into what the budget leaves
            left = time_budget - (time.time() - started)
            per_fold = time.time() - clock
            if per_fold * (folds - 1) > 0.8 * left:
                iterations = max(10, int(iterations * 0.8 * left / max(1e-6, per_fold * (folds - 1))))
    return probs, classes


def run_probabilities(run_dir: Path) -> tuple[np.ndarray, list[str], list[str], str]:
    """A run's out-of-sample probabilities: a k-fold run's oof.csv (every training image), else its validation
    predictions (the held-out images only)."""
    from .runs import OOF_FILE, VAL_PREDICTIONS_FILE

    for name in (OOF_FILE, VAL_PREDICTIONS_FILE):
        path = run_dir / name
        if path.is_file():
            table = pd.read_csv(path, dtype={"id": str, "label": str}, keep_default_na=False)
            columns = [c for c in table.columns if c.startswith("p:")]
            if not columns:
                raise RunError(f"{path}: no p:CLASS probability columns (a run of more than 100 classes or of tags); "
                               "run `kit doctor` without --run")
            probs = table[columns].to_numpy(dtype=np.float32)
            what = "out-of-fold" if name == OOF_FILE else "validation (held-out images only)"
            return (probs, [c[2:] for c in columns], list(table["id"]),
                    f"label issues: confident learning on {run_dir}'s {what} probabilities ({name})")
    raise RunError(f"{run_dir}: no {OOF_FILE} or {VAL_PREDICTIONS_FILE}; give a finished run (a k-fold run covers "
                   "every training image)")


def label_issues(probs: np.ndarray, classes: list[str], ids: list[str], labels: np.ndarray) -> list[dict]:
    """Confident learning (Northcutt et al., cleanlab's find_label_issues with its default rule, written out here):
    class k's threshold is the mean probability of k over the images labelled k; an image is an issue when the
    class it confidently belongs to (the likeliest among those above their thresholds) is not its label. Most
    suspicious first: the lowest probability of the given label; `score` is 1 minus that probability."""
    if not len(ids):
        return []
    index = {c: k for k, c in enumerate(classes)}
    known = np.array([lab in index for lab in labels])
    given = np.array([index.get(lab, 0) for lab in labels])
    thresholds = np.array([probs[known & (given == k), k].mean() if (known & (given == k)).any() else 1.0
                           for k in range(len(classes))])
    above = np.where(probs >= thresholds - 1e-9, probs, -1.0)
    confident = above.argmax(axis=1)
    issue = known & (above.max(axis=1) >= 0) & (confident != given)
    self_confidence = probs[np.arange(len(ids)), given]
    order = [k for k in np.argsort(self_confidence, kind="stable") if issue[k]]
    return [{"id": str(ids[k]), "label": str(labels[k]), "suggested": classes[confident[k]],
             "score": round(float(1 - self_confidence[k]), 4),
             "suggested_probability": round(float(probs[k, confident[k]]), 4)} for k in order]


def adversarial_validation(train_stats: np.ndarray, test_stats: np.ndarray, test_ids: list[str]) -> dict:
    """How well a classifier tells test from train images by cheap statistics (cross-validated AUC), the
    statistics that differ most (each one's own AUC), and the test images most unlike training."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    rng = np.random.default_rng(0)
    train_rows = rng.permutation(len(train_stats))[:SHIFT_MAX_ROWS]
    test_rows = rng.permutation(len(test_stats))[:SHIFT_MAX_ROWS]
    x = np.vstack([train_stats[train_rows], test_stats[test_rows]]).astype(np.float64)
    y = np.r_[np.zeros(len(train_rows)), np.ones(len(test_rows))]
    if min(len(train_rows), len(test_rows)) < 5:
        return {"auc": 0.5, "by": [], "features": {}, "most_unlike": [], "note": "too few images to tell"}
    model = HistGradientBoostingClassifier(max_iter=100, learning_rate=0.1, max_leaf_nodes=15, random_state=0)
    with _one_thread():
        p_test = cross_val_predict(model, x, y, cv=StratifiedKFold(5, shuffle=True, random_state=0),
                                   method="predict_proba")[:, 1]
    auc = float(roc_auc_score(y, p_test))
    single = {name: _single_auc(x[:, k], y, roc_auc_score) for k, name in enumerate(STAT_NAMES)}
    by = sorted((n for n in single if abs(single[n] - 0.5) >= 0.05), key=lambda n: -abs(single[n] - 0.5))
    unlike = np.argsort(-p_test[len(train_rows):], kind="stable")[:50]
    return {"auc": round(auc, 4), "by": by[:5],
            "features": {n: {"auc": round(single[n], 4), "train_mean": round(float(x[y == 0, k].mean()), 4),
                             "test_mean": round(float(x[y == 1, k].mean()), 4)} for k, n in enumerate(STAT_NAMES)},
            "most_unlike": [{"id": str(test_ids[test_rows[k]]), "p_test": round(float(p_test[len(train_rows) + k]), 4)}
                            for k in unlike]}


def _single_auc(values: np.ndarray, y: np.ndarray, roc_auc_score) -> float:
    """One statistic's AUC at telling test from train (0.5: no difference; below 0.5: test has lower values)."""
    return 0.5 if np.ptp(values) == 0 else float(roc_auc_score(y, values))


# ------------------------------------------------------------------ the summary kept per data folder


def _summaries_dir() -> Path:
    from .outputs import _state_dir

    return _state_dir() / "doctor"


def summary_file(data) -> Path:
    """Where the doctor's last summary for a data folder is kept: kit's state folder, keyed by the folder's path."""
    key = hashlib.sha256(os.path.realpath(data).encode("utf-8", "surrogateescape")).hexdigest()[:24]
    return _summaries_dir() / f"{key}.json"


def save_summary(data, found: Diagnosis, html_path, json_path=None, fingerprint: str = "") -> None:
    """Remember the summary line for `kit validate` and run reports (best effort, like kit's ledger)."""
    from .runs import write_json

    record = {"data": os.path.realpath(data), "summary": found.summary(), "html": str(Path(html_path).resolve()),
              "json": str(Path(json_path).resolve()) if json_path else None, "fingerprint": fingerprint,
              "written": time.strftime("%Y-%m-%d %H:%M")}
    try:
        summary_file(data).parent.mkdir(parents=True, exist_ok=True)
        write_json(summary_file(data), record)
    except OSError:
        pass


def read_summary(data) -> dict | None:
    """The doctor's last summary for this data folder ({summary, html, written, fingerprint}), or None."""
    try:
        record = json.loads(summary_file(data).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("summary"), str) else None


def summary_line(data, fingerprint: str = "") -> str | None:
    """`Doctor (date): …; see doctor.html`, noting when the data changed since; None when no doctor ran on it."""
    record = read_summary(data)
    if record is None:
        return None
    changed = " — the data changed since" if fingerprint and record.get("fingerprint") and \
        record["fingerprint"] != fingerprint else ""
    return f"Doctor ({record.get('written', '?')}{changed}): {record['summary']}; see {record.get('html')}"
