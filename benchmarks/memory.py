"""Peak memory (RSS) of `kit train` on many 224-px photos against the tutorials' load-everything approach.

Usage: python benchmarks/memory.py make PHOTOS OUT [--count 20000] [--size 224]
         writes OUT/<class>/NNNNN.jpg: PHOTOS' class folders cycled and resized to size×size, `count` in all
       python benchmarks/memory.py measure OUT [--epochs 1] [-- extra kit train flags]
         prints the peak RSS of `kit train OUT` and of loading OUT the tutorials' way (load_img + img_to_array
         into one float32 array), each in its own process
       python benchmarks/memory.py breakdown OUT [--epochs 1] [-- extra kit train flags]
         runs kit train in this process and prints the peak RSS of each stage (start-up, validation, model
         build, the training epochs, validation predictions, reports), sampled every 50 ms
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TUTORIAL = """
import sys, numpy as np, keras
from pathlib import Path
paths = sorted(p for p in Path(sys.argv[1]).rglob("*.jpg"))
size = int(sys.argv[2])
x = np.stack([keras.utils.img_to_array(keras.utils.load_img(p, target_size=(size, size))) for p in paths])
print(len(paths), x.dtype, x.nbytes)
"""


def make(args):
    from PIL import Image

    classes = sorted(p for p in Path(args.photos).iterdir() if p.is_dir())
    files = [(c.name, f) for c in classes for f in sorted(c.iterdir()) if f.suffix.lower() in (".jpg", ".jpeg")]
    for k in range(args.count):
        label, source = files[k % len(files)]
        out = Path(args.out) / label / f"{k:05d}.jpg"
        out.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(source) as im:
            im = im.convert("RGB").resize((args.size, args.size), Image.BILINEAR)
            if k >= len(files):  # a different crop-free copy: mirrored and shifted in brightness
                im = im.transpose(Image.FLIP_LEFT_RIGHT).point(lambda v, s=k // len(files): min(255, v + 3 * s))
            im.save(out, quality=90)
    print(f"wrote {args.count} images of {args.size}x{args.size} into {args.out}")


def peak_rss_of(command) -> tuple[float, float, str]:
    """(peak RSS in GB, seconds, last output line) of a child process."""
    start = time.time()
    result = subprocess.run(command, capture_output=True, text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    if result.returncode != 0:
        raise SystemExit(result.stdout[-2000:] + result.stderr[-2000:])
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20  # KiB → GiB, largest child so far
    return peak, time.time() - start, (result.stdout.strip().splitlines() or [""])[-1]


def measure(args):
    n = sum(1 for _ in Path(args.out).rglob("*.jpg"))
    print(f"{args.out}: {n} images, {os.cpu_count()} cores")
    rows = []
    with tempfile.TemporaryDirectory() as runs:
        # kit first: RUSAGE_CHILDREN reports the largest child so far, so the smaller one must run first.
        rows.append(("kit train", *peak_rss_of([sys.executable, "-m", "kit", "train", args.out, "--runs-dir", runs,
                                                "--name", "m", "--epochs", str(args.epochs), "--image-size",
                                                str(args.size), *args.extra])))
    rows.append(("tutorial: load everything as float32", *peak_rss_of([sys.executable, "-c", TUTORIAL, args.out,
                                                                       str(args.size)])))
    print(f"{'':40}{'peak RSS GB':>12}{'seconds':>9}")
    for name, peak, seconds, _ in rows:
        print(f"{name:40}{peak:>12.2f}{seconds:>9.0f}")


def breakdown(args):
    """Peak RSS per stage of one `kit train`, from /proc/self/status sampled in a thread."""
    import threading

    def rss_gb() -> float:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 2**20

    stages: list[list] = [["python + TensorFlow + kit imports", 0.0]]
    done = threading.Event()

    def sample():
        while not done.is_set():
            stages[-1][1] = max(stages[-1][1], rss_gb())
            time.sleep(0.05)

    def stage(name, fn):
        def wrapped(*a, **k):
            stages.append([name, rss_gb()])
            try:
                return fn(*a, **k)
            finally:
                stages.append([f"after {name}", rss_gb()])
        return wrapped

    threading.Thread(target=sample, daemon=True).start()
    import keras

    import kit.predict
    import kit.reports
    import kit.training
    from kit.config import Config

    kit.training.load_and_validate = stage("validation", kit.training.load_and_validate)
    keras.Model.fit = stage("fit (decode + train epochs)", keras.Model.fit)
    kit.predict.predict_validation = stage("validation predictions", kit.predict.predict_validation)
    kit.reports.write_reports = stage("reports", kit.reports.write_reports)
    with tempfile.TemporaryDirectory() as runs:
        flags = dict(zip(args.extra[0::2], args.extra[1::2]))
        config = Config(data=args.out, runs_dir=runs, name="m", epochs=args.epochs, image_size=args.size,
                        **{k.lstrip("-").replace("-", "_"): type(getattr(Config, k.lstrip("-").replace("-", "_")))(v)
                           for k, v in flags.items()}).validate()
        kit.training.train(config, log=lambda *_: None)
    done.set()
    print(f"{'stage':45}{'peak RSS GB':>12}")
    for name, peak in stages:
        print(f"{name:45}{peak:>12.2f}")
    print(f"{'whole process (ru_maxrss)':45}{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:>12.2f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("make")
    m.add_argument("photos")
    m.add_argument("out")
    m.add_argument("--count", type=int, default=20000)
    m.add_argument("--size", type=int, default=224)
    for name in ("measure", "breakdown"):
        r = sub.add_parser(name)
        r.add_argument("out")
        r.add_argument("--epochs", type=int, default=1)
        r.add_argument("--size", type=int, default=224)
    argv = sys.argv[1:]
    cut = argv.index("--") if "--" in argv else len(argv)  # what follows -- goes to kit train as it is
    args = parser.parse_args(argv[:cut])
    args.extra = argv[cut + 1:]
    {"make": make, "measure": measure, "breakdown": breakdown}[args.command](args)


if __name__ == "__main__":
    main()
