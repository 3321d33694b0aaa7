"""Frozen-phase epoch time: a plain frozen fit on images vs kit's head fit on cached backbone features.

Usage: python benchmarks/transfer_cache.py DATA --backbone-file MODEL.keras [--image-size 160] [--limit 1000]
   or: python benchmarks/transfer_cache.py DATA --model mobilenet_v2 --weights none
Prints one table: seconds per frozen epoch both ways, the one-off feature extraction, and the speed-up.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data")
    parser.add_argument("--backbone-file", default="")
    parser.add_argument("--model", default="backbone_file")
    parser.add_argument("--weights", default="imagenet")
    parser.add_argument("--image-size", type=int, default=160)
    parser.add_argument("--limit", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()

    from kit.data import load_competition
    from kit.pipeline import make_dataset
    from kit.transfer import build_transfer_model, extract_features

    comp = load_competition(args.data)
    train = comp.train.sample(frac=1.0, random_state=0).head(args.limit)
    index = {c: i for i, c in enumerate(comp.class_names)}
    labels = train["label"].map(index).to_numpy()
    common = dict(image_size=args.image_size, channels=3, batch_size=args.batch_size)
    ds = make_dataset(train["path"], labels, **common)
    for _ in ds:  # decode once so both ways read the same cached uint8 images
        pass

    from kit.runs import sha256_file

    trusted = (sha256_file(args.backbone_file),) if args.backbone_file else ()  # named on this command line
    tm = build_transfer_model(args.model, args.image_size, 3, len(comp.class_names), weights=args.weights,
                              backbone_file=args.backbone_file, trusted=trusted)
    tm.model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    tm.model.fit(ds.take(1), epochs=1, verbose=0)  # trace/compile outside the timing
    start = time.perf_counter()
    tm.model.fit(ds, epochs=args.epochs, verbose=0)
    plain = (time.perf_counter() - start) / args.epochs

    start = time.perf_counter()
    x, y = extract_features(tm.features, ds)
    extraction = time.perf_counter() - start
    tm.head.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    tm.head.fit(x[:args.batch_size], y[:args.batch_size], epochs=1, verbose=0)
    start = time.perf_counter()
    tm.head.fit(x, y, batch_size=args.batch_size, epochs=args.epochs, verbose=0)
    cached = (time.perf_counter() - start) / args.epochs

    n = len(train)
    print(f"\n{args.data}: {n} images at {args.image_size} px, backbone {args.backbone_file or args.model}, "
          f"{os.cpu_count()} cores")
    print(f"{'frozen phase':40s} {'s/epoch':>9s}")
    print(f"{'plain frozen fit (images)':40s} {plain:9.2f}")
    print(f"{'cached features (head only)':40s} {cached:9.3f}")
    print(f"{'one-off feature extraction':40s} {extraction:9.2f}")
    print(f"speed-up per epoch: {plain / cached:.0f}x; over {args.epochs} epochs including extraction: "
          f"{plain * args.epochs / (extraction + cached * args.epochs):.1f}x")


if __name__ == "__main__":
    main()
