"""Reports from a run folder alone: classification report, confusion matrix and learning curves."""

from __future__ import annotations

import base64
import io
from html import escape
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from .answers import encode_labels, tag_separator_of
from .data import split_tags
from .errors import ImageError, RunError
from .images import read_image
from .runs import (
    CURVES_PNG,
    HISTORY_FILE,
    MATRIX_CSV,
    MATRIX_PNG,
    OOF_FILE,
    REPORT_HTML,
    REPORT_JSON,
    REPORT_TEXT,
    VAL_PREDICTIONS_FILE,
    atomic_write,
    finite_number,
    read_class_names,
    read_config,
    read_json,
    read_decision,
    read_metrics,
    write_json,
)


def _plt():
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    return plt


def _save_figure(fig, path: Path) -> None:
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=110, bbox_inches="tight")
    _plt().close(fig)


MATRIX_CLASSES_MAX = 40  # a confusion matrix beyond this many classes shows the most frequent ones (the PNG stays
TABLE_ROWS_MAX = 100  # readable, the CSV small); report.html's per-class table likewise


def _matrix_classes(pred: pd.DataFrame, class_names: list[str]) -> list[str]:
    """The classes a confusion matrix shows: all of them, or the MATRIX_CLASSES_MAX most frequent in validation."""
    if len(class_names) <= MATRIX_CLASSES_MAX:
        return class_names
    frequent = set(pred["label"].value_counts().index[:MATRIX_CLASSES_MAX])
    return [c for c in class_names if c in frequent]


def _table_classes(per_class: dict, class_names: list[str]) -> list[str]:
    """report.html's per-class rows: every class, or the TABLE_ROWS_MAX with most validation images."""
    present = [c for c in class_names if c in per_class]
    if len(present) <= TABLE_ROWS_MAX:
        return present
    return sorted(present, key=lambda c: -per_class[c]["support"])[:TABLE_ROWS_MAX]


def read_val_predictions(run_dir) -> pd.DataFrame:
    """The run's validation predictions; for a k-fold run, its out-of-fold predictions."""
    path = Path(run_dir) / VAL_PREDICTIONS_FILE
    if not path.exists() and (Path(run_dir) / OOF_FILE).exists():
        path = Path(run_dir) / OOF_FILE
    if not path.exists():
        raise RunError(f"{path}: missing; the run has no validation predictions (did training finish?)")
    return pd.read_csv(path, dtype={"id": str, "label": str, "predicted": str}, keep_default_na=False)


def write_reports(run_dir) -> list[Path]:
    """Write classification_report.{txt,json}, confusion_matrix.{csv,png} (not for tags) and curves.png; return
    their paths."""
    run_dir = Path(run_dir)
    class_names = read_class_names(run_dir)
    pred = read_val_predictions(run_dir)
    separator = tag_separator_of(read_config(run_dir))
    text, per_class = _classification_report(pred, class_names, separator)
    with atomic_write(run_dir / REPORT_TEXT, encoding="utf-8") as f:
        f.write(text)
    write_json(run_dir / REPORT_JSON, per_class)
    written = [run_dir / REPORT_TEXT, run_dir / REPORT_JSON]
    if not separator:  # tags have no confusion matrix: an image may hold several
        written += _write_confusion_matrix(run_dir, pred, class_names)

    history_path = run_dir / HISTORY_FILE
    if history_path.exists():
        _save_figure(_curves_figure(pd.read_csv(history_path)), run_dir / CURVES_PNG)
        written.append(run_dir / CURVES_PNG)
    with atomic_write(run_dir / REPORT_HTML, encoding="utf-8") as f:
        f.write(render_html(run_dir, pred, class_names))
    written.append(run_dir / REPORT_HTML)
    return written


# ------------------------------------------------------------------------------------- report.html

CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d2330;background:#f5f6f8}
main{max-width:1100px;margin:0 auto;padding:24px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 10px;border-bottom:1px solid #dde1e7;padding-bottom:4px}
.sub{color:#5b6474;margin-bottom:16px}
.cards{display:flex;gap:12px;flex-wrap:wrap}
.card{background:#fff;border:1px solid #dde1e7;border-radius:8px;padding:10px 16px;min-width:120px}
.card b{display:block;font-size:22px} .card span{color:#5b6474;font-size:12px;text-transform:uppercase}
table{border-collapse:collapse;background:#fff;border:1px solid #dde1e7}
td,th{padding:4px 10px;border-bottom:1px solid #eef0f3;text-align:right} th{background:#f0f2f5}
td:first-child,th:first-child{text-align:left}
img.plot{max-width:100%;background:#fff;border:1px solid #dde1e7;border-radius:6px}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(120px,1fr));gap:10px}
.mistake{background:#fff;border:1px solid #dde1e7;border-radius:6px;padding:6px;font-size:12px;text-align:center}
.mistake img{width:96px;height:96px;image-rendering:pixelated;object-fit:contain}
.bad{color:#b3261e} .good{color:#1e7b34} .cols{display:flex;gap:24px;flex-wrap:wrap;align-items:flex-start}
"""


def _png_data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _thumbnail_uri(image_path: str, channels: int) -> str | None:
    try:
        arr = read_image(image_path, None, channels)
    except ImageError:
        return None
    im = Image.fromarray(arr[..., 0] if channels == 1 else arr)
    im.thumbnail((192, 192))
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _classification_report(pred: pd.DataFrame, class_names: list[str], separator: str) -> tuple[str, dict]:
    """Per-class (per-tag for multi-label) precision, recall, F1 and support, as text and as a dict."""
    from sklearn.metrics import classification_report

    if separator:
        truth, chosen = (encode_labels(pred[c], class_names, separator) for c in ("label", "predicted"))
        args = dict(y_true=truth, y_pred=chosen, labels=list(range(len(class_names))), target_names=class_names)
    else:
        args = dict(y_true=pred["label"], y_pred=pred["predicted"], labels=class_names)
    return (classification_report(**args, zero_division=0, digits=4),
            classification_report(**args, zero_division=0, output_dict=True))


def _write_confusion_matrix(run_dir: Path, pred: pd.DataFrame, class_names: list[str]) -> list[Path]:
    from sklearn.metrics import confusion_matrix

    shown = _matrix_classes(pred, class_names)
    matrix = confusion_matrix(pred["label"], pred["predicted"], labels=shown)
    frame = pd.DataFrame(matrix, index=pd.Index(shown, name="true \\ predicted"), columns=shown)
    with atomic_write(run_dir / MATRIX_CSV, newline="", encoding="utf-8") as f:
        frame.to_csv(f)
    _save_figure(_confusion_figure(matrix, shown, len(class_names)), run_dir / MATRIX_PNG)
    return [run_dir / MATRIX_CSV, run_dir / MATRIX_PNG]


def wrong_answers(pred: pd.DataFrame, separator: str) -> pd.Series:
    """Rows whose answer differs from the truth (as sets of tags for multi-label)."""
    if not separator:
        return pred["label"] != pred["predicted"]
    return pred["label"].map(lambda t: set(split_tags(t, separator))) != \
        pred["predicted"].map(lambda t: set(split_tags(t, separator)))


def render_html(run_dir: Path, pred: pd.DataFrame, class_names: list[str], worst: int = 24) -> str:
    """One self-contained page (images embedded): config, metrics, per-class table, plots, worst mistakes."""
    run_config = read_config(run_dir)
    config, separator = vars(run_config), tag_separator_of(run_config)
    per_class = read_json(run_dir / REPORT_JSON)
    wrong = wrong_answers(pred, separator)
    parts = [f"<h1>{escape(run_dir.name)}</h1><div class=sub>{escape(config.get('model', ''))} · "
             f"{config.get('image_size')}×{config.get('image_size')}×{config.get('channels')} · "
             f"{escape(str(config.get('data', '')))}</div>",
             "<section id=metrics><div class=cards>" + "".join(
                 f"<div class=card><span>{escape(k)}</span><b>{escape(v)}</b></div>"
                 for k, v in _cards(read_metrics(run_dir), per_class, wrong, separator)) + "</div></section>"]
    rows = "".join(
        f"<tr><td>{escape(c)}</td>" + "".join(f"<td>{per_class[c][k]:.3f}</td>" for k in ("precision", "recall",
                                                                                          "f1-score"))
        + f"<td>{int(per_class[c]['support'])}</td></tr>" for c in _table_classes(per_class, class_names))
    note = (f"<p>The {TABLE_ROWS_MAX} classes with most validation images of {len(class_names)}; all are in "
            f"{REPORT_TEXT}.</p>" if len(class_names) > TABLE_ROWS_MAX else "")
    parts.append(f"<h2>Per {'tag' if separator else 'class'}</h2>{note}"
                 f"{_decision_note(read_decision(run_dir, class_names), class_names, run_config.unknown_class)}"
                 "<section id=per-class><table><tr><th>class</th><th>precision</th><th>recall</th>"
                 f"<th>F1</th><th>support</th></tr>{rows}</table></section>")
    plots = []
    for title, name in (("Confusion matrix", MATRIX_PNG), ("Learning curves", CURVES_PNG)):
        if (run_dir / name).exists():
            plots.append(f"<div><h2>{title}</h2><img class=plot alt='{title}' src='{_png_data_uri(run_dir / name)}'>"
                         "</div>")
    parts.append("<section id=plots class=cols>" + "".join(plots) + "</section>")
    parts.append(_doctor_note(config.get("data")))
    parts.append(_mistakes(pred[wrong].sort_values("p_true").head(worst), int(wrong.sum()),
                           int(config.get("channels") or 3)))
    config_rows = "".join(f"<tr><td>{escape(k)}</td><td>{escape(str(v))}</td></tr>" for k, v in config.items())
    parts.append(f"<h2>Configuration</h2><section id=config><table>{config_rows}</table></section>")
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>kit report · {escape(run_dir.name)}"
            f"</title><meta name=viewport content='width=device-width,initial-scale=1'><style>{CSS}</style></head>"
            f"<body><main>{''.join(parts)}</main></body></html>\n")


def _doctor_note(data) -> str:
    """The doctor's summary line for the run's data, when `kit doctor` ran on it (kit.doctor.summary_line)."""
    from .doctor import summary_line

    line = summary_line(data) if data else None
    return f"<h2>Data</h2><section id=doctor><p>{escape(line)}</p></section>" if line else ""


def _cards(metrics: dict, per_class: dict, wrong: pd.Series, separator: str) -> list[tuple[str, str]]:
    """The headline numbers: the competition's metric first (when it is not accuracy), then the usual ones."""
    score, metric = finite_number(metrics.get("val_score")), str(metrics.get("metric", "accuracy"))
    loss, seconds = finite_number(metrics.get("val_loss")), finite_number(metrics.get("train_seconds"))
    accuracy = float(1 - wrong.mean()) if len(wrong) else 0.0
    cards = [(f"validation {metric}", f"{score:.4f}")] if score is not None and metric != "accuracy" else []
    return cards + [("validation accuracy" + (" (exact tag sets)" if separator else ""), f"{accuracy:.2%}"),
                    ("macro F1", f"{per_class.get('macro avg', {}).get('f1-score', 0):.4f}"),
                    ("validation loss", f"{loss:.4f}" if loss is not None else "–"),
                    ("epochs", str(metrics.get("epochs_run", "–"))),
                    ("training time", f"{seconds:.0f} s" if seconds is not None else "–"),
                    ("images", f"{metrics.get('num_train', '–')} train / {len(wrong)} val")]


def _decision_note(decision, class_names: list[str], unknown_class: str) -> str:
    """The thresholds tuned on validation (tags), and where the unknown class goes (top-k)."""
    note = ""
    if decision.thresholds:
        note += "<p>Thresholds tuned on validation: " + ", ".join(
            f"{escape(c)} {t:.2f}" for c, t in zip(class_names, decision.thresholds)) + "</p>"
    if decision.unknown_threshold is not None:
        note += (f"<p>{escape(unknown_class)} goes first below a top probability of "
                 f"{decision.unknown_threshold:.3f} (tuned on validation).</p>")
    return note


def _mistakes(mistakes: pd.DataFrame, total: int, channels: int) -> str:
    tiles = []
    for _, m in mistakes.iterrows():
        uri = _thumbnail_uri(m["path"], channels)
        image = f"<img alt='{escape(str(m['id']))}' src='{uri}'>" if uri else "<div>(image not found)</div>"
        tiles.append(f"<div class=mistake>{image}<div>{escape(str(m['id']))}</div><div class=good>true: "
                     f"{escape(str(m['label']))}</div><div class=bad>predicted: {escape(str(m['predicted']))} "
                     f"({m['confidence']:.0%})</div></div>")
    return (f"<h2>Worst mistakes ({len(mistakes)} of {total}, highest loss first)</h2><section id=mistakes "
            "class=grid>" + ("".join(tiles) or "<p>No mistakes on the validation split.</p>") + "</section>")


def _confusion_figure(matrix: np.ndarray, class_names: list[str], total_classes: int):
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
    ax.set_title("Confusion matrix (validation)" if total_classes == len(class_names) else
                 f"Confusion matrix (validation; the {len(class_names)} most frequent of {total_classes} classes)")
    return fig


def _curves_figure(history: pd.DataFrame):
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    competition = [c[4:] for c in history.columns if c.startswith("val_") and c not in ("val_loss", "val_accuracy")]
    for ax, metric in zip(axes, (competition[0] if competition else "accuracy", "loss")):
        for key, style in ((metric, "-o"), (f"val_{metric}", "-s")):
            if key in history:
                ax.plot(history["epoch"], history[key], style, label=key.replace("_", " "), markersize=3)
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    return fig
