"""The tutorial recipes as published against kit's defaults, on the same data, scored on held-out answers.

Usage: python benchmarks/recipes.py [--only mnist-dense fashion-simple-cnn ...] [--cifar10-jpg DIR]
           [--epochs cifar10-cnn=15] [--runs-dir DIR] [--reuse] [--target 0.91]
For each recipe whose data is available (MNIST/Fashion-MNIST from the Keras cache, e.g. the idx files of
../shared/scripts/get-datasets.sh; CIFAR-10 from the extracted ../shared/datasets/cifar10-jpg.tar.gz given
as --cifar10-jpg), runs `kit run --recipe NAME` and `kit run` with kit's defaults on the same competition
folder, scores both submissions against the answers, and prints one table. --epochs NAME=N cuts a recipe's
schedule (its learning rate is constant, so N epochs are the first N of the published run); --reuse reads
runs this script already finished in --runs-dir instead of training them again. --target 0.91 adds, for each
run, the training time (the epochs' own seconds in history.csv, decoding included) until its validation
accuracy first reached 91%, and its whole training time — the time each needs to reach its final accuracy.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def cifar10_folder(jpg_root: Path, out: Path) -> tuple[Path, Path]:
    """A class-folder competition made of hard links to the CIFAR-10 JPEGs: train/<class>/, a flat test/
    with sample_submission.csv, and the answers beside the folder. Nothing is copied or changed."""
    folder, answers = out / "cifar10", out / "cifar10_answers.csv"
    if (folder / "sample_submission.csv").is_file() and answers.is_file():
        return folder, answers
    rows = []
    for path in sorted((jpg_root / "train").glob("*/*.jpg")):
        target = folder / "train" / path.parent.name / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            os.link(path, target)
    (folder / "test").mkdir(parents=True, exist_ok=True)
    for path in sorted((jpg_root / "test").glob("*/*.jpg")):
        name = f"{path.parent.name}_{path.name}"
        if not (folder / "test" / name).exists():
            os.link(path, folder / "test" / name)
        rows.append((name, path.parent.name))
    for table, label in ((answers, None), (folder / "sample_submission.csv", rows[0][1])):
        with open(table, "w", newline="") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(["id", "label"])
            writer.writerows((name, label or truth) for name, truth in rows)
    return folder, answers


def data_for(dataset: str, args) -> tuple[Path, Path] | None:
    """(competition folder, answers) for a recipe's dataset, or None when its files are not here."""
    if dataset == "cifar10" and args.cifar10_jpg:
        return cifar10_folder(Path(args.cifar10_jpg), Path(args.runs_dir) / "data")
    from kit.datasets import dataset_folder
    from kit.errors import KitError

    try:
        return dataset_folder(dataset)
    except KitError as e:
        print(f"{dataset}: skipped ({e})", file=sys.stderr)
        return None


def run_kit(name: str, data: Path, answers: Path, extra: list[str], args) -> dict:
    """Train with `kit run`, then score the submission; returns held-out accuracy, epochs and wall time."""
    from kit.submission import score_submission

    run_dir = Path(args.runs_dir) / name
    if not (args.reuse and (run_dir / "bench.json").is_file()):
        cmd = [sys.executable, "-m", "kit", "run", str(data), "--name", name, "--runs-dir", args.runs_dir, "--force", *extra]
        print("$", " ".join(cmd), file=sys.stderr, flush=True)
        start = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - start
        metrics = json.loads((run_dir / "metrics.json").read_text())
        with open(run_dir / "history.csv", newline="") as f:
            history = [(float(row["val_accuracy"]), float(row["seconds"])) for row in csv.DictReader(f)]
        result = dict(accuracy=score_submission(run_dir / "submission.csv", answers), epochs=metrics["epochs_run"],
                      wall=wall, command=" ".join(cmd), history=history)
        (run_dir / "bench.json").write_text(json.dumps(result, indent=1))
    return json.loads((run_dir / "bench.json").read_text())


def main() -> None:
    from kit.recipes import RECIPES

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", default=list(RECIPES), help="recipes to run (default: all)")
    parser.add_argument("--cifar10-jpg", help="the extracted cifar10-jpg.tar.gz (train/<class>, test/<class>)")
    parser.add_argument("--epochs", nargs="*", default=[], help="NAME=N: cut a recipe's schedule to N epochs")
    parser.add_argument("--runs-dir", default="bench-recipes", help="runs and derived data go here")
    parser.add_argument("--reuse", action="store_true", help="use finished runs of this script in --runs-dir")
    parser.add_argument("--default-args", default="", help="extra `kit run` options for the default side")
    parser.add_argument("--target", type=float, help="also report the training time to this validation accuracy")
    parser.add_argument("--which", choices=("both", "recipe", "default"), default="both",
                        help="train only one side now (the table then needs --reuse for the other)")
    args = parser.parse_args()
    cut = {name: n for name, n in (item.split("=") for item in args.epochs)}

    rows, defaults = [], {}
    for name in args.only:
        recipe = RECIPES[name]
        found = data_for(recipe.dataset, args)
        if found is None:
            continue
        data, answers = found
        extra = ["--epochs", cut[name]] if name in cut else []
        reproduced = None if args.which == "default" else \
            run_kit(f"{name}-recipe", data, answers, ["--recipe", name, *extra], args)
        if recipe.dataset not in defaults and args.which != "recipe":  # one default run serves all its recipes
            suffix = "-" + "".join(c for c in args.default_args if c.isalnum()) if args.default_args else ""
            defaults[recipe.dataset] = run_kit(f"{recipe.dataset}-default{suffix}", data, answers,
                                               args.default_args.split(), args)
        rows.append((recipe, name, reproduced, defaults.get(recipe.dataset)))

    machine = f"{os.cpu_count()} cores {platform.machine()}, no GPU" if not _has_gpu() else "GPU"
    print("| dataset | recipe | published | recipe as reproduced | kit default | machine |")
    print("|---|---|---|---|---|---|")
    for recipe, name, rep, default in rows:
        print(f"| {recipe.dataset} | {name} | {recipe.published} | {_cell(rep, recipe.settings['epochs'])} | "
              f"{_cell(default)} | {machine} |")
    if args.target:
        print(f"\n| run | training time to {100 * args.target:g}% validation accuracy | epoch | whole training |")
        print("|---|---|---|---|")
        seen = set()
        for recipe, name, rep, default in rows:
            for label, result in ((name, rep), (f"{recipe.dataset} default", default)):
                if result is not None and label not in seen:
                    seen.add(label)
                    print(f"| {label} | {_time_to(result['history'], args.target)} | "
                          f"{sum(s for _, s in result['history']) / 60:.1f} min |")


def _cell(result: dict | None, planned: int | None = None) -> str:
    if result is None:
        return "not run"
    epochs = f"{result['epochs']} epochs" + (f" of {planned}" if planned and planned != result["epochs"] else "")
    return f"{100 * result['accuracy']:.2f}% ({epochs}, {result['wall'] / 60:.1f} min)"


def _time_to(history: list, target: float) -> str:
    elapsed = 0.0
    for epoch, (accuracy, seconds) in enumerate(history, 1):
        elapsed += seconds
        if accuracy >= target:
            return f"{elapsed / 60:.1f} min | {epoch}"
    return "not reached | –"


def _has_gpu() -> bool:
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


if __name__ == "__main__":
    main()
