"""kit's default transfer run on a 17-class flower competition of 60 real photos per class (#22, item 6).

Usage: python benchmarks/flowers17.py SOURCE [--work DIR] [--variants "default;--image-size 160"]

SOURCE: Oxford's 17 Category Flower Dataset (80 photos per class, about 500 px) as 17 class folders, e.g. the
`datas/17flowers/c1..c17` folders of the public GitHub repository 995114879/17flowers. The script builds a
competition from it outside the project (per class, 60 photos in train/<class>/ and the other 20 in a flat
test/ folder, seeded; the answers kept outside the folder), then for each variant runs `kit run COMP
--backbone-file <the shared EfficientNet-Lite0> VARIANT` and scores its submission on the held-out answers with
`kit score`. Prints the validation accuracy of the frozen phase and of the kept model, the held-out accuracy and
the wall time of each variant.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

from _shared import BACKBONE

TRAIN_PER_CLASS = 60


def build(source: Path, target: Path, seed: int = 0) -> Path:
    """The competition folder: train/<class>/ with TRAIN_PER_CLASS photos each, the rest in test/ under new
    names; test.csv lists them and answers.csv (beside the folder, not in it) labels them."""
    comp = target / "comp"
    if comp.exists():
        return comp
    partial = target / ".building"
    shutil.rmtree(partial, ignore_errors=True)
    rng, answers = random.Random(seed), []
    for folder in sorted(p for p in source.iterdir() if p.is_dir()):
        photos = sorted(folder.glob("*.jpg"))
        rng.shuffle(photos)
        (partial / "train" / folder.name).mkdir(parents=True)
        for path in photos[:TRAIN_PER_CLASS]:
            shutil.copyfile(path, partial / "train" / folder.name / path.name)
        for path in photos[TRAIN_PER_CLASS:]:
            answers.append((f"t{len(answers):04d}", folder.name, path))
    rng.shuffle(answers)
    (partial / "test").mkdir()
    for name, _, path in answers:
        shutil.copyfile(path, partial / "test" / f"{name}.jpg")
    (partial / "test.csv").write_text("id\n" + "".join(f"{name}.jpg\n" for name, _, _ in answers))
    (target / "answers.csv").write_text("id,label\n" + "".join(f"{n}.jpg,{c}\n" for n, c, _ in answers))
    partial.rename(comp)
    return comp


def kit(*args, check: bool = True) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "kit", *map(str, args)]
    print("$ kit " + " ".join(map(str, args)), flush=True)
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    if check and result.returncode:
        sys.exit(result.stdout + result.stderr)
    return result


def run_variant(comp: Path, work: Path, name: str, extra: list[str]) -> tuple:
    from kit.runs import sha256_file

    run = work / "runs" / name
    started = time.time()
    kit("run", comp, "--runs-dir", work / "runs", "--name", name, "--force", "--backbone-file", BACKBONE,
        "--trust-model", sha256_file(BACKBONE), *extra)
    seconds = time.time() - started
    score = kit("score", run / "submission.csv", work / "answers.csv").stdout.strip().splitlines()[-1]
    metrics = json.loads((run / "metrics.json").read_text())
    return metrics.get("frozen_val_score"), metrics.get("val_accuracy"), score, seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="17 class folders of the Oxford 17 flowers")
    parser.add_argument("--work", type=Path, default=Path("/tmp/kit-bench-flowers17"))
    parser.add_argument("--variants", default="default", help='";"-separated kit run arguments ("default": none)')
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    comp = build(args.source, args.work)
    rows = []
    for k, variant in enumerate(args.variants.split(";")):
        extra = [] if variant.strip() == "default" else variant.split()
        rows.append((variant, *run_variant(comp, args.work, f"v{k}", extra)))
    print(f"\n{os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}; backbone {BACKBONE.name}; "
          f"{TRAIN_PER_CLASS} train photos per class, held-out = the other 20")
    print("| kit run arguments | frozen val accuracy | kept model val accuracy | held-out (kit score) | wall s |\n"
          "|---|---|---|---|---|")
    for variant, frozen, kept, score, seconds in rows:
        print(f"| {variant} | {frozen:.4f} | {kept:.4f} | {score} | {seconds:.0f} |")


if __name__ == "__main__":
    main()
