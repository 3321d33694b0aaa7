"""Would temperature scaling of written probabilities lower log loss? Measured on finished runs' validation tables.

Usage: python benchmarks/temperature.py RUN_DIR [RUN_DIR ...]

For each run: 30 random halvings of its val_predictions.csv; a temperature T (softmax(log p / T), T from 0.2 to 5)
is tuned for log loss on one half and scored on the other, against the raw probabilities — with any improvement,
with improvements of at least 2%, and softening only (T >= 1). Prints one row per run and the mean ratio to raw.
"""

import sys
from pathlib import Path

import numpy as np
import pandas as pd

EPS = 1e-15
TEMPERATURES = np.unique(np.append(np.geomspace(0.2, 5.0, 41), 1.0))


def log_loss(y, p):
    return float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y], EPS, 1))))


def soften(p, t):
    logits = np.log(np.clip(p, EPS, 1)) / t
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def tuned(y, p, rule):
    losses = [log_loss(y, soften(p, t)) for t in TEMPERATURES]
    allowed = [i for i, t in enumerate(TEMPERATURES) if rule != "soften" or t >= 1]
    best = min(allowed, key=lambda i: losses[i])
    needed = 0.98 if rule == "2pct" else 1.0
    return float(TEMPERATURES[best]) if losses[best] < needed * log_loss(y, p) else 1.0


def main(runs):
    rules, ratios = ("any", "2pct", "soften"), {r: [] for r in ("any", "2pct", "soften")}
    for run in runs:
        if not (Path(run) / "val_predictions.csv").is_file():
            continue
        table = pd.read_csv(Path(run) / "val_predictions.csv", dtype={"label": str})
        columns = [c for c in table.columns if c.startswith("p:")]
        names = [c[2:] for c in columns]
        if not set(table["label"]) <= set(names):
            continue
        y, p = np.array([names.index(v) for v in table["label"]]), table[columns].to_numpy(float)
        rng, scores = np.random.default_rng(0), {r: [] for r in ("raw", *rules)}
        for _ in range(30):
            order = rng.permutation(len(y))
            a, b = order[: len(y) // 2], order[len(y) // 2:]
            scores["raw"].append(log_loss(y[b], p[b]))
            for rule in rules:
                scores[rule].append(log_loss(y[b], soften(p[b], tuned(y[a], p[a], rule))))
        mean = {r: float(np.mean(v)) for r, v in scores.items()}
        for rule in rules:
            ratios[rule].append(mean[rule] / mean["raw"])
        print(f"{str(run)[-50:]:50s} n={len(y):5d} " + " ".join(f"{r} {v:.4f}" for r, v in mean.items()))
    print("mean ratio to raw:", {r: round(float(np.mean(v)), 4) for r, v in ratios.items()})


if __name__ == "__main__":
    main(sys.argv[1:])
