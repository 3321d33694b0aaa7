"""SIGKILL `kit train` at random moments, resume each time, and check the result against an uninterrupted run.

Usage: python benchmarks/kill_resume.py DATA [--kills 30] [--epochs 3] [--seed 0] [-- extra kit train flags]
  e.g. `-- --folds 2` (k-fold), `-- --backbone-file F.keras --trust-model SHA256 --fine-tune-epochs 2` (transfer)
After every kill: every file in the run folder (temporary files aside) must parse or load in full. At the end the
resumed run's final checkpoint (weights, optimizer state, dropout seeds) must equal the uninterrupted run's bit for
bit. Prints one line per kill (when, where the last checkpoint stood, whether a temporary file was caught half
written) and a summary.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

FLAGS = ["--batch-size", "16", "--augment", "light", "--deterministic", "--checkpoint-every", "2"]
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="", KIT_KEEP_CHECKPOINTS="1")  # final states compared


def kit(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "kit", *map(str, args)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=ENV)


def check_complete(run: Path) -> None:
    from kit.checkpoints import unreadable_files

    for path, reason in unreadable_files(run):
        raise SystemExit(f"INCOMPLETE FILE {path}: {reason}")


def final_arrays(run: Path) -> dict:
    """The arrays of every final checkpoint in the run (one per fold for k-fold runs), by folder."""
    states = {}
    for state in sorted(run.rglob("checkpoint.json")):
        progress = json.loads(state.read_text())
        with np.load(state.parent / progress["file"], allow_pickle=False) as arrays:
            states[str(state.parent.relative_to(run))] = [arrays[f"arr_{i}"] for i in range(len(arrays.files))]
    return states


def last_checkpoint(run: Path) -> str | None:
    """Where the newest checkpoint stands ("fold1 fine_tune epoch 3 batch 4"), or None."""
    states = sorted(run.rglob("checkpoint.json"), key=lambda p: p.stat().st_mtime_ns)
    if not states:
        return None
    p = json.loads(states[-1].read_text())
    folder = str(states[-1].parent.parent.relative_to(run))
    config = json.loads((run / "config.json").read_text())
    transfer = config.get("backbone_file") or config.get("model") not in ("baseline", "mlp", "simple_cnn", "lenet",
                                                                          "cifar_cnn")
    return (f"{folder} " if folder != "." else "") + (f"{p['phase']} phase, " if transfer else "") + \
        f"epoch {p['epoch']} batch {p['step']}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data")
    parser.add_argument("--kills", type=int, default=30)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    argv = sys.argv[1:]
    cut = argv.index("--") if "--" in argv else len(argv)  # what follows -- goes to kit train as it is
    args = parser.parse_args(argv[:cut])
    args.extra = argv[cut + 1:]
    from kit.resume import has_checkpoint

    rng = random.Random(args.seed)
    flags = FLAGS + ["--epochs", str(args.epochs)] + args.extra

    with tempfile.TemporaryDirectory() as runs:
        runs = Path(runs)
        start = time.time()
        proc = kit("train", args.data, "--runs-dir", runs, "--name", "full", *flags)
        while not has_checkpoint(runs / "full") and proc.poll() is None:
            time.sleep(0.05)
        first_checkpoint = time.time() - start
        if proc.wait() != 0:
            raise SystemExit(proc.stderr.read())
        full_seconds = time.time() - start
        print(f"uninterrupted run: {full_seconds:.0f} s, first checkpoint after {first_checkpoint:.0f} s "
              "(process start-up included)")
        # Kill anywhere from just before a process's first checkpoint to half-way through what remains.
        window = (max(0.0, first_checkpoint - 1), first_checkpoint + (full_seconds - first_checkpoint) / 2)

        kills, caught_writing, rounds = 0, 0, 0
        while kills < args.kills:  # each round: a fresh run, killed again and again until it finishes
            rounds += 1
            run = runs / f"cut{rounds}"
            proc = kit("train", args.data, "--runs-dir", runs, "--name", run.name, *flags)
            started, stalled, last = time.time(), 0, None
            while True:
                delay = rng.uniform(*window) * 1.5 ** stalled  # longer after kills that left no progress
                try:
                    code = proc.wait(timeout=delay)
                except subprocess.TimeoutExpired:
                    proc.send_signal(signal.SIGKILL)
                    proc.wait()
                    kills += 1
                    partial = [p.name for p in run.rglob(".*") if p.name != ".lock"]
                    caught_writing += bool(partial)
                    check_complete(run)
                    where = last_checkpoint(run)
                    stalled, last = (stalled + 1 if where == last else 0), where
                    print(f"round {rounds} kill {kills:>3} after {delay:5.1f} s: last checkpoint "
                          + (where or "none yet")
                          + (f"; half-written: {', '.join(partial)}" if partial else ""), flush=True)
                    info = json.loads((run / "run.json").read_text()) if (run / "run.json").is_file() else {}
                    if info.get("ended"):  # killed on its way out, after everything was written
                        break
                    if not has_checkpoint(run):  # killed before the first checkpoint: start over
                        proc = kit("train", args.data, "--runs-dir", runs, "--name", run.name, "--force", *flags)
                    else:
                        proc = kit("train", "--resume", run)
                    started = time.time()
                    continue
                if code != 0:
                    raise SystemExit(proc.stderr.read())
                if not stalled and last is None:  # a fresh run finished first: the machine got faster; aim earlier
                    window = (min(window[0], 0.5 * (time.time() - started)), 0.8 * (time.time() - started))
                break
            check_complete(run)
            full, cut = final_arrays(runs / "full"), final_arrays(run)
            same = full.keys() == cut.keys() and all(len(full[k]) == len(cut[k]) and
                                                     all(np.array_equal(a, b) for a, b in zip(full[k], cut[k]))
                                                     for k in full)
            print(f"round {rounds}: final state {'IDENTICAL' if same else 'DIFFERENT'} to the uninterrupted run's",
                  flush=True)
            if not same:
                raise SystemExit(1)
        print(f"{kills} kills in {rounds} runs ({caught_writing} while a file was being written); every file "
              "complete after each kill; every resumed run bit-identical to the uninterrupted one")


if __name__ == "__main__":
    main()
