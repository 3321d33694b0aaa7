"""Quadratic weighted kappa of integer grades (APTOS 2019) and the mean column-wise ROC AUC of one probability per
class (Plant Pathology 2020): the metrics against scikit-learn on random data, `kit score` with one-hot answer
keys, and one tiny run of each checking the epoch is chosen by it and recorded in history.csv and metrics.json."""

import json

import numpy as np
import pandas as pd
import pytest
from conftest import invoke, make_av_folder, one_error, write_csv
from sklearn.metrics import cohen_kappa_score, roc_auc_score

from kit.answers import Answer, decide_answer, metric_context
from kit.config import Config
from kit.errors import KitError
from kit.metrics import check_metric, evaluate, grades_of, mean_auc, qwk

FAST = ["--epochs", "2", "--batch-size", "8", "--image-size", "12", "--augment", "none"]


# ---------------------------------------------------------------------------------------------- qwk


@pytest.mark.parametrize("seed", range(6))
def test_qwk_is_sklearns_quadratic_kappa_with_classes_in_numeric_order(seed):
    rng = np.random.default_rng(seed)
    grades = sorted(rng.choice(np.arange(-3, 40), rng.integers(2, 9), replace=False).tolist())
    class_names = sorted(str(g) for g in grades)  # kit's class order is the names' string order: "10" before "9"
    n = int(rng.integers(5, 60))
    y, predicted = rng.integers(0, len(class_names), n), rng.integers(0, len(class_names), n)
    as_ints = np.array([int(c) for c in class_names])
    expected = cohen_kappa_score(as_ints[y], as_ints[predicted], labels=sorted(grades), weights="quadratic")
    assert qwk(y, predicted, grades_of(class_names)) == pytest.approx(expected, abs=1e-12)
    probs = np.eye(len(class_names))[predicted] * 0.9 + 0.1 / len(class_names)
    context = metric_context(Config(metric="qwk"), class_names)
    assert evaluate("qwk", y, probs, **context)[0] == pytest.approx(expected, abs=1e-12)
    if len(set(y)) == len(class_names):  # every grade present: sklearn's default labels are the same
        assert expected == pytest.approx(cohen_kappa_score(as_ints[y], as_ints[predicted], weights="quadratic"))


def test_qwk_orders_grades_as_numbers_not_as_strings():
    class_names = ["1", "10", "2", "9"]  # string order
    y, predicted = np.array([0, 2, 3, 1, 1]), np.array([0, 2, 1, 3, 1])  # 1 2 9 10 10 as 1 2 10 9 10
    numeric = cohen_kappa_score([1, 2, 9, 10, 10], [1, 2, 10, 9, 10], weights="quadratic")
    by_string = cohen_kappa_score(y, predicted, weights="quadratic")
    assert numeric != pytest.approx(by_string)
    assert qwk(y, predicted, grades_of(class_names)) == pytest.approx(numeric)
    assert qwk(np.zeros(4, int), np.zeros(4, int), [0, 1]) == 0.0  # one grade only: no disagreement to expect
    assert grades_of(["0", "1", "-2", "10"]) == [0, 1, -2, 10] and grades_of(["0", "1.5"]) is None


def test_qwk_is_a_metric_and_refused_for_classes_that_are_not_integers():
    assert check_metric("qwk") == "qwk"
    sample = pd.DataFrame({"id_code": ["a", "b"], "diagnosis": ["0", "0"]})
    assert decide_answer(sample, ["0", "1", "10", "2"], Config(metric="qwk")) == Answer("label")
    with pytest.raises(KitError, match="--metric qwk: scores ordered integer grades .*class 'mild' is not an integer"):
        decide_answer(sample, ["0", "mild", "severe"], Config(metric="qwk"))
    probabilities = pd.DataFrame({"id": ["a"], "0": ["0.5"], "1": ["0.5"], "2": ["0"]})
    with pytest.raises(KitError, match="--metric qwk: scores one integer grade per row"):
        decide_answer(probabilities, ["0", "1", "2"], Config(metric="qwk"))
    with pytest.raises(KitError, match="not all integers"):
        evaluate("qwk", np.array([0, 1]), np.eye(2), grades=None)


# ---------------------------------------------------------------------------------------------- auc


@pytest.mark.parametrize("seed", range(6))
def test_mean_auc_is_sklearns_macro_auc_over_the_classes_that_can_be_ranked(seed):
    rng = np.random.default_rng(100 + seed)
    k, n = int(rng.integers(3, 8)), int(rng.integers(6, 50))
    present = rng.choice(k, int(rng.integers(2, k + 1)), replace=False)  # some classes absent from validation
    y = rng.choice(present, n)
    y[:len(present)] = present  # each chosen class at least once
    probs = rng.dirichlet(np.ones(k), n)
    rankable = [c for c in range(k) if 0 < (y == c).sum() < n]
    expected = roc_auc_score(np.eye(k)[y][:, rankable], probs[:, rankable], average="macro")
    assert mean_auc(y, probs) == pytest.approx(expected, abs=1e-12)
    assert evaluate("auc", y, probs, positive=None)[0] == pytest.approx(expected, abs=1e-12)


def test_mean_auc_leaves_out_classes_with_nothing_to_rank_and_binary_auc_is_unchanged():
    probs = np.array([[0.7, 0.2, 0.1], [0.2, 0.5, 0.3], [0.6, 0.3, 0.1], [0.1, 0.8, 0.1]])
    y = np.array([0, 1, 0, 1])  # class 2 absent
    assert mean_auc(y, probs) == pytest.approx(np.mean([roc_auc_score(y == c, probs[:, c]) for c in (0, 1)]))
    assert mean_auc(np.zeros(4, int), probs) == 0.5  # class 0 in every row, the others in none
    binary = np.array([[0.9, 0.1], [0.4, 0.6], [0.3, 0.7], [0.8, 0.2]])
    assert evaluate("auc", np.array([0, 1, 0, 1]), binary, positive=1)[0] == roc_auc_score([0, 1, 0, 1], binary[:, 1])
    sample = pd.DataFrame({"image_id": ["a"], "healthy": ["0.25"], "rust": ["0.25"], "scab": ["0.5"]})
    assert decide_answer(sample, ["healthy", "rust", "scab"], Config(metric="auc")).kind == "probabilities"
    labels = pd.DataFrame({"image_id": ["a"], "label": ["rust"]})
    with pytest.raises(KitError, match="--metric auc: scores probabilities .*--submission probabilities"):
        decide_answer(labels, ["healthy", "rust", "scab"], Config(metric="auc"))


# ------------------------------------------------------------------------------------------ kit score


def _score(*args) -> float:
    result = invoke("score", *args)
    assert result.exit_code == 0, result.output
    return float(result.output.strip().splitlines()[0].split(": ")[1])  # a Note may follow on stderr


def test_kit_score_mean_columnwise_auc_against_a_one_hot_or_a_label_answer_key(tmp_path):
    rng = np.random.default_rng(7)
    classes, ids = ["healthy", "multiple_diseases", "rust", "scab"], [f"Test_{i}" for i in range(40)]
    y = rng.integers(0, 4, len(ids))
    probs = rng.dirichlet(np.ones(4), len(ids))
    write_csv(tmp_path / "sub.csv", ["image_id", *classes], [(i, *map(float, p)) for i, p in zip(ids, probs)])
    onehot = np.eye(4, dtype=int)[y]
    write_csv(tmp_path / "onehot.csv", ["image_id", *classes], [(i, *r) for i, r in zip(ids, onehot)][::-1])
    write_csv(tmp_path / "labels.csv", ["image_id", "label"], [(i, classes[c]) for i, c in zip(ids, y)])
    auc = roc_auc_score(onehot, probs, average="macro")
    for key in ("onehot.csv", "labels.csv"):
        assert _score(tmp_path / "sub.csv", tmp_path / key, "--metric", "auc") == pytest.approx(auc, abs=1e-5)
        assert _score(tmp_path / "sub.csv", tmp_path / key) == pytest.approx((probs.argmax(1) == y).mean())
        loss = -np.mean(np.log(probs[np.arange(len(y)), y] / probs.sum(1)))
        assert _score(tmp_path / "sub.csv", tmp_path / key, "--metric", "log_loss") == pytest.approx(loss, abs=1e-5)
    write_csv(tmp_path / "other.csv", ["image_id", "healthy", "rust", "scab", "spots"],
              [(i, *np.eye(4, dtype=int)[c]) for i, c in zip(ids, y)])
    one_error(invoke("score", tmp_path / "sub.csv", tmp_path / "other.csv", "--metric", "auc"),
              "differ from the answer key's one-hot classes")
    write_csv(tmp_path / "two.csv", ["image_id", *classes], [(i, 1, 1, 0, 0) for i in ids])
    one_error(invoke("score", tmp_path / "sub.csv", tmp_path / "two.csv", "--metric", "auc"),
              "two.csv:2: 2 of the 0/1 class columns are 1")


def test_kit_score_qwk_on_integer_grades(tmp_path):
    rng = np.random.default_rng(3)
    ids = [f"{i:012x}" for i in range(50)]
    truth, guess = rng.integers(0, 5, len(ids)), rng.integers(0, 5, len(ids))
    guess[0] = 10  # a grade the key never holds is still a grade, and "10" comes after "4"
    write_csv(tmp_path / "answers.csv", ["id_code", "diagnosis"], list(zip(ids, truth)))
    write_csv(tmp_path / "sub.csv", ["id_code", "diagnosis"], list(zip(ids, guess))[::-1])
    expected = cohen_kappa_score(truth, guess, weights="quadratic")
    scored = _score(tmp_path / "sub.csv", tmp_path / "answers.csv", "--metric", "qwk")
    assert scored == pytest.approx(expected, abs=1e-5)
    write_csv(tmp_path / "words.csv", ["id_code", "diagnosis"], [(i, "mild") for i in ids])
    one_error(invoke("score", tmp_path / "words.csv", tmp_path / "answers.csv", "--metric", "qwk"),
              "qwk scores integer grades; words.csv holds 'mild'")


# ------------------------------------------------------------------------------------------ end to end


def _relabelled(root, names: dict):
    """make_av_folder with its classes renamed (cat → 2, …) in train.csv and the sample."""
    data = make_av_folder(root, n_per_class=10)
    table = pd.read_csv(data / "train.csv", dtype=str)
    table["label"] = table["label"].map(names)
    table.to_csv(data / "train.csv", index=False)
    return data


def test_a_run_picks_epochs_by_qwk_and_by_mean_auc_and_records_them(tmp_path):
    runs = tmp_path / "runs"
    grades = _relabelled(tmp_path / "aptos", {"cat": "2", "dog": "9", "emu": "10"})
    result = invoke("run", grades, "--runs-dir", runs, "--name", "q", "--metric", "qwk", *FAST)
    assert result.exit_code == 0 and "Validation qwk" in result.output, result.output
    leaves = make_av_folder(tmp_path / "plants", n_per_class=10)
    sample = pd.read_csv(leaves / "sample_submission.csv", dtype=str)
    write_csv(leaves / "sample_submission.csv", ["id", "cat", "dog", "emu"],
              [(i, 0.25, 0.25, 0.5) for i in sample["id"]])
    result = invoke("run", leaves, "--runs-dir", runs, "--name", "a", "--metric", "auc", *FAST)
    assert result.exit_code == 0 and "Validation auc" in result.output, result.output
    for name, metric in (("q", "qwk"), ("a", "auc")):
        history = pd.read_csv(runs / name / "history.csv")
        metrics = json.loads((runs / name / "metrics.json").read_text())
        assert metrics["metric"] == metric and f"val_{metric}" in history, history.columns
        assert metrics[f"val_{metric}"] == pytest.approx(history[f"val_{metric}"].max(), abs=1e-6)
        val = pd.read_csv(runs / name / "val_predictions.csv", dtype={"label": str, "predicted": str})
        if metric == "qwk":  # recomputed from the written predictions by sklearn, in numeric order
            expected = cohen_kappa_score(val["label"].astype(int), val["predicted"].astype(int), weights="quadratic")
        else:
            columns = ["p:cat", "p:dog", "p:emu"]
            expected = roc_auc_score(pd.get_dummies(val["label"])[["cat", "dog", "emu"]], val[columns], average="macro")
        assert metrics["val_score"] == pytest.approx(expected, abs=1e-6)
    listing = invoke("runs", runs, "--json")
    assert {r["metric"] for r in json.loads(listing.output)} == {"qwk", "auc"}, listing.output
