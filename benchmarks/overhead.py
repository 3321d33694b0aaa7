"""kit's own overhead with the tutorials' model and epochs (#22, item 4), alternating in one run.

Usage: python benchmarks/overhead.py [--work DIR] [--rounds 3] [--epochs 3]

On the Fashion-MNIST folder of benchmarks/peers.py (12,000 training PNGs, AV layout), times whole processes:
- the tutorials' script up to its fit (load_img loop into arrays, its 2-conv CNN, `fit` with validation), against
  `kit train DATA --model simple_cnn --epochs E --batch-size 64` (the same network inside kit);
- the tutorials' whole job (also predicting the 2,400 test images and writing the submission), against
  `kit run` with the same settings.
Prints each round and the medians, with kit's time as a fraction of the tutorials'.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from peers import TUTORIAL, prepare_fashion, timed


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default="/tmp/kit-bench-peers")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    data, _ = prepare_fashion(work)
    whole, fit_only = work / "tutorial.py", work / "tutorial-fit.py"
    whole.write_text(TUTORIAL)
    fit_only.write_text(TUTORIAL[:TUTORIAL.rindex("write(")])  # everything up to predicting the test images
    kit = [sys.executable, "-m", "kit"]
    settings = ["--runs-dir", str(work / "runs"), "--name", "overhead", "--force", "--model", "simple_cnn",
                "--epochs", str(args.epochs), "--batch-size", "64"]
    pairs = {"load + fit": ([sys.executable, str(fit_only), str(data), str(args.epochs), "-"],
                            [*kit, "train", str(data), *settings]),
             "whole job": ([sys.executable, str(whole), str(data), str(args.epochs), str(work / "tutorial.csv")],
                           [*kit, "run", str(data), *settings])}
    times = {(what, side): [] for what in pairs for side in ("tutorial", "kit")}
    for round_ in range(args.rounds):
        for what, (tutorial, ours) in pairs.items():
            times[what, "tutorial"].append(timed(tutorial))
            times[what, "kit"].append(timed(ours))
            print(f"round {round_ + 1}, {what}: tutorial {times[what, 'tutorial'][-1]:.1f} s, "
                  f"kit {times[what, 'kit'][-1]:.1f} s", flush=True)
    print(f"\n| what ({args.epochs} epochs) | tutorials' script, median s | kit, median s | kit / tutorials |")
    print("|---|---|---|---|")
    for what in pairs:
        tutorial, ours = (statistics.median(times[what, side]) for side in ("tutorial", "kit"))
        print(f"| {what} | {tutorial:.1f} | {ours:.1f} | {ours / tutorial:.2f} |")


if __name__ == "__main__":
    main()
