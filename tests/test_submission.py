"""Submission building: keyed by id, the sample's header and order, labels or per-class probabilities."""

import numpy as np
import pandas as pd
import pytest

from kit.errors import OutputError, SubmissionError
from kit.submission import build_submission, check_submission, write_submission

CLASSES = ["cat", "dog"]


def probs(ids, p_cat):
    return pd.DataFrame({"id": ids, "cat": p_cat, "dog": 1 - np.asarray(p_cat)})


def test_joined_on_sample_ids_in_sample_order():
    sample = pd.DataFrame({"ImageId": ["003", "001", "002"], "Class": ["x", "x", "x"]})
    sub = build_submission(probs(["001", "002", "003"], [0.9, 0.2, 0.6]), CLASSES, sample)
    assert list(sub.columns) == ["ImageId", "Class"]
    assert sub.values.tolist() == [["003", "cat"], ["001", "cat"], ["002", "dog"]]
    assert check_submission(sub, CLASSES, sample) == "labels"


def test_probability_columns_follow_the_sample_order():
    sample = pd.DataFrame({"id": ["a", "b"], "dog": ["0", "0"], "cat": ["0", "0"]})
    sub = build_submission(probs(["a", "b"], [1.0, 0.25]), CLASSES, sample)
    assert list(sub.columns) == ["id", "dog", "cat"]
    assert sub["dog"].iloc[1] == pytest.approx(0.75)
    assert 0 < sub["dog"].iloc[0] < 1e-5  # clipped away from an exact 0 that log loss would punish
    assert check_submission(sub, CLASSES, sample) == "probabilities"


def test_missing_prediction_is_an_error():
    sample = pd.DataFrame({"id": ["a", "zz"], "label": ["cat", "cat"]})
    with pytest.raises(SubmissionError, match=r"no prediction for 1 sample id\(s\) \('zz'\)"):
        build_submission(probs(["a"], [0.5]), CLASSES, sample)


def test_check_rejects_unknown_labels_and_duplicates():
    with pytest.raises(SubmissionError, match="labels not among the classes: 'cow'"):
        check_submission(pd.DataFrame({"id": ["a"], "label": ["cow"]}), CLASSES, None)
    with pytest.raises(SubmissionError, match="duplicate ids: 'a'"):
        check_submission(pd.DataFrame({"id": ["a", "a"], "label": ["cat", "cat"]}), CLASSES, None)


def test_write_never_overwrites_without_force(tmp_path):
    sub = pd.DataFrame({"id": ["007"], "label": ["cat"]})
    path = tmp_path / "s.csv"
    write_submission(sub, path, "labels")
    assert path.read_text() == "id,label\n007,cat\n"
    with pytest.raises(OutputError, match="already exists"):
        write_submission(sub, path, "labels")
    write_submission(sub.assign(label="dog"), path, "labels", force=True)
    assert path.read_text() == "id,label\n007,dog\n"


def _over_sure(seed: int, n: int, classes: int, sharpness: float):
    """Validation-like predictions whose probabilities are `sharpness` times too sure (logits scaled), with the
    labels drawn from the honest ones: what a fine-tuned network's softmax looks like."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2, (n, classes))
    honest = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    y = np.array([rng.choice(classes, p=p) for p in honest])
    sure = np.exp(logits * sharpness) / np.exp(logits * sharpness).sum(1, keepdims=True)
    return y, sure


@pytest.mark.parametrize("seed", range(6))
def test_temperature_tuned_on_validation_undoes_over_sureness_and_keeps_every_ranking(seed):
    from kit.metrics import auc, log_loss, run_scores, soften, tune_temperature

    rng = np.random.default_rng(100 + seed)
    classes, sharpness = int(rng.integers(2, 12)), float(rng.choice([0.4, 1.0, 3.0, 6.0]))
    y, probs = _over_sure(seed, 600, classes, sharpness)
    t = tune_temperature(y, probs)
    softened = soften(probs, t)
    assert log_loss(y, softened) <= log_loss(y, probs)
    if sharpness >= 3:  # too sure: softened (t > 1), and by about the factor that made it so
        assert t > 1 and log_loss(y, softened) < 0.9 * log_loss(y, probs) and abs(np.log(t / sharpness)) < 0.5
    if sharpness < 1:  # too timid: sharpened
        assert t < 1
    assert (softened.argmax(1) == probs.argmax(1)).all() and np.allclose(softened.sum(1), 1)
    if classes == 2:
        assert auc(y, softened, 1) == pytest.approx(auc(y, probs, 1))
    scores, decision = run_scores("log_loss", y, probs)  # a log-loss run reports what it writes
    assert decision.temperature == t and scores["val_score"] == pytest.approx(log_loss(y, softened))
    assert run_scores("accuracy", y, probs)[1].temperature == t  # kept for a probability submission whatever the metric


def test_written_probabilities_take_the_temperature_and_labels_do_not():
    from kit.answers import Answer
    from kit.metrics import Decision

    table = probs(["a", "b", "c"], [0.999, 0.01, 0.7])
    soft = Decision(temperature=3.0)
    columns = build_submission(table, CLASSES, pd.DataFrame({"id": ["a", "b", "c"], "cat": 0, "dog": 0}),
                               decision=soft)
    assert 0.5 < columns["cat"].iloc[0] < 0.95 and columns["cat"].iloc[2] < 0.7  # softer, same order
    one = build_submission(table, CLASSES, pd.DataFrame({"id": ["a", "b", "c"], "p": 0.5}),
                           answer=Answer("probability", positive="dog"), decision=soft)
    assert one["p"].tolist() == pytest.approx(columns["dog"].tolist())
    labels = build_submission(table, CLASSES, pd.DataFrame({"id": ["a", "b", "c"], "label": "x"}), decision=soft)
    assert labels["label"].tolist() == ["cat", "dog", "cat"]


def test_an_edited_temperature_is_refused(tmp_path):
    from kit.errors import RunError
    from kit.metrics import Decision
    from kit.runs import DECISION_FILE, read_decision, write_decision

    write_decision(tmp_path, Decision(temperature=2.5), CLASSES)
    assert read_decision(tmp_path, CLASSES).temperature == 2.5
    for bad in ("0", "-1", "\"hot\"", "NaN"):
        (tmp_path / DECISION_FILE).write_text('{"thresholds": {}, "unknown_threshold": null, "temperature": %s}' % bad)
        with pytest.raises(RunError, match="temperature"):
            read_decision(tmp_path, CLASSES)
