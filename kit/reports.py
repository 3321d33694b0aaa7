"""Reports from a run folder alone: classification report, confusion matrix and learning curves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .errors import RunError
from .runs import atomic_write, read_json, write_json


def _plt():
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    return plt


def _save_figure(fig, path: Path) -> None:
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=110, bbox_inches="tight")
    _plt().close(fig)


def read_val_predictions(run_dir) -> pd.DataFrame:
    path = Path(run_dir) / "val_predictions.csv"
    if not path.exists():
        raise RunError(f"{path}: missing; the run has no validation predictions (did training finish?)")
    return pd.read_csv(path, dtype={"id": str, "label": str, "predicted": str}, keep_default_na=False)


def write_reports(run_dir) -> list[Path]:
    """Write classification_report.{txt,json}, confusion_matrix.{csv,png} and curves.png; return their paths."""
    from sklearn.metrics import classification_report, confusion_matrix

    run_dir = Path(run_dir)
    class_names = read_json(run_dir / "class_names.json")
    pred = read_val_predictions(run_dir)
    written = []

    text = classification_report(pred["label"], pred["predicted"], labels=class_names, zero_division=0, digits=4)
    with atomic_write(run_dir / "classification_report.txt", encoding="utf-8") as f:
        f.write(text)
    write_json(run_dir / "classification_report.json",
               classification_report(pred["label"], pred["predicted"], labels=class_names, zero_division=0,
                                     output_dict=True))
    written += [run_dir / "classification_report.txt", run_dir / "classification_report.json"]

    matrix = confusion_matrix(pred["label"], pred["predicted"], labels=class_names)
    frame = pd.DataFrame(matrix, index=pd.Index(class_names, name="true \\ predicted"), columns=class_names)
    with atomic_write(run_dir / "confusion_matrix.csv", newline="", encoding="utf-8") as f:
        frame.to_csv(f)
    _save_figure(_confusion_figure(matrix, class_names), run_dir / "confusion_matrix.png")
    written += [run_dir / "confusion_matrix.csv", run_dir / "confusion_matrix.png"]

    history_path = run_dir / "history.csv"
    if history_path.exists():
        _save_figure(_curves_figure(pd.read_csv(history_path)), run_dir / "curves.png")
        written.append(run_dir / "curves.png")
    return written


def _confusion_figure(matrix: np.ndarray, class_names: list[str]):
    plt = _plt()
    n = len(class_names)
    size = min(14, max(4, 0.45 * n + 2))
    fig, ax = plt.subplots(figsize=(size, size))
    rates = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), class_names, rotation=90 if n > 6 else 0)
    ax.set_yticks(range(n), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 30:
        for i in range(n):
            for j in range(n):
                if matrix[i, j]:
                    ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=8,
                            color="white" if rates[i, j] > 0.5 else "black")
    ax.set_title("Confusion matrix (validation)")
    return fig


def _curves_figure(history: pd.DataFrame):
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, metric in zip(axes, ("accuracy", "loss")):
        for key, style in ((metric, "-o"), (f"val_{metric}", "-s")):
            if key in history:
                ax.plot(history["epoch"], history[key], style, label=key.replace("_", " "), markersize=3)
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    return fig
