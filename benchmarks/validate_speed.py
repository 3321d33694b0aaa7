"""Time `kit validate` (read the tables, resolve every id, decode every image fully, hash it) on a folder.

Usage: python benchmarks/validate_speed.py DATA [--repeat 2]
Prints images per second and the wall time per run; the first run reads from disk, later ones from the OS cache.
"""

import argparse
import os
import time

from kit.data import load_competition
from kit.validation import validate


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    print(f"{args.data} on {os.cpu_count()} cores")
    print(f"{'run':>4s} {'images':>8s} {'seconds':>8s} {'images/s':>9s} {'errors':>7s} {'warnings':>9s}")
    for i in range(args.repeat):
        start = time.perf_counter()
        comp = load_competition(args.data)
        report = validate(comp)
        seconds = time.perf_counter() - start
        n = len(comp.train) + (0 if comp.test is None else len(comp.test))
        print(f"{i + 1:4d} {n:8d} {seconds:8.1f} {n / seconds:9.0f} {len(report.errors):7d} {len(report.warnings):9d}")


if __name__ == "__main__":
    main()
