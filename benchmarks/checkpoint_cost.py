"""What checkpointing costs: seconds spent writing checkpoints as a share of training time.

Usage: python benchmarks/checkpoint_cost.py DATA [--epochs 2] [--every 0 100] [--model baseline]
Trains with kit's defaults (a checkpoint at every epoch's end; --every N adds one every N batches) and prints
one row per setting: epoch seconds, checkpoints written, seconds per checkpoint, and the share of training time.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["KIT_KEEP_CHECKPOINTS"] = "1"  # measured after the run, which would otherwise delete them


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--every", type=int, nargs="+", default=[0, 100])
    parser.add_argument("--model", default="baseline")
    args = parser.parse_args()

    import kit.checkpoints
    from kit.config import Config
    from kit.training import train

    real = kit.checkpoints.save_checkpoint
    spent: list[float] = []

    def timed_save(*a, **k):
        start = time.perf_counter()
        try:
            return real(*a, **k)
        finally:
            spent.append(time.perf_counter() - start)

    kit.checkpoints.save_checkpoint = timed_save
    rows = []
    with tempfile.TemporaryDirectory() as runs:
        for every in args.every:
            spent.clear()
            config = Config(data=args.data, model=args.model, epochs=args.epochs, checkpoint_every=every,
                            runs_dir=runs, name=f"every{every}").validate()
            result = train(config, log=lambda *_: None)
            seconds = result.metrics["train_seconds"]
            size = sum(p.stat().st_size for p in (result.run_dir / "checkpoints").glob("*.npz")) / 1e6
            rows.append((every, seconds / args.epochs, len(spent), sum(spent) / max(1, len(spent)),
                         100 * sum(spent) / seconds, size))
    print(f"{args.data}: {args.model}, {args.epochs} epochs, {os.cpu_count()} cores")
    print(f"{'checkpoint every':<18}{'s/epoch':>9}{'written':>9}{'s each':>9}{'% of training':>15}{'MB':>8}")
    for every, epoch, count, each, share, size in rows:
        label = "epoch end" if not every else f"{every} batches"
        print(f"{label:<18}{epoch:>9.1f}{count:>9}{each:>9.3f}{share:>15.2f}{size:>8.1f}")


if __name__ == "__main__":
    main()
