"""Submissions: a join of predictions onto the sample's ids, in the sample's exact shape, checked, written atomically."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .answers import (
    YES,
    Answer,
    are_probabilities,
    checked_label_map,
    decide_answer,
    encode_labels,
    metric_context,
    tag_separator_of,
)
from . import metrics
from .data import Competition, ReadOptions, load_competition, read_table, split_tags, tag_separator
from .metrics import (
    TAG_METRICS,
    Decision,
    check_metric,
    chosen_tags,
    f_beta_samples,
    map_k,
    mean_average_precision,
    ranked,
)
from .errors import DataError, SubmissionError, stage
from .outputs import check_output, record_written
from .runs import SUBMISSION_FILE, atomic_write


@dataclass
class SubmissionResult:
    path: Path
    rows: int
    columns: list[str]
    kind: str  # "labels", "probability", "probabilities", "top-k" or "tags"


def _few(values, n=3) -> str:
    values = sorted(values)
    return ", ".join(f"'{v}'" for v in values[:n]) + (", …" if len(values) > n else "")


def build_submission(probs: pd.DataFrame, class_names: list[str], sample: pd.DataFrame | None,
                     id_col: str = "id", label_col: str = "label", answer: Answer = Answer("label"),
                     clip: float = 1e-6, decision: Decision = Decision()) -> pd.DataFrame:
    """The answer (a label, P(positive), one probability per class, the top k classes, or the chosen tags) on
    the sample's ids, in its order. Probabilities are averaged before this (ensembles, folds, TTA), so every kind
    thresholds or ranks the average."""
    columns = list(sample.columns) if sample is not None else [id_col, label_col]
    ids = sample[columns[0]].tolist() if sample is not None else probs["id"].tolist()
    by_id = probs.set_index("id")
    missing = set(ids) - set(by_id.index)
    if missing:
        raise SubmissionError(f"no prediction for {len(missing)} sample id(s) ({_few(missing)}); their test images "
                              "are missing")
    ordered = by_id.loc[ids, class_names].to_numpy()
    if len(columns) > 2:
        if set(columns[1:]) != set(class_names):
            raise SubmissionError(f"sample submission columns ({', '.join(columns)}) are neither id + label nor "
                                  f"id + one column per class ({', '.join(class_names)})")
        # log-loss leaderboards reject exact 0/1 (infinite loss), so keep a tiny margin.
        clipped = np.clip(ordered, max(clip, 1e-12), 1.0)
        clipped /= clipped.sum(1, keepdims=True)
        out = pd.DataFrame(clipped, columns=class_names)[columns[1:]]
        out.insert(0, columns[0], ids)
        return out
    return pd.DataFrame({columns[0]: ids, columns[1]: _values(ordered, class_names, answer, clip, decision)})


def _values(probs: np.ndarray, class_names: list[str], answer: Answer, clip: float, decision: Decision) -> list:
    """The one value column: P(positive), the top k classes or the chosen tags (joined), or the label."""
    names = np.asarray(class_names, dtype=object)
    if answer.kind == "probability":  # log loss punishes exact 0 and 1 without end
        return list(np.clip(probs[:, class_names.index(answer.positive)], clip, 1.0 - clip))
    if answer.kind == "top-k":
        unknown = class_names.index(answer.unknown) if answer.unknown else None
        return [" ".join(names[row]) for row in ranked(probs, answer.k, unknown, decision.unknown_threshold)]
    if answer.kind == "tags":  # in class (sorted) order: stable from run to run
        return [answer.separator.join(names[row]) for row in chosen_tags(probs, decision.thresholds)]
    return list(names[probs.argmax(1)])


def check_submission(sub: pd.DataFrame, class_names: list[str], sample: pd.DataFrame | None,
                     answer: Answer = Answer("label")) -> str:
    """Reject what a leaderboard would reject; returns "labels", "probability", "probabilities", "top-k" or
    "tags"."""
    if sample is not None:
        if list(sub.columns) != list(sample.columns):
            raise SubmissionError(f"header {list(sub.columns)} differs from the sample's {list(sample.columns)}")
        if sub.iloc[:, 0].tolist() != sample.iloc[:, 0].tolist():
            raise SubmissionError("ids differ from the sample submission's ids or order")
    ids = sub.iloc[:, 0]
    if ids.duplicated().any():
        raise SubmissionError(f"duplicate ids: {_few(set(ids[ids.duplicated()]))}")
    if sub.isna().to_numpy().any():
        raise SubmissionError("submission has empty values")
    if len(sub.columns) == 2 and answer.kind in ("top-k", "tags"):
        words = [v.split(answer.separator or " ") for v in sub.iloc[:, 1]]
        unknown = {w for row in words for w in row} - set(class_names)
        if unknown:
            raise SubmissionError(f"{answer.kind}: not among the classes: {_few(unknown)}")
        if answer.kind == "top-k" and any(len(row) != len(set(row)) or len(row) > answer.k for row in words):
            raise SubmissionError(f"top-k: every row needs at most {answer.k} distinct classes")
        return answer.kind
    if len(sub.columns) == 2 and answer.kind == "probability":
        values = sub.iloc[:, 1].to_numpy(dtype=float)
        if not np.isfinite(values).all() or (values < 0).any() or (values > 1).any():
            raise SubmissionError("probabilities must be finite and within 0..1")
        return "probability"
    if len(sub.columns) == 2:
        unknown = set(sub.iloc[:, 1]) - set(class_names)
        if unknown:
            raise SubmissionError(f"labels not among the classes: {_few(unknown)}")
        return "labels"
    values = sub.iloc[:, 1:].to_numpy(dtype=float)
    if not np.isfinite(values).all() or (values < 0).any() or (values > 1).any():
        raise SubmissionError("probabilities must be finite and within 0..1")
    return "probabilities"


def write_submission(sub: pd.DataFrame, path, kind: str, force: bool = False, data_dirs=()) -> SubmissionResult:
    """Write the checked submission atomically; never into a data folder, never over a file kit did not write."""
    path = check_output(path, "--output", force, data_dirs)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, newline="", encoding="utf-8") as f:
        sub.to_csv(f, index=False, float_format="%.6f" if kind in ("probability", "probabilities") else None,
                   lineterminator="\n")
    record_written(path)
    return SubmissionResult(path=path, rows=len(sub), columns=list(sub.columns), kind=kind)


@stage("writing the submission")
def make_submission(run_dirs, data=None, output=None, force: bool = False, weights=None, tta: int = 0,
                    log=None, trusted=(), competition: Competition | None = None) -> SubmissionResult:
    """Predict DATA's test images with one run, all folds of a k-fold run, or a weighted ensemble of runs,
    and write a checked submission.csv. `trusted`: sha256s of model files to load despite their manifests.
    `competition`: DATA as `kit run` has just read and validated it (not read and checked a second time)."""
    from .predict import probability_table
    from .runs import Run
    from .validation import images_named_on_failure

    runs = [Run.open(r, trusted) for r in (run_dirs if isinstance(run_dirs, (list, tuple)) else [run_dirs])]
    weights = ensemble_weights(runs, weights)
    class_names = runs[0].class_names
    for run in runs[1:]:
        if run.class_names != class_names:
            raise SubmissionError(f"{run.path}: its classes differ from {runs[0].path}'s; cannot average them")
        if run.config.label_map != runs[0].config.label_map:
            raise SubmissionError(f"{run.path}: its --label-map ({run.config.label_map or 'none'}) differs from "
                                  f"{runs[0].path}'s ({runs[0].config.label_map or 'none'}); an ensemble writes one "
                                  "kind of label, so train them alike")
    cfg = runs[0].config
    output = Path(output) if output else runs[0].path / SUBMISSION_FILE
    data_dirs = {data or cfg.data, *(r.config.data for r in runs)}
    check_output(output, "--output", force, data_dirs)  # before any work
    comp = competition or _checked_test_set(data or cfg.data, cfg)
    with images_named_on_failure(comp.test["path"]):
        total = _averaged_probabilities(runs, weights, comp.test["path"], tta, log)
    probs = probability_table(comp.test["id"], total, class_names)
    # the run's answer (older runs: decided now), thresholded or ranked as validation tuned it
    answer = decide_answer(comp.sample, class_names, cfg, comp.sample_file, comp.tag_separator)
    decision = ensemble_decision(runs, weights)
    sub = build_submission(probs, class_names, comp.sample, comp.id_col, comp.label_col, answer, cfg.clip, decision)
    label_map = checked_label_map(cfg, class_names, answer)
    if label_map and len(sub.columns) == 2:  # the values the leaderboard expects
        sub[sub.columns[1]] = sub[sub.columns[1]].map(lambda c: label_map.get(c, c))
    kind = check_submission(sub, [label_map.get(c, c) for c in class_names], comp.sample, answer)
    return write_submission(sub, output, kind, force=force, data_dirs=data_dirs)


def _checked_test_set(data, cfg) -> Competition:
    """DATA read with the run's reading options, its test images validated."""
    from .validation import validate

    comp = load_competition(data, ReadOptions.of(cfg))
    if comp.test is None:
        raise DataError(f"{comp.root}: no test table, sample submission or test/ folder to predict")
    report = validate(comp, check_train=False)
    if report.errors:
        raise DataError(f"{report.errors[0]}" + (f" (and {len(report.errors) - 1} more)" if len(report.errors) > 1 else ""))
    return comp


def _averaged_probabilities(runs, weights: list[float], paths, tta: int, log) -> np.ndarray:
    """The weighted mean of the runs' probabilities (a k-fold run: the mean of its folds'), each member with TTA
    where TTA helps it on its own validation split."""
    from .predict import predict_proba

    total = np.zeros((len(paths), len(runs[0].class_names)))
    shown = bool(log) and not getattr(log, "quiet", False)
    for run, weight in zip(runs, weights):
        members = run.members()
        for member in members:
            model = member.load_model()
            views = tta_that_helps(member, model, tta, log) if tta > 1 else 0
            if log:
                log(f"Predicting {len(paths)} test images with {member.path}"
                    + (f" ({views} TTA views)" if views > 1 else ""))
            total += (weight / len(members)) * predict_proba(model, paths, member.image_size, member.channels,
                                                             tta=views, augment=member.config.augment,
                                                             progress=shown)
    return total


def run_tta(config) -> int:
    """The TTA views `kit run` tries for its own submission: a pretrained backbone trained with mirrored views
    (photos) is tried on the mirror image too (used only when it helps on validation: tta_that_helps); anything
    else predicts the image alone. On the 17-class flower competition the mirror view raised held-out accuracy in
    4-fold cross-validation from 93.8% to 94.3% with the plain head (benchmarks/RESULTS.md, 2026-12-03)."""
    from .pipeline import mirror_axis
    from .transfer import is_transfer

    return 2 if is_transfer(config.model) and mirror_axis(config.augment) else 0


def _views_of_validation(run, model, val, tta: int) -> np.ndarray:
    """The validation images' probabilities averaged over the TTA views: the image itself as the run's
    validation table holds it (when it holds every class's column) and the other views predicted now."""
    from .predict import predict_proba, tta_views

    cfg, columns = run.config, [f"p:{c}" for c in run.class_names]
    if not all(c in val.columns for c in columns):  # thousands of classes keep only each row's top ones
        return predict_proba(model, val["path"], run.image_size, run.channels, tta=tta, augment=cfg.augment)
    n = len(tta_views(tta, cfg.augment, run.image_size))
    others = predict_proba(model, val["path"], run.image_size, run.channels, tta=tta, augment=cfg.augment,
                           first_view=1)
    return (val[columns].to_numpy(dtype=np.float64) + (n - 1) * others) / n


def tta_that_helps(run, model, tta: int, log=None) -> int:
    """tta when its views (drawn from the augmentation the run trained with) score better than the plain image on
    the run's validation split by the run's metric, else 0 — said in the log either way."""
    from .predict import table_scores, tta_views
    from .reports import read_val_predictions

    say = log or (lambda message: None)
    cfg = run.config
    if len(tta_views(tta, cfg.augment, run.image_size)) == 1:
        say(f"No TTA for {run.path}: it trained without augmentation (--augment {cfg.augment}), so every view "
            "would be an image of a kind it never saw")
        return 0
    val = read_val_predictions(run.path)
    if not all(Path(p).is_file() for p in val["path"]):
        say(f"No TTA for {run.path}: its validation images are no longer all there to check that TTA helps")
        return 0
    plain = table_scores(val, run.class_names, cfg)[0]["val_score"]  # the run's own validation probabilities
    views = _views_of_validation(run, model, val, tta)
    truth = encode_labels(val["label"], run.class_names, tag_separator_of(cfg))
    scores = [plain, metrics.evaluate(cfg.metric, truth, views, **metric_context(cfg, run.class_names))[0]]
    helps = scores[1] < scores[0] if metrics.lower_is_better(cfg.metric) else scores[1] > scores[0]
    say(f"TTA ({tta} views) on {run.path}'s validation split: {cfg.metric} {scores[0]:.4f} without, {scores[1]:.4f} "
        f"with; {'used' if helps else 'not used'}")
    return tta if helps else 0


def ensemble_weights(runs, weights) -> list[float]:
    """The weights normalised to sum to 1 (scaled by the largest first, so 1e308,1e308 is 0.5,0.5, not NaN)."""
    if not weights:
        return [1.0 / len(runs)] * len(runs)
    finite = all(isinstance(w, (int, float)) and np.isfinite(w) and w >= 0 for w in weights)
    if len(weights) != len(runs) or not finite or max(weights) <= 0:
        raise SubmissionError(f"--weights: give {len(runs)} finite non-negative numbers (one per run, not all 0), "
                              f"not {list(weights)}")
    scaled = [w / max(weights) for w in weights]
    return [w / sum(scaled) for w in scaled]


def ensemble_decision(runs, weights: list[float]) -> Decision:
    """How an ensemble's averaged probabilities become answers: one run's (a k-fold run's is tuned on its
    out-of-fold predictions); several runs validated on the same ids are tuned again on their averaged validation
    probabilities; otherwise the weighted mean of their thresholds."""
    from .predict import table_scores
    from .runs import read_decision

    decisions = [read_decision(r.path, r.class_names) for r in runs]
    if len(runs) == 1:
        return decisions[0]
    mean = averaged_validation(runs, weights)
    if mean is not None:
        return table_scores(mean.assign(p_true=1.0), runs[0].class_names, runs[0].config)[1]  # p_true: unused here
    thresholds = tuple(np.average([d.thresholds for d in decisions], axis=0, weights=weights)) \
        if all(d.thresholds for d in decisions) else ()
    unknown = [d.unknown_threshold for d in decisions]
    return Decision(thresholds, float(np.average(unknown, weights=weights)) if None not in unknown else None)


def averaged_validation(runs, weights: list[float]) -> pd.DataFrame | None:
    """The runs' validation (or out-of-fold) tables with the weighted mean of their p:CLASS columns, in id order,
    when the runs were validated on the same ids and kept every class' column; None otherwise."""
    from .reports import read_val_predictions

    tables = [read_val_predictions(r.path).set_index("id") for r in runs]
    ids = sorted(tables[0].index)
    if any(sorted(t.index) != ids for t in tables[1:]):
        return None
    columns = [f"p:{c}" for c in runs[0].class_names]
    if any(c not in t.columns for t in tables for c in columns):  # many classes: only each row's top ones kept
        return None
    mean = tables[0].loc[ids].copy()
    mean[columns] = sum(w * t.loc[ids, columns].to_numpy(dtype=float) for w, t in zip(weights, tables))
    return mean.reset_index()


def ensemble_validation_accuracy(run_dirs, weights=None) -> float | None:
    """Accuracy of the weighted average of the runs' validation (or out-of-fold) probabilities, when the runs were
    validated on the same ids; None otherwise."""
    from .runs import Run

    runs = [Run.open(r) for r in run_dirs]
    mean = averaged_validation(runs, ensemble_weights(runs, weights))
    if mean is None:
        return None
    probs = mean[[f"p:{c}" for c in runs[0].class_names]].to_numpy()
    predicted = np.asarray(runs[0].class_names)[probs.argmax(1)]
    return float((predicted == mean["label"].to_numpy()).mean())


def _binary_score(name: str, truth: list[str], scores: pd.Series, metric: str, positive: str) -> float:
    """AUC or log loss of one probability per row against binary answers; the positive answer is --positive, or
    the one that means yes (1, true, yes)."""
    values = pd.to_numeric(scores, errors="coerce").to_numpy(dtype=float)
    if np.isnan(values).all():
        raise SubmissionError(f"{name}: holds labels ('{scores.iloc[0]}'), not probabilities; {metric} scores one "
                              "probability per row (use --metric accuracy for labels)")
    if not np.isfinite(values).all() or (values < 0).any() or (values > 1).any():
        raise SubmissionError(f"{name}: probabilities must be finite numbers within 0..1")
    kinds = sorted(set(truth))
    chosen = positive or next((k for k in kinds if k.strip().lower() in YES), "")
    if len(kinds) != 2 or chosen not in kinds:
        raise SubmissionError(f"{name}: {metric} needs two answer values and the positive one ({', '.join(kinds)}); "
                              "pass --positive VALUE")
    y, probs = np.array([int(t == chosen) for t in truth]), np.stack([1 - values, values], 1)
    return metrics.auc(y, probs, 1) if metric == "auc" else metrics.log_loss(y, probs)


def _guesses_score(name: str, truth: list[str], answers: list[str], metric: str) -> float:
    """MAP@k of space-separated guesses against one true class per row, or mean F-beta of tags against true tags
    (separated by spaces, | or ; as the answer key separates them)."""
    k = map_k(metric)
    if k:
        guesses = [a.split() for a in answers]
        long = next((i for i, g in enumerate(guesses) if len(g) > k or len(set(g)) != len(g)), None)
        if long is not None:
            raise SubmissionError(f"{name}:{long + 2}: {metric} takes at most {k} distinct guesses per row, found "
                                  f"'{' '.join(guesses[long])}'")
        vocabulary = {c: i for i, c in enumerate(sorted(set(truth) | {g for row in guesses for g in row}))}
        matrix = np.full((len(truth), k), -1)
        for r, row in enumerate(guesses):
            matrix[r, :len(row)] = [vocabulary[g] for g in row]
        return mean_average_precision(np.array([vocabulary[t] for t in truth]), matrix)
    separator = tag_separator(truth, "tags")
    true_tags = [split_tags(t, separator) for t in truth]
    given = [split_tags(a, separator) for a in answers]
    vocabulary = sorted({t for row in true_tags + given for t in row})
    return f_beta_samples(encode_labels([separator.join(r) for r in true_tags], vocabulary, separator) > 0,
                          encode_labels([separator.join(r) for r in given], vocabulary, separator) > 0,
                          TAG_METRICS[metric])


@stage("scoring the submission")
def score_submission(submission_path, answers_path, metric: str = "accuracy", positive: str = "") -> float:
    """Score a submission against an answer key the way a leaderboard would, after the same checks; every metric
    is kit.metrics'."""
    if metric == "auto":
        raise SubmissionError("--metric auto: name the competition's metric to score with")
    check_metric(metric)
    name = Path(submission_path).name
    answers = read_table(Path(answers_path))
    if len(answers.columns) < 2:
        raise SubmissionError(f"{Path(answers_path).name}: one column ({answers.columns[0]}); an answer key holds the "
                              "ids and the true answer of each")
    sub = _aligned(read_table(Path(submission_path)), answers, name)
    truth, one_hot = _answer_key_truth(answers, Path(answers_path).name)
    if map_k(metric) or metric in TAG_METRICS:
        if len(sub.columns) != 1:
            raise SubmissionError(f"{name}: {metric} needs one column of space-separated "
                                  f"{'guesses' if map_k(metric) else 'tags'}, not {len(sub.columns)}")
        return _guesses_score(name, truth, sub.iloc[:, 0].tolist(), metric)
    if len(sub.columns) == 1 and (metric == "auc" or (metric == "log_loss" and are_probabilities(sub.iloc[:, 0]))):
        return _binary_score(name, truth, sub.iloc[:, 0], metric, positive)
    if metric == "qwk" and len(sub.columns) != 1:
        raise SubmissionError(f"{name}: qwk needs one column of integer grades, not {len(sub.columns)}")
    if len(sub.columns) == 1:
        if not one_hot and list(sub.columns) != list(answers.columns[1:]):
            raise SubmissionError(f"{name}: header {[answers.columns[0]] + list(sub.columns)} differs from the "
                                  f"expected {list(answers.columns)}")
        values = sub.iloc[:, 0].astype(str)
        if not set(values) <= set(truth) and are_probabilities(values):
            raise SubmissionError(f"{name}: holds probabilities ({_few(set(values))}), not labels; score them with "
                                  "--metric auc or --metric log_loss (and --positive VALUE unless the answer is 1, "
                                  "true or yes)")
        return _labels_score(name, truth, values.tolist(), metric)
    if one_hot and sorted(map(str, sub.columns)) != sorted(one_hot):
        raise SubmissionError(f"{name}: probability columns {sorted(map(str, sub.columns))} differ from the answer "
                              f"key's one-hot classes {sorted(one_hot)}")
    return _probabilities_score(name, truth, sub, metric)


def _answer_key_truth(answers: pd.DataFrame, key_name: str) -> tuple[list[str], list[str]]:
    """Each row's true answer, and the classes when the key is one-hot: one 0/1 column per class after the id,
    exactly one 1 a row (Plant Pathology's and State Farm's solution files, train.csv's form); else the second
    column's values and no classes (id,label; further columns such as Usage are not answers)."""
    values = answers.iloc[:, 1:]
    numbers = values.apply(lambda column: pd.to_numeric(column, errors="coerce"))
    if values.shape[1] < 2 or not numbers.isin([0, 1]).all().all():
        return answers.iloc[:, 1].tolist(), []
    ones = numbers.sum(1).to_numpy()
    if (ones != 1).any():  # 0/1 columns that are not one class a row: neither one-hot nor id,label
        row = int(np.flatnonzero(ones != 1)[0])
        raise SubmissionError(f"{key_name}:{row + 2}: {int(ones[row])} of the 0/1 class columns are 1; a one-hot "
                              "answer key holds exactly one 1 a row (or give the key as id,label)")
    classes = [str(c) for c in values.columns]
    return [classes[i] for i in numbers.to_numpy().argmax(1)], classes


def _aligned(sub: pd.DataFrame, answers: pd.DataFrame, name: str) -> pd.DataFrame:
    """The submission's rows in the answer key's order, by id, once the ids are checked."""
    id_col = answers.columns[0]
    if list(sub.columns)[0] != id_col:
        raise SubmissionError(f"{name}: first column is '{sub.columns[0]}', expected '{id_col}'")
    dups = sub[id_col][sub[id_col].duplicated()]
    if len(dups):
        raise SubmissionError(f"{name}: duplicate ids: {_few(set(dups))}")
    missing, extra = set(answers[id_col]) - set(sub[id_col]), set(sub[id_col]) - set(answers[id_col])
    if missing or extra:
        raise SubmissionError(f"{name}: {len(missing)} id(s) missing ({_few(missing)}), {len(extra)} unknown "
                              f"({_few(extra)})")
    return sub.set_index(id_col).loc[answers[id_col]]


def _labels_score(name: str, truth: list[str], predicted: list[str], metric: str) -> float:
    if metric == "qwk":
        return _qwk_score(name, truth, predicted)
    classes = sorted(set(truth))
    unknown = set(predicted) - set(classes)
    if unknown:
        raise SubmissionError(f"{name}: labels not in the answer key's vocabulary: {_few(unknown)}")
    if metric == "log_loss":
        raise SubmissionError(f"{name}: log_loss needs one probability column per class, not labels")
    index = {c: i for i, c in enumerate(classes)}
    y, chosen = np.array([index[t] for t in truth]), np.eye(len(classes))[[index[p] for p in predicted]]
    return metrics.accuracy(y, chosen) if metric == "accuracy" else metrics.f1_macro(y, chosen)


def _qwk_score(name: str, truth: list[str], predicted: list[str]) -> float:
    """Quadratic weighted kappa of integer grades, ordered as numbers over the grades either side holds (as
    sklearn's cohen_kappa_score with its default labels); a grade the key lacks is a legitimate answer."""
    for side, values in ((name, predicted), ("the answer key", truth)):
        odd = next((v for v in values if not metrics.INTEGER.match(v.strip())), None)
        if odd is not None:
            raise SubmissionError(f"{name}: qwk scores integer grades; {side} holds '{odd}'")
    classes = sorted({int(v) for v in truth + predicted})
    index = {c: i for i, c in enumerate(classes)}
    return metrics.qwk(np.array([index[int(t)] for t in truth]), np.array([index[int(p)] for p in predicted]),
                       classes)


def _probabilities_score(name: str, truth: list[str], sub: pd.DataFrame, metric: str) -> float:
    """One probability column per class; rows are divided by their sum first, as Kaggle's log loss does (the
    mean column-wise AUC takes each column as it is)."""
    classes, columns = sorted(set(truth)), sorted(sub.columns)
    if not set(classes) <= set(columns) or len(columns) != len(set(columns)):
        raise SubmissionError(f"{name}: probability columns {columns} do not cover the classes {classes}")
    try:
        probs = sub[columns].to_numpy(dtype=float)
    except ValueError:
        raise SubmissionError(f"{name}: probability columns must be numbers") from None
    if not np.isfinite(probs).all() or (probs < 0).any() or (probs > 1).any():
        raise SubmissionError(f"{name}: probabilities must be finite numbers within 0..1")
    y = np.array([columns.index(t) for t in truth])
    if metric == "log_loss":
        clipped = np.clip(probs, metrics.EPS, 1)
        return metrics.log_loss(y, clipped / clipped.sum(1, keepdims=True))
    if metric == "auc":
        return metrics.mean_auc(y, probs)
    return metrics.accuracy(y, probs) if metric == "accuracy" else metrics.f1_macro(y, probs)
