"""Predictions keyed by id (never by position), through the same loader the model was trained with."""

from __future__ import annotations

import sys
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import pandas as pd

from .answers import DEFAULT_TOP_K, encode_labels, metric_context, tag_separator_of
from .metrics import Decision, chosen_tags, map_k, ranked, run_scores
from .runs import VAL_PREDICTIONS_FILE, Run, atomic_write, write_decision

# Inference needs no gradients, so batches may be large — in images of up to 96×96 px: what a batch holds at once
# grows with its pixels (EfficientNet-Lite0 at 288 px in batches of 256 peaked 2.7 GB over the model; 2026-12-03).
PREDICT_BATCH, PREDICT_BATCH_PIXELS = 256, 256 * 96 * 96


def predict_batch(image_size: int) -> int:
    """Images per prediction batch at this side: PREDICT_BATCH small images, fewer large ones (at least 8)."""
    return int(min(PREDICT_BATCH, max(8, PREDICT_BATCH_PIXELS // (image_size * image_size))))

PROBABILITY_COLUMNS_MAX = 100  # val_predictions.csv keeps one p:CLASS column per class up to this many classes,
TOP_KEPT = 10  # and beyond it the TOP_KEPT most probable classes of each row


def predict_proba(model, paths, image_size: int, channels: int, tta: int = 0, augment: str = "none",
                  progress: bool = False, first_view: int = 0) -> np.ndarray:
    """Class probabilities for each image file, in the order given; averaged over `tta` views (tta_views: drawn
    from the run's augmentation) when tta > 1, from view `first_view` on (1: all but the image itself). With
    progress, Keras' progress bar on a terminal (on stderr)."""
    from .pipeline import make_dataset

    paths = list(paths)
    if not paths:
        return np.zeros((0, model.output_shape[-1]), np.float32)
    views = tta_views(tta, augment, image_size)[first_view:] or [None]
    ds = make_dataset(paths, image_size=image_size, channels=channels, batch_size=predict_batch(image_size),
                      cache=len(views) > 1)  # decode once, reuse for every view
    verbose = 1 if progress and sys.stderr.isatty() else 0
    with redirect_stdout(sys.stderr):
        probs = np.mean([np.asarray(model.predict(ds.map(view) if view else ds, verbose=verbose), dtype=np.float64)
                         for view in views], axis=0)
    if not np.isfinite(probs).all():  # a diverged model: its answers are noise, never a submission
        from .errors import TrainingDiverged

        raise TrainingDiverged(f"model {getattr(model, 'name', '')}: predicts NaN or infinite probabilities (its "
                               "training diverged); train again with a lower --learning-rate")
    return probs


def tta_views(n: int, augment: str, image_size: int) -> list:
    """Test-time views a run has seen in training, from the augmentation it trained with: the image itself, then
    its mirror image (horizontal for --augment strong, vertical for shift-vflip), then shifts of about 8% of the
    side in the four directions and the diagonals (edges reflected; light and strong shift up to 10%,
    shift-vflip up to 40%), n views in all. A run trained without augmentation has only the image itself."""
    from .pipeline import mirror_axis
    from .quiet import tensorflow as tf

    if n <= 1 or augment not in ("light", "strong", "shift-vflip"):
        return [None]
    d = max(1, round(0.08 * image_size))

    def shift(dy, dx):
        def view(images):
            padded = tf.pad(images, [[0, 0], [d, d], [d, d], [0, 0]], mode="SYMMETRIC")
            return padded[:, d + dy: d + dy + image_size, d + dx: d + dx + image_size, :]
        return view

    mirror = mirror_axis(augment)
    views = [None] + ([lambda images: tf.reverse(images, axis=[mirror])] if mirror else [])
    views += [shift(dy, dx) for dy, dx in ((0, d), (0, -d), (d, 0), (-d, 0), (d, d), (-d, -d), (d, -d), (-d, d))]
    return views[:n]


def probability_table(ids, probs: np.ndarray, class_names: list[str]) -> pd.DataFrame:
    table = pd.DataFrame(probs, columns=class_names)
    table.insert(0, "id", list(ids))
    return table


def evaluate_validation(run_dir, val_df: pd.DataFrame, class_names: list[str], config) -> tuple[pd.DataFrame, dict]:
    """Predict the validation split with the best saved model, score it with the competition's metric, tune the
    answer's decision on it (kit.metrics), and write val_predictions.csv and thresholds.json."""
    model = Run.open(run_dir).load_model()
    probs = predict_proba(model, val_df["path"], config.image_size, config.channels)
    truth = encode_labels(val_df["label"], class_names, tag_separator_of(config))
    scores, decision = run_scores(config.metric, truth, probs, **metric_context(config, class_names))
    table = validation_table(val_df, truth, probs, class_names, config, decision)
    with atomic_write(Path(run_dir) / VAL_PREDICTIONS_FILE, newline="", encoding="utf-8") as f:
        table.to_csv(f, index=False)
    write_decision(run_dir, decision, class_names)
    return table, scores


def validation_table(val_df: pd.DataFrame, truth: np.ndarray, probs: np.ndarray, class_names: list[str], config,
                     decision: Decision) -> pd.DataFrame:
    """One row per validation image: its label, what the run answers (the label; the guesses of a top-k answer;
    the chosen tags), how sure it was, the probability it gave the truth (p_true: the likelihood of the whole tag
    set's per-tag answers for tags), and the probabilities themselves."""
    separator = tag_separator_of(config)  # truth: encode_labels of val_df's labels
    names = np.asarray(class_names, dtype=object)
    if separator:
        chosen = chosen_tags(probs, decision.thresholds)
        predicted = [separator.join(names[row]) for row in chosen]
        p = np.clip(np.where(truth > 0, probs, 1 - probs), 1e-15, 1)
        p_true, confidence = np.exp(np.log(p).mean(1)), np.where(chosen, probs, 1 - probs).mean(1)
    else:
        predicted, confidence = list(names[probs.argmax(1)]), probs.max(1)
        p_true = np.where(truth >= 0, probs[np.arange(len(probs)), np.maximum(truth, 0)], 0.0)
    table = pd.DataFrame({"id": val_df["id"].to_numpy(), "path": val_df["path"].to_numpy(),
                          "label": val_df["label"].to_numpy(), "predicted": predicted, "confidence": confidence,
                          "p_true": p_true})
    if config.submission == "top-k":
        k = map_k(config.metric) or DEFAULT_TOP_K
        unknown = metric_context(config, class_names)["unknown"]
        table["guesses"] = [" ".join(names[row]) for row in ranked(probs, k, unknown, decision.unknown_threshold)]
    if len(class_names) <= PROBABILITY_COLUMNS_MAX or separator:  # tags keep every column: thresholds need them
        for i, name in enumerate(class_names):
            table[f"p:{name}"] = probs[:, i]
    else:  # thousands of classes: a column each would make the file rows × classes large
        top = np.argsort(-probs, axis=1)[:, :TOP_KEPT]
        table["top_classes"] = [" ".join(class_names[i] for i in row) for row in top]
        table["top_probabilities"] = [" ".join(f"{p:.6g}" for p in probs[r, row]) for r, row in enumerate(top)]
    return table


def table_probabilities(table: pd.DataFrame, class_names: list[str]) -> np.ndarray:
    """The probabilities a validation table holds: every column, or each row's top classes (the rest 0)."""
    columns = [f"p:{c}" for c in class_names]
    if all(c in table.columns for c in columns):
        return table[columns].to_numpy(dtype=np.float64)
    index = {c: i for i, c in enumerate(class_names)}
    probs = np.zeros((len(table), len(class_names)))
    for r, (names, values) in enumerate(zip(table["top_classes"], table["top_probabilities"])):
        for name, value in zip(str(names).split(), str(values).split()):
            probs[r, index[name]] = float(value)
    return probs


def table_scores(table: pd.DataFrame, class_names: list[str], config) -> tuple[dict, Decision]:
    """run_scores of a validation (or out-of-fold) table."""
    truth = encode_labels(table["label"], class_names, tag_separator_of(config))
    p_true = table["p_true"].to_numpy(dtype=float) if truth.ndim == 1 else None
    return run_scores(config.metric, truth, table_probabilities(table, class_names), p_true=p_true,
                      **metric_context(config, class_names))


def images_to_predict(inputs) -> list[tuple[str, str]]:
    """(id, path) for every image to predict: a folder is read recursively (image files only; hidden files and
    __MACOSX/ left out), its ids the paths inside it; a file given by name is its own id."""
    from .errors import DataError
    from .images import is_image_name

    found = []
    for given in inputs:
        path = Path(given)
        if path.is_dir():
            inside = sorted(p for p in path.rglob("*") if p.is_file() and is_image_name(p.name) and not any(
                part.startswith(".") or part == "__MACOSX" for part in p.relative_to(path).parts))
            if not inside:
                raise DataError(f"{path}: no image files in this folder (looked for .png, .jpg, … at any depth)")
            found += [(p.relative_to(path).as_posix(), str(p)) for p in inside]
        elif path.exists() or path.is_symlink():  # inspect_image names what is not a readable image file
            found.append((str(given), str(path)))
        else:
            raise DataError(f"{path}: no such image file or folder")
    return found


def prediction_table(run: Run, items: list[tuple[str, str]], top: int | None = 3) -> pd.DataFrame:
    """One row per (id, path): the predicted label and its probability, then the next top-1 classes as label_2,
    probability_2, … (top=None: one probability column per class instead). A k-fold run averages its folds."""
    from .images import inspect_image

    for _, path in items:  # files no validation has seen: a broken one gets its one-line error here
        inspect_image(path)
    paths = [p for _, p in items]
    members = run.members()  # a k-fold run: the mean of its fold models, as its submission has it
    probs = np.mean([predict_proba(m.load_model(), paths, m.image_size, m.channels) for m in members], axis=0)
    names = np.asarray(run.class_names, dtype=object)
    order = np.argsort(-probs, axis=1)
    table = pd.DataFrame({"id": [i for i, _ in items], "label": names[order[:, 0]] if len(items) else [],
                          "probability": probs.max(1) if len(items) else []})
    if top is None:
        for i, name in enumerate(run.class_names):
            table[name] = probs[:, i]
        return table
    for rank in range(1, min(top, len(names))):
        table[f"label_{rank + 1}"] = names[order[:, rank]]
        table[f"probability_{rank + 1}"] = probs[np.arange(len(probs)), order[:, rank]]
    return table
