"""The frozen phase against scikit-learn's LogisticRegression on the same backbone features (#22, item 6).

Usage: python benchmarks/frozen_head.py [--old-tree DIR] [--work DIR] [--sets flowers,flowers50,cats50,cats]

For each set (the shared flowers and cats-vs-dogs photos, whole and 50 images per class) it runs
`kit train SET --backbone-file efficientnet_lite0… --fine-tune-epochs F` with this tree's kit and, when --old-tree
is given (a checkout of an earlier commit), with that kit; then fits LogisticRegression (C=1, standardised
features) on the same backbone's features of the same split (the run's val_predictions.csv names its validation
images). Prints the validation accuracy of each: the frozen phase, after fine-tuning, and the regression.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from _shared import BACKBONE, extracted

HERE = Path(__file__).resolve().parents[1]


def subset(source: Path, target: Path, per_class: int) -> Path:
    """per_class images of each class folder, copied (kit refuses links that leave the data folder)."""
    if not target.exists():
        for folder in sorted(p for p in source.iterdir() if p.is_dir()):
            (target / folder.name).mkdir(parents=True)
            for path in sorted(folder.glob("*.jpg"))[:per_class]:
                shutil.copyfile(path, target / folder.name / path.name)
    return target


def sets(work: Path) -> dict:
    flowers = extracted("flowers5-128px.tar", work) / "flowers"
    cats = extracted("cats_and_dogs_filtered.tar", work) / "cats_and_dogs_filtered"
    return {  # name: (folder, image size, fine-tuning epochs)
        "flowers": (flowers, 128, 0),
        "flowers50": (subset(flowers, work / "flowers50", 50), 128, 2),
        "cats50": (subset(cats / "train", work / "cats50", 50), 160, 2),
        "cats": (cats, 160, 0),
    }


def kit_train(tree: Path, folder: Path, size: int, fine_tune: int, runs: Path, name: str) -> tuple[dict, float]:
    from kit.runs import sha256_file

    args = ["train", folder, "--runs-dir", runs, "--name", name, "--force", "--backbone-file", BACKBONE,
            "--trust-model", sha256_file(BACKBONE), "--image-size", size, "--fine-tune-epochs", fine_tune]
    print(f"$ (cd {tree} && kit {' '.join(map(str, args))})", flush=True)
    started = time.time()
    result = subprocess.run([sys.executable, "-m", "kit", *map(str, args)], cwd=tree, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(tree), "TF_CPP_MIN_LOG_LEVEL": "3"})
    if result.returncode:
        sys.exit(result.stdout + result.stderr)
    return json.loads((runs / name / "metrics.json").read_text()), time.time() - started


def regression_accuracy(folder: Path, run: Path, size: int) -> float:
    """LogisticRegression(C=1) on standardised backbone features of the run's own split."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from kit.data import load_competition
    from kit.pipeline import make_dataset
    from kit.runs import sha256_file
    from kit.transfer import BACKBONE_FILE, build_transfer_model, extract_features

    comp = load_competition(folder)
    val_paths = set(pd.read_csv(run / "val_predictions.csv")["path"])
    table = pd.concat([comp.train, comp.validation]) if comp.validation is not None else comp.train
    index = {c: i for i, c in enumerate(comp.class_names)}
    tm = build_transfer_model(BACKBONE_FILE, size, 3, len(comp.class_names), backbone_file=str(BACKBONE),
                              trusted=(sha256_file(BACKBONE),))
    sides = {}
    for side, rows in (("train", table[~table["path"].isin(val_paths)]), ("val", table[table["path"].isin(val_paths)])):
        ds = make_dataset(rows["path"], rows["label"].map(index), image_size=size, channels=3, batch_size=64,
                          cache=False)
        sides[side] = extract_features(tm.features, ds)
    model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=3000)).fit(*sides["train"])
    return float(model.score(*sides["val"]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old-tree", default="", help="a checkout of the kit to compare with")
    parser.add_argument("--work", default="/tmp/kit-bench-frozen")
    parser.add_argument("--sets", default="flowers50,cats50,flowers,cats")
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    available = sets(work)
    trees = [("this", HERE)] + ([("old", Path(args.old_tree))] if args.old_tree else [])
    rows = []
    for name in args.sets.split(","):
        folder, size, fine_tune = available[name]
        for label, tree in trees:
            metrics, seconds = kit_train(tree, folder, size, fine_tune, work / "runs", f"{name}-{label}")
            frozen = metrics.get("frozen_val_score", metrics.get("frozen_val_accuracy"))
            rows.append((name, f"kit ({label})", frozen, metrics["val_accuracy"] if fine_tune else None,
                         metrics["num_train"], seconds))
        lr = regression_accuracy(folder, work / "runs" / f"{name}-this", size)
        rows.append((name, "LogisticRegression(C=1) on the same features", lr, None, None, None))
    print(f"\n{os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}; backbone {BACKBONE.name}")
    print("| set | head | frozen val accuracy | after fine-tuning | train images | wall s |\n|---|---|---|---|---|---|")
    for name, who, frozen, tuned, n, seconds in rows:
        print(f"| {name} | {who} | {frozen:.4f} | {'' if tuned is None else f'{tuned:.4f}'} | {n or ''} | "
              f"{'' if seconds is None else f'{seconds:.0f}'} |")


if __name__ == "__main__":
    main()
