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
