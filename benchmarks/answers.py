"""Answer kinds on real photos (#21): what the right kind of answer is worth against the naive one, same model.

Usage: python benchmarks/answers.py [--work DIR] [--epochs 8] [--image-size 64]

1. Binary, scored by AUC and log loss: a cactus-style competition (train.csv id,has_dog; the sample holding 0.5)
   built from the shared cats-vs-dogs photos (2,000 train, the 1,000 validation photos as the test set, answers
   kept outside). `kit run` writes P(dog); the table compares its AUC with the hard 0/1 labels the same
   probabilities make, and its log loss at several clip values (kit's --clip, default 1e-6).
2. Multi-label, scored by mean F2: Planet-style mosaics of the shared flower photos (2×2 tiles, each tag a
   species present), `kit run --metric f2` with the shared EfficientNet-Lite0 backbone; the table compares the
   submission with per-tag thresholds tuned on validation against the same run with every threshold at 0.5
   (thresholds.json rewritten in a copy of the run folder, then `kit make-submission`).
Prints the tables and the commands; the photos are read from ../shared/datasets, never copied into the project.
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

import numpy as np
import pandas as pd
from PIL import Image

from _shared import BACKBONE, extracted



def kit(*args) -> str:
    command = [sys.executable, "-m", "kit", *map(str, args)]
    print("$ kit " + " ".join(map(str, args)), flush=True)
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    if result.returncode:
        sys.exit(result.stdout + result.stderr)
    return result.stdout


def binary_folder(work: Path) -> tuple[Path, Path]:
    source = extracted("cats_and_dogs_filtered.tar", work / "cats") / "cats_and_dogs_filtered"
    data, answers = work / "cats" / "competition", work / "cats" / "answers.csv"
    if not data.exists():
        for split, folder in (("train", "train"), ("validation", "test")):
            (data / folder).mkdir(parents=True)
            rows = []
            for animal in ("cats", "dogs"):
                for path in sorted((source / split / animal).glob("*.jpg")):
                    name = f"{animal[:-1]}_{path.name}"
                    shutil.copyfile(path, data / folder / name)
                    rows.append((name, int(animal == "dogs")))
            table = pd.DataFrame(rows, columns=["id", "has_dog"])
            if folder == "train":
                table.to_csv(data / "train.csv", index=False)
            else:
                table.to_csv(answers, index=False)
                table.assign(has_dog=0.5).to_csv(data / "sample_submission.csv", index=False)
    return data, answers


def mosaic_folder(work: Path, n_train: int = 1200, n_test: int = 400) -> tuple[Path, Path]:
    """2×2 mosaics of 112-px flower tiles; each image holds 1-4 tiles, its tags the species shown (blank tiles
    grey)."""
    source = extracted("flowers5-128px.tar", work / "flowers") / "flowers"
    data, answers = work / "flowers" / "competition", work / "flowers" / "answers.csv"
    if data.exists():
        return data, answers
    species = sorted(p.name for p in source.iterdir() if p.is_dir())
    photos = {s: sorted((source / s).glob("*.jpg")) for s in species}
    rng = np.random.default_rng(0)
    for split, count in (("train-jpg", n_train), ("test-jpg", n_test)):
        (data / split).mkdir(parents=True)
        rows = []
        for i in range(count):
            shown = rng.choice(species, size=int(rng.integers(1, 4)), replace=False)
            tiles = list(shown) + [""] * (4 - len(shown))
            rng.shuffle(tiles)
            canvas = Image.new("RGB", (224, 224), (128, 128, 128))
            for t, s in enumerate(tiles):
                if s:
                    photo = Image.open(photos[s][int(rng.integers(len(photos[s])))]).convert("RGB")
                    canvas.paste(photo.resize((112, 112)), ((t % 2) * 112, (t // 2) * 112))
            name = f"{split.split('-')[0]}_{i}"
            canvas.save(data / split / f"{name}.jpg", quality=92)
            rows.append((name, " ".join(sorted(shown))))
        table = pd.DataFrame(rows, columns=["image_name", "tags"])
        if split == "train-jpg":
            table.to_csv(data / "train_v2.csv", index=False)
        else:
            table.to_csv(answers, index=False)
            table.assign(tags="daisy rose").to_csv(data / "sample_submission_v2.csv", index=False)
    return data, answers


def score(sub: Path, answers: Path, metric: str) -> float:
    return float(kit("score", sub, answers, "--metric", metric).strip().split(": ")[1])


def binary(work: Path, args) -> None:
    from kit.metrics import auc, log_loss

    data, answers = binary_folder(work)
    runs = work / "runs"
    start = time.time()
    kit("run", data, "--runs-dir", runs, "--name", "binary", "--force", "--epochs", args.epochs, "--image-size",
        args.image_size, "--clip", "0")
    seconds = time.time() - start
    sub = pd.read_csv(runs / "binary" / "submission.csv")
    truth = pd.read_csv(answers).set_index("id").loc[sub["id"], "has_dog"].to_numpy()
    p = sub["has_dog"].to_numpy(dtype=float)
    probs = np.stack([1 - p, p], 1)
    hard = np.stack([1 - (p >= 0.5), (p >= 0.5)], 1).astype(float)
    print(f"\nBinary (cats vs dogs photos, {len(sub)} held-out, baseline CNN, {args.epochs} epochs at "
          f"{args.image_size} px, {seconds:.0f} s): kit's submission = P(dog)")
    print("| answer written | held-out AUC | log loss |\n|---|---|---|")
    print(f"| P(dog), kit's default | {score(runs / 'binary' / 'submission.csv', answers, 'auc'):.4f} | "
          f"{log_loss(truth, np.clip(probs, 1e-6, 1 - 1e-6)):.4f} (clip 1e-6) |")
    print(f"| hard 0/1 label from the same probabilities | {auc(truth, hard, 1):.4f} | "
          f"{log_loss(truth, hard):.4f} |")
    print("\n| --clip | log loss of the same probabilities |\n|---|---|")
    for clip in (0.0, 1e-6, 1e-3, 0.01, 0.02, 0.05):
        print(f"| {clip:g} | {log_loss(truth, np.clip(probs, max(clip, 1e-15), 1 - max(clip, 1e-15))):.4f} |")


def multilabel(work: Path, args) -> None:
    from kit.runs import sha256_file

    data, answers = mosaic_folder(work)
    runs = work / "runs"
    start = time.time()
    kit("run", data, "--runs-dir", runs, "--name", "tags", "--force", "--metric", "f2", "--backbone-file", BACKBONE,
        "--trust-model", sha256_file(BACKBONE), "--image-size", 224, "--epochs", 30, "--fine-tune-epochs", 0)
    seconds = time.time() - start
    run = runs / "tags"
    fixed = runs / "tags_at_0.5"
    shutil.rmtree(fixed, ignore_errors=True)
    shutil.copytree(run, fixed)
    (fixed / "submission.csv").unlink()
    decision = json.loads((run / "thresholds.json").read_text())
    (fixed / "thresholds.json").write_text(json.dumps({**decision, "thresholds": {
        t: 0.5 for t in decision["thresholds"]}}))
    kit("make-submission", fixed)
    print(f"\nMulti-label (2×2 mosaics of flower photos, {len(pd.read_csv(answers))} held-out, EfficientNet-Lite0 "
          f"head on cached features, {seconds:.0f} s): thresholds {decision['thresholds']}")
    print("| thresholds | held-out mean F2 | held-out mean F1 |\n|---|---|---|")
    for label, folder in (("tuned per tag on validation (kit's default)", run), ("0.5 for every tag", fixed)):
        sub = folder / "submission.csv"
        print(f"| {label} | {score(sub, answers, 'f2'):.4f} | {score(sub, answers, 'f1'):.4f} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default="/tmp/kit-bench-answers")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--only", choices=("binary", "multilabel"))
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    print(f"{os.cpu_count()} cores; {time.strftime('%Y-%m-%d')}")
    if args.only != "multilabel":
        binary(work, args)
    if args.only != "binary":
        multilabel(work, args)


if __name__ == "__main__":
    main()
