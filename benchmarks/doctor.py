"""`kit doctor` on real data with planted problems: recall and precision of each kind, and the time.

Usage: python benchmarks/doctor.py [--work /tmp/doctor] [--sets fashion12k,flowers,cats,cats-shifted,fashion70k]
                                   [--honest]
       (any set as SET-turned, e.g. flowers-turned: its leaks mirrored, rotated or cropped as well)

Each set is a competition folder (train.csv + train/, test.csv + test/, sample_submission.csv) made once under
WORK/bench/ from real images, with problems planted and recorded in WORK/bench/SET.planted.json:
- leaks: test images copied into train, re-encoded as JPEG (quality 70-95) and shifted by one pixel, resized, or
  both, under their true label;
- conflicting duplicates: training images copied the same ways under another label;
- changed labels: training images given another class.
Fashion-MNIST comes from ../shared/scripts/get-datasets.sh WORK/keras; the photos from ../shared/datasets (extracted
under WORK). --honest also measures how much a random split overstates validation when a set holds near-duplicates,
against kit's split that keeps them together (kit.training.split_train_validation with the doctor's groups).
Prints one table row per set.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._shared import SHARED, extracted  # noqa: E402

PLANT = {"fashion12k": (12_000, 2_000, 100, 100, 200), "fashion70k": (60_000, 10_000, 300, 300, 600),
         "flowers": (3_500, 817, 60, 60, 100), "cats": (2_000, 1_000, 50, 50, 60),
         "cats-shifted": (2_000, 1_000, 50, 50, 60)}  # train, test, leaks, conflicting copies, changed labels
# SET-turned (e.g. flowers-turned): the same set, but each leak mirrored, rotated by 90/180/270 degrees or cropped by
# 3-20% of each side, then re-encoded as above (TURNED_KINDS; conflicting copies and changed labels as in SET)
TURNED_KINDS = ("mirror", "rot90", "rot180", "rot270", "crop")


def idx_images(path: Path) -> np.ndarray:
    with gzip.open(path) as f:
        data = f.read()
    return np.frombuffer(data, np.uint8, offset=16).reshape(-1, 28, 28)


def idx_labels(path: Path) -> np.ndarray:
    with gzip.open(path) as f:
        return np.frombuffer(f.read(), np.uint8, offset=8)


def fashion_source(work: Path, n_train: int, n_test: int):
    """(train images, train labels, test images, test labels) of real Fashion-MNIST as PIL images."""
    root = work / "keras" / "fashion-mnist"
    if not root.exists():
        os.system(f"bash {SHARED / 'scripts' / 'get-datasets.sh'} {work / 'keras'}")
    x, y = idx_images(root / "train-images-idx3-ubyte.gz"), idx_labels(root / "train-labels-idx1-ubyte.gz")
    xt, yt = idx_images(root / "t10k-images-idx3-ubyte.gz"), idx_labels(root / "t10k-labels-idx1-ubyte.gz")
    names = ["tshirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot"]
    return ([Image.fromarray(a) for a in x[:n_train]], [names[k] for k in y[:n_train]],
            [Image.fromarray(a) for a in xt[:n_test]], [names[k] for k in yt[:n_test]])


def photo_source(work: Path, name: str, n_train: int, n_test: int, seed: int = 0):
    """Photos from a class-folder archive, shuffled and split into train and test (paths, not decoded yet)."""
    if name == "flowers":
        root = extracted("flowers5-128px.tar", work)
        files = sorted(p for p in root.rglob("*.jpg"))
    else:
        root = extracted("cats_and_dogs_filtered.tar", work)
        files = sorted(root.rglob("*.jpg"))
    rng = np.random.default_rng(seed)
    files = [files[k] for k in rng.permutation(len(files))][:n_train + n_test]
    labels = [f.parent.name for f in files]
    return files[:n_train], labels[:n_train], files[n_train:], labels[n_train:]


def perturbed(im: Image.Image, kind: int, rng) -> Image.Image:
    """A copy as people make them: shifted by one pixel, resized, or both. Photos are resized by
    80-120%; tiny images (under 64 px) only enlarged by 125-200%, as shrinking a 28-px image by a fifth erases the
    detail that tells it from its near-twins (Fashion-MNIST's trousers), for kit and for a person alike."""
    im = im.convert("RGB") if im.mode not in ("L", "RGB") else im
    if kind in (0, 2):
        a = np.asarray(im)
        dy, dx = rng.choice([-1, 1], 2)  # the row and column uncovered repeat the edge, as a crop-and-pad would
        pad = [(1, 1), (1, 1)] + [(0, 0)] * (a.ndim - 2)
        a = np.pad(a, pad, mode="edge")[1 + dy:1 + dy + a.shape[0], 1 + dx:1 + dx + a.shape[1]]
        im = Image.fromarray(np.ascontiguousarray(a))
    if kind in (1, 2):
        scale = rng.choice([0.8, 0.9, 1.1, 1.2] if min(im.size) >= 64 else [1.25, 1.5, 2.0])
        im = im.resize((max(8, round(im.width * scale)), max(8, round(im.height * scale))), Image.BILINEAR)
    return im


def turned(im: Image.Image, kind: str, rng) -> Image.Image:
    """A leak as competitors meet them: mirrored, rotated, or cropped by 3-20% of each side (anywhere)."""
    if kind == "crop":
        keep_w, keep_h = rng.uniform(0.8, 0.97, 2)
        w, h = round(im.width * keep_w), round(im.height * keep_h)
        x0, y0 = int(rng.integers(0, im.width - w + 1)), int(rng.integers(0, im.height - h + 1))
        return im.crop((x0, y0, x0 + w, y0 + h))
    return im.transpose({"mirror": Image.FLIP_LEFT_RIGHT, "rot90": Image.ROTATE_90, "rot180": Image.ROTATE_180,
                         "rot270": Image.ROTATE_270}[kind])


def write_set(folder: Path, train, train_labels, test, test_labels, plant, seed: int = 1, darken_test=False,
              turn_leaks=False) -> dict:
    """The competition folder with planted problems; returns what was planted."""
    (folder / "train").mkdir(parents=True)
    (folder / "test").mkdir()
    rng = np.random.default_rng(seed)
    _, _, n_leaks, n_conflicts, n_changed = plant
    classes = sorted(set(train_labels))
    open_ = (lambda x: x) if isinstance(train[0], Image.Image) else (lambda p: Image.open(p))
    rows = []
    for k, (x, label) in enumerate(zip(train, train_labels)):
        name = f"tr{k:05d}"
        _save(open_(x), folder / "train", name, x)
        rows.append([name, label])
    test_rows = []
    for k, x in enumerate(test):
        name = f"te{k:05d}"
        im = open_(x)
        if darken_test:
            im = Image.fromarray((np.asarray(im.convert("RGB"), np.float32) * 0.75).astype(np.uint8))
            im.save(folder / "test" / f"{name}.jpg", quality=90)
        else:
            _save(im, folder / "test", name, x)
        test_rows.append(name)
    leaks, conflicts = [], []
    for k in rng.choice(len(test), n_leaks, replace=False):
        name = f"lk{k:05d}"
        kind, quality = int(rng.integers(3)), int(rng.integers(70, 96))
        source = open_(test[k])
        if turn_leaks:
            how = TURNED_KINDS[int(rng.integers(len(TURNED_KINDS)))]
            source, kind = turned(source.convert("RGB") if source.mode not in ("L", "RGB") else source, how, rng), \
                f"{how}+{kind}"
        perturbed(source, int(str(kind)[-1]), rng).save(folder / "train" / f"{name}.jpg", quality=quality)
        rows.append([name, test_labels[k]])
        leaks.append([test_rows[k], name, kind, quality])
    for k in rng.choice(len(train), n_conflicts, replace=False):
        name = f"cf{k:05d}"
        kind, quality = int(rng.integers(3)), int(rng.integers(70, 96))
        perturbed(open_(train[k]), kind, rng).save(folder / "train" / f"{name}.jpg", quality=quality)
        other = [c for c in classes if c != train_labels[k]]
        rows.append([name, other[int(rng.integers(len(other)))]])
        conflicts.append([rows[k][0], name, kind, quality])
    planted_rows = {c for pair in conflicts for c in pair[:2]}
    candidates = [k for k in range(len(train)) if rows[k][0] not in planted_rows]
    changed = []
    for k in rng.choice(candidates, n_changed, replace=False):
        other = [c for c in classes if c != rows[k][1]]
        rows[k][1] = other[int(rng.integers(len(other)))]
        changed.append(rows[k][0])
    _csv(folder / "train.csv", ["id", "label"], rows)
    _csv(folder / "test.csv", ["id"], [[t] for t in test_rows])
    _csv(folder / "sample_submission.csv", ["id", "label"], [[t, classes[0]] for t in test_rows])
    return {"leaks": leaks, "conflicts": conflicts, "changed": changed}


def _save(im: Image.Image, folder: Path, name: str, source) -> None:
    if isinstance(source, Image.Image):
        im.save(folder / f"{name}.png")
    else:
        im.save(folder / f"{name}.jpg", quality=95)


def _csv(path: Path, header, rows) -> None:
    path.write_text("\n".join([",".join(header)] + [",".join(map(str, r)) for r in rows]) + "\n")


def make_set(work: Path, name: str) -> tuple[Path, dict]:
    folder, record = work / "bench" / name, work / "bench" / f"{name}.planted.json"
    if record.exists():
        return folder, json.loads(record.read_text())
    base = name.removesuffix("-turned")
    plant = PLANT[base]
    if base.startswith("fashion"):
        source = fashion_source(work, plant[0], plant[1])
    else:
        source = photo_source(work, base.split("-")[0], plant[0], plant[1])
    planted = write_set(folder, *source, plant, darken_test=base.endswith("shifted"), turn_leaks=name != base)
    record.write_text(json.dumps(planted))
    return folder, planted


def same_pixels(path_a, path_b) -> bool:
    """Whether two image files hold the same picture: equal sizes and a mean gray difference under 1 of 255."""
    with Image.open(path_a) as a, Image.open(path_b) as b:
        if a.size != b.size:
            return False
        diff = np.abs(np.asarray(a.convert("L"), np.float32) - np.asarray(b.convert("L"), np.float32))
    return float(diff.mean()) < 1.0


def source_duplicates(reported: set, leaks: set, paths: dict) -> set:
    """The reported train/test pairs that were not planted but are duplicates in the source data itself (both files
    untouched originals, same pixels to within 1/255 on average): real leaks of the source set, not false ones."""
    return {pair for pair in reported - leaks
            if pair[1].startswith("tr") and same_pixels(paths[pair[0]], paths[pair[1]])}


def score(found, planted: dict) -> dict:
    """Recall and precision of each planted kind in a kit.doctor.Diagnosis. A reported leak that was not planted
    counts as false, except (in leak_precision_sources) when it is a duplicate in the source data (same_pixels)."""
    leaks = {tuple(p[:2]) for p in planted["leaks"]}
    reported = {(p["test"], p["train"]) for p in found.train_test_duplicates}
    sources = source_duplicates(reported, leaks, found.paths) if found.paths else set()
    conflicts = {frozenset(p[:2]) for p in planted["conflicts"]}
    groups = [set(g["ids"]) for g in found.train_duplicates if g["conflicting"]]
    hit_groups = [g for g in groups if any(c <= g for c in conflicts)]
    found_conflicts = {c for c in conflicts if any(c <= g for g in groups)}
    first = [issue["id"] for issue in found.label_issues[:200]]
    changed = set(planted["changed"])
    by_kind = {}
    for p in planted["leaks"]:
        kind = str(p[2]).split("+")[0] if "+" in str(p[2]) else "plain"
        by_kind.setdefault(kind, []).append(tuple(p[:2]) in reported)
    return {"leak_recall_by_kind": {k: f"{sum(v)}/{len(v)}" for k, v in sorted(by_kind.items())},
            "leak_recall": len(leaks & reported) / max(1, len(leaks)),
            "leak_precision": len(leaks & reported) / max(1, len(reported)), "leak_reported": len(reported),
            "leak_precision_sources": len((leaks | sources) & reported) / max(1, len(reported)),
            "leak_source_duplicates": len(sources),
            "conflict_recall": len(found_conflicts) / max(1, len(conflicts)),
            "conflict_precision": len(hit_groups) / max(1, len(groups)), "conflict_reported": len(groups),
            "label_recall_at_200": len(changed & set(first)) / max(1, len(changed)),
            "label_precision_at_200": len(changed & set(first)) / max(1, len(first)),
            "label_issues": len(found.label_issues)}


def run_set(work: Path, name: str) -> dict:
    from kit.data import load_competition
    from kit.doctor import diagnose
    from kit.validation import validate

    folder, planted = make_set(work, name)
    started = time.perf_counter()
    comp = load_competition(str(folder))
    report = validate(comp, progress=True)
    validated = time.perf_counter() - started
    found = diagnose(comp, report, log=lambda m: print(m, file=sys.stderr))
    seconds = time.perf_counter() - started
    result = {"set": name, "images": len(comp.train) + len(comp.test), **score(found, planted),
              "shift_auc": found.shift["auc"] if found.shift else None,
              "shift_by": ",".join(found.shift["by"][:2]) if found.shift else "",
              "validate_s": round(validated, 1), "total_s": round(seconds, 1), "parts_s": found.seconds}
    return result


def honest_validation(work: Path) -> None:
    """A random split against kit's grouped split on Fashion-MNIST 12k with 2,400 near-duplicate copies: validation
    accuracy of a 1-nearest-neighbour and a logistic regression on small pixels, and their held-out test accuracy."""
    import pandas as pd
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier

    from kit.config import Config
    from kit.data import load_competition
    from kit.doctor import duplicate_group_column, pixel_features, signatures_of
    from kit.hashes import unpack
    from kit.training import split_train_validation
    from kit.validation import validate

    folder = work / "bench" / "fashion-dups"
    if not folder.exists():
        x, y, xt, yt = fashion_source(work, 12_000, 2_000)
        write_set(folder, x, y, xt, yt, (0, 0, 0, 0, 0))
        rng = np.random.default_rng(5)
        table = pd.read_csv(folder / "train.csv", dtype=str)
        extra = []
        for k in rng.choice(len(x), 2_400, replace=False):
            name = f"dp{k:05d}"
            perturbed(x[k], int(rng.integers(3)), rng).save(folder / "train" / f"{name}.jpg", quality=85)
            extra.append([name, y[k]])
        pd.concat([table, pd.DataFrame(extra, columns=["id", "label"])]).to_csv(folder / "train.csv", index=False)
        pd.DataFrame({"id": [f"te{k:05d}" for k in range(len(xt))], "label": yt}).to_csv(
            work / "bench" / "fashion-dups.answers.csv", index=False)
    comp = load_competition(str(folder))
    report = validate(comp)
    answers = pd.read_csv(work / "bench" / "fashion-dups.answers.csv", dtype=str)
    features = {}
    for table in (comp.train, comp.test):
        rows, sigs = signatures_of(table, report)
        thumbs, colors, _ = unpack(sigs)
        features.update(zip(rows["id"], pixel_features(thumbs, colors)))
    test_x = np.stack([features[i] for i in answers["id"]])
    groups = duplicate_group_column(comp.train, report)
    print(f"{'split':8s} {'model':8s} {'validation':>10s} {'test':>7s} {'overstated by':>14s}")
    for split_name, group in (("random", None), ("kit", groups)):
        train = comp.train if group is None else comp.train.assign(near_duplicate_group=group)
        fit, val = split_train_validation(_with(comp, train), Config(data=str(folder)))
        for model_name, model in (("1-NN", KNeighborsClassifier(1)), ("logistic", LogisticRegression(max_iter=300))):
            model.fit(np.stack([features[i] for i in fit["id"]]), fit["label"])
            v = float((model.predict(np.stack([features[i] for i in val["id"]])) == val["label"]).mean())
            t = float((model.predict(test_x) == answers["label"]).mean())
            print(f"{split_name:8s} {model_name:8s} {v:10.4f} {t:7.4f} {v - t:+14.4f}")


def _with(comp, train):
    from dataclasses import replace

    return replace(comp, train=train)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default="/tmp/doctor")
    parser.add_argument("--sets", default="fashion12k,flowers,cats,cats-shifted")
    parser.add_argument("--honest", action="store_true")
    args = parser.parse_args()
    work = Path(args.work)
    print(f"kit doctor on planted problems, {os.cpu_count()} cores ({time.strftime('%Y-%m-%d %H:%M')})")
    columns = ("set", "images", "leak_recall", "leak_precision", "leak_reported", "leak_precision_sources",
               "leak_source_duplicates", "conflict_recall",
               "conflict_precision", "conflict_reported", "label_recall_at_200", "label_issues", "shift_auc",
               "shift_by", "validate_s", "total_s")
    print(" | ".join(columns))
    for name in [s for s in args.sets.split(",") if s]:
        result = run_set(work, name)
        ratios = ("recall", "precision", "sources", "200", "auc")
        print(" | ".join(f"{result[c]:.3f}" if isinstance(result[c], float) and c.endswith(ratios) else str(result[c])
                         for c in columns), f"| parts {result['parts_s']}",
              f"| leaks by kind {result['leak_recall_by_kind']}",
              flush=True)
    if args.honest:
        honest_validation(work)


if __name__ == "__main__":
    main()
