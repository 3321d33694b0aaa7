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
from .errors import ImageError, RunError, stage, warn
from .images import read_image
from .runs import (
    CURVES_PNG,
    HISTORY_FILE,
    MATRIX_CSV,
    MATRIX_PNG,
    OOF_FILE,
    REPORT_HTML,
    RUN_INFO_FILE,
    SUBMISSION_FILE,
    SUBMISSION_INFO_FILE,
    VALIDATION_FILE,
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
    # class names are text, never markup: a class called $\notacommand$ must not reach mathtext (or TeX)
    matplotlib.rcParams.update({"text.parse_math": False, "text.usetex": False})
    import matplotlib.pyplot as plt

    return plt


def _save_figure(make, path: Path) -> list[Path]:
    """Draw a figure and save it; a figure that cannot be drawn is a warning, never the end of the run (the
    model, its submission and the rest of the report do not depend on it)."""
    try:
        fig = make()
        with atomic_write(path, "wb") as f:
            fig.savefig(f, format="png", dpi=110, bbox_inches="tight")
        _plt().close(fig)
        return [path]
    except Exception as e:  # matplotlib's layout or font code on names kit cannot foresee
        warn(f"{path}: could not draw this figure ({type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''}"
             "); the run, its submission and the rest of the report are unaffected")
        return []


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


@stage("writing the report")
def write_reports(run_dir, out_dir=None) -> list[Path]:
    """Write classification_report.{txt,json}, confusion_matrix.{csv,png} (not for tags), curves.png and
    report.html into out_dir (default: the run folder itself); return their paths. The run folder is only read."""
    run_dir = Path(run_dir)
    out = Path(out_dir) if out_dir else run_dir
    class_names = read_class_names(run_dir)
    pred = read_val_predictions(run_dir)
    separator = tag_separator_of(read_config(run_dir))
    text, per_class = _classification_report(pred, class_names, separator)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_write(out / REPORT_TEXT, encoding="utf-8") as f:
        f.write(text)
    write_json(out / REPORT_JSON, per_class)
    written = [out / REPORT_TEXT, out / REPORT_JSON]
    if not separator:  # tags have no confusion matrix: an image may hold several
        written += _write_confusion_matrix(out, pred, class_names)

    history_path = run_dir / HISTORY_FILE
    if history_path.exists():
        written += _save_figure(lambda: _curves_figure(pd.read_csv(history_path), kept_epoch(read_metrics(run_dir))),
                                out / CURVES_PNG)
    with atomic_write(out / REPORT_HTML, encoding="utf-8") as f:
        f.write(render_html(run_dir, pred, class_names, files=out))
    written.append(out / REPORT_HTML)
    return written


def write_html(run_dir) -> Path:
    """report.html again from the run's report files (after kit run wrote its submission and scored it)."""
    run_dir = Path(run_dir)
    with atomic_write(run_dir / REPORT_HTML, encoding="utf-8") as f:
        f.write(render_html(run_dir, read_val_predictions(run_dir), read_class_names(run_dir)))
    return run_dir / REPORT_HTML


def report_text(run_dir) -> str:
    """The classification report as text, computed from the run folder without writing anything."""
    run_dir = Path(run_dir)
    class_names, separator = read_class_names(run_dir), tag_separator_of(read_config(run_dir))
    read_metrics(run_dir)  # a damaged metrics.json is named here too, as when the report files are written
    return _classification_report(read_val_predictions(run_dir), class_names, separator)[0]


def kept_epoch(metrics: dict) -> int | None:
    """The epoch whose model the run kept (best on validation), when the run recorded it."""
    epoch = metrics.get("best_epoch")
    return epoch if isinstance(epoch, int) and not isinstance(epoch, bool) and epoch > 0 else None


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
    return [run_dir / MATRIX_CSV] + _save_figure(lambda: _confusion_figure(matrix, shown, len(class_names)),
                                                 run_dir / MATRIX_PNG)


def wrong_answers(pred: pd.DataFrame, separator: str) -> pd.Series:
    """Rows whose answer differs from the truth (as sets of tags for multi-label)."""
    if not separator:
        return pred["label"] != pred["predicted"]
    return pred["label"].map(lambda t: set(split_tags(t, separator))) != \
        pred["predicted"].map(lambda t: set(split_tags(t, separator)))


def render_html(run_dir: Path, pred: pd.DataFrame, class_names: list[str], worst: int = 24, files=None) -> str:
    """One self-contained page (images embedded): summary, submission, validation's warnings, per-class table,
    plots, worst mistakes, the settings that differ from the defaults. `files`: where the report's own files
    (classification_report.json, the PNGs) are, by default the run folder."""
    files = Path(files) if files else Path(run_dir)
    run_config = read_config(run_dir)
    config, separator = vars(run_config), tag_separator_of(run_config)
    per_class = read_json(files / REPORT_JSON)
    wrong = wrong_answers(pred, separator)
    parts = [summary_html(run_dir, per_class, wrong), _submission_html(run_dir), _validation_html(run_dir)]
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
    kept = kept_epoch(read_metrics(run_dir))
    curves = f"Learning curves (the model of epoch {kept} is kept)" if kept else "Learning curves"
    for title, name in (("Confusion matrix", MATRIX_PNG), (curves, CURVES_PNG)):
        if (files / name).exists():
            plots.append(f"<div><h2>{title}</h2><img class=plot alt='{title}' src='{_png_data_uri(files / name)}'>"
                         "</div>")
    parts.append("<section id=plots class=cols>" + "".join(plots) + "</section>")
    parts.append(_doctor_note(config.get("data")))
    parts.append(_mistakes(pred[wrong].sort_values("p_true").head(worst), int(wrong.sum()),
                           int(config.get("channels") or 3)))
    parts.append(_settings_html(config))
    parts.append(_versions_html(run_dir))
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>kit report · {escape(run_dir.name)}"
            f"</title><meta name=viewport content='width=device-width,initial-scale=1'><style>{CSS}</style></head>"
            f"<body><main>{''.join(parts)}</main></body></html>\n")


def summary_html(run_dir, per_class: dict | None = None, wrong: pd.Series | None = None) -> str:
    """The report's head: the run's name, model and data, and the metric cards (also Run._repr_html_'s)."""
    run_dir = Path(run_dir)
    run_config = read_config(run_dir)
    config = vars(run_config)
    if per_class is None or wrong is None:
        pred = read_val_predictions(run_dir)
        per_class = _classification_report(pred, read_class_names(run_dir), tag_separator_of(run_config))[1]
        wrong = wrong_answers(pred, tag_separator_of(run_config))
    metrics = read_metrics(run_dir)
    cards = _cards(metrics, per_class, wrong, tag_separator_of(run_config))
    held_out = _submission_info(run_dir).get("held_out")
    if isinstance(held_out, dict) and finite_number(held_out.get("score")) is not None:
        cards.insert(0, (f"held-out test {held_out.get('metric', '')}", f"{held_out['score']:.4f}"))
    return (f"<h1>{escape(run_dir.name)}</h1><div class=sub>{escape(config.get('model', ''))} · "
            f"{config.get('image_size')}×{config.get('image_size')}×{config.get('channels')} · "
            f"{escape(str(config.get('data', '')))}</div>"
            "<section id=metrics><div class=cards>" + "".join(
                f"<div class=card><span>{escape(k)}</span><b>{escape(v)}</b></div>" for k, v in cards)
            + "</div></section>")


def _submission_info(run_dir) -> dict:
    """RUN/submission.json (kit run's record), else what RUN/submission.csv holds, else {}."""
    run_dir = Path(run_dir)
    try:
        info = read_json(run_dir / SUBMISSION_INFO_FILE) if (run_dir / SUBMISSION_INFO_FILE).is_file() else {}
    except RunError:
        info = {}
    if isinstance(info, dict) and info:
        return info
    if (run_dir / SUBMISSION_FILE).is_file():
        with open(run_dir / SUBMISSION_FILE, encoding="utf-8") as f:
            return {"path": str(run_dir / SUBMISSION_FILE), "rows": max(0, sum(1 for _ in f) - 1)}
    return {}


def _submission_html(run_dir) -> str:
    info = _submission_info(run_dir)
    if not info:
        return ("<h2>Submission</h2><section id=submission><p>None written yet: <code>kit make-submission "
                f"{escape(str(run_dir))} DATA -o submission.csv</code></p></section>")
    held_out = info.get("held_out") if isinstance(info.get("held_out"), dict) else None
    score = (f"<p>Held-out test {escape(str(held_out.get('metric')))}: <b>{float(held_out['score']):.4f}</b> "
             f"(against {escape(str(held_out.get('answers')))})</p>" if held_out else "")
    columns = f", columns {escape(', '.join(map(str, info['columns'])))}" if info.get("columns") else ""
    return (f"<h2>Submission</h2><section id=submission><p><code>{escape(str(info.get('path')))}</code>: "
            f"{escape(str(info.get('rows')))} rows{columns}</p>{score}</section>")


def _validation_html(run_dir) -> str:
    """Validation's summary and warnings, from RUN/validation.json when the run has one."""
    path = Path(run_dir) / VALIDATION_FILE
    try:
        info = read_json(path) if path.is_file() else None
    except RunError:
        info = None
    if not isinstance(info, dict):
        return ""
    warnings = [str(w) for w in info.get("warnings") or []]
    count = info.get("count", len(warnings))
    items = "".join(f"<li>{escape(w)}</li>" for w in warnings)
    more = f"<p>{int(count) - len(warnings)} more in <code>kit validate</code>.</p>" if isinstance(count, int) and \
        count > len(warnings) else ""
    return (f"<h2>Validation</h2><section id=validation><p>{escape(str(info.get('summary', '')))}</p>"
            + (f"<p>{count} warning(s):</p><ul>{items}</ul>{more}" if warnings else "<p>No warnings.</p>")
            + "</section>")


def _settings_html(config: dict) -> str:
    """The settings that differ from kit's defaults; the rest folded away."""
    from .config import Config

    defaults = vars(Config())
    changed = {k: v for k, v in config.items() if defaults.get(k, object()) != v}
    same = {k: v for k, v in config.items() if k not in changed}

    def table(values: dict) -> str:
        return "<table>" + "".join(f"<tr><td>{escape(k)}</td><td>{escape(str(v))}</td></tr>"
                                   for k, v in values.items()) + "</table>"

    return (f"<h2>Settings</h2><section id=config><p>{len(changed)} differ from the defaults (chosen by you or by "
            f"kit from the data):</p>{table(changed)}<details><summary>The other {len(same)} settings, at their "
            f"defaults</summary>{table(same)}</details></section>")


def _versions_html(run_dir) -> str:
    """kit, TensorFlow and Keras versions, from run.json."""
    try:
        info = read_json(Path(run_dir) / RUN_INFO_FILE)
    except RunError:
        return ""
    packages = info.get("packages") if isinstance(info, dict) and isinstance(info.get("packages"), dict) else {}
    if not isinstance(info, dict) or not info.get("kit"):
        return ""
    shown = [f"kit {info['kit']}"] + [f"{name} {packages[key]}" for key, name in
                                      (("tensorflow", "TensorFlow"), ("keras", "Keras")) if packages.get(key)]
    if info.get("python"):
        shown.append(f"Python {info['python']}")
    return f"<p class=sub id=versions>Trained with {escape(', '.join(shown))}.</p>"


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
                    ("epochs", str(metrics.get("epochs_run", "–")) + (
                        f" (kept {kept_epoch(metrics)})" if kept_epoch(metrics) else "")),
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


def _curves_figure(history: pd.DataFrame, kept: int | None = None):
    """Training and validation curves over whole epochs, the kept epoch marked."""
    plt = _plt()
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    competition = [c[4:] for c in history.columns if c.startswith("val_") and c not in ("val_loss", "val_accuracy")]
    for ax, metric in zip(axes, (competition[0] if competition else "accuracy", "loss")):
        for key, style in ((metric, "-o"), (f"val_{metric}", "-s")):
            if key in history:
                ax.plot(history["epoch"], history[key], style, label=key.replace("_", " "), markersize=3)
        if kept:
            ax.axvline(kept, color="#1e7b34", linestyle="--", linewidth=1, label=f"kept: epoch {kept}")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    return fig
