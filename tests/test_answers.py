"""Answers other than one label (#21, first part): one probability for a binary target, decided from the sample
before training, written as P(positive), and scored by AUC or log loss."""

import pandas as pd
import pytest
from click.testing import CliRunner

from conftest import make_image, write_csv
from kit.answers import Answer, decide_answer
from kit.cli import cli
from kit.config import Config
from kit.errors import KitError

FAST = ["--epochs", "2", "--batch-size", "8", "--image-size", "8", "--augment", "none", "--learning-rate", "0.01"]


def invoke(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result


@pytest.mark.parametrize("values,classes,settings,expected", [
    (["0.5", "0.5"], ["0", "1"], {}, Answer("probability", "1")),  # Aerial Cactus: has_cactus, 0.5
    (["0", "0"], ["0", "1"], {}, Answer("probability", "1", ambiguous=True)),  # Histopathologic: 0s, AUC; or labels
    (["0.5"], ["cat", "dog"], {"positive": "dog"}, Answer("probability", "dog")),  # Redux: P(dog)
    (["0", "0"], ["0", "1"], {"submission": "label"}, Answer("label")),  # forced
    (["0", "0"], ["0", "1"], {"label_map": "0=a,1=b"}, Answer("label")),  # a label map asks for labels
    (["cat"], ["cat", "dog"], {}, Answer("label")),
    (["0", "1"], ["0", "1", "2"], {}, Answer("label")),  # three classes: a label
])
def test_the_answer_kind_comes_from_the_sample(values, classes, settings, expected):
    sample = pd.DataFrame({"id": [str(i) for i in range(len(values))], "has_cactus" if "1" in classes else "label":
                           values})
    assert decide_answer(sample, classes, Config(**settings)) == expected


def test_a_probability_of_an_unnamed_class_needs_positive():
    sample = pd.DataFrame({"id": ["1"], "label": ["0.5"]})
    with pytest.raises(KitError, match="of which class .cat or dog.. pass --positive CLASS"):
        decide_answer(sample, ["cat", "dog"], Config(), "sample_submission.csv")
    with pytest.raises(KitError, match="--positive wolf: not a class"):
        decide_answer(sample, ["cat", "dog"], Config(positive="wolf"))


def _binary_folder(root):
    """A cactus-style competition: has_cactus 0/1, the sample holding 0.5, answers kept beside the folder."""
    (root / "train").mkdir(parents=True)
    (root / "test").mkdir()
    rows = []
    for k in range(24):
        y = k % 2
        make_image("dog" if y else "cat", k, size=12).save(root / "train" / f"{k:04d}.jpg", quality=95)
        rows.append((f"{k:04d}.jpg", y))
    tests = [(f"t{j}.jpg", j % 2) for j in range(10)]
    for j, (name, y) in enumerate(tests):
        make_image("dog" if y else "cat", 100 + j, size=12).save(root / "test" / name, quality=95)
    write_csv(root / "train.csv", ["id", "has_cactus"], rows)
    write_csv(root / "sample_submission.csv", ["id", "has_cactus"], [(n, 0.5) for n, _ in tests])
    write_csv(root.parent / "answers.csv", ["id", "has_cactus"], tests)
    return root


def test_a_binary_target_gets_probabilities_scored_by_auc_and_log_loss(tmp_path):
    data = _binary_folder(tmp_path / "cactus")
    result = invoke("run", data, "--runs-dir", tmp_path / "runs", "--name", "p", *FAST)
    assert result.exit_code == 0, result.output
    assert "Submission: one probability per row, P(1); metric auc (--metric log_loss if the leaderboard" in \
        result.output  # the files cannot say which of the two the leaderboard uses
    sub = tmp_path / "runs" / "p" / "submission.csv"
    values = pd.read_csv(sub)["has_cactus"]
    assert values.between(1e-6, 1 - 1e-6).all() and values.nunique() > 2
    config = pd.read_json(tmp_path / "runs" / "p" / "config.json", typ="series")
    assert (config["submission"], config["positive"]) == ("probability", "1")  # recorded with the run
    auc = invoke("score", sub, tmp_path / "answers.csv", "--metric", "auc")
    loss = invoke("score", sub, tmp_path / "answers.csv", "--metric", "log_loss")
    assert auc.exit_code == 0 and 0.5 < float(auc.output.split(": ")[1]) <= 1.0  # two easy patterns
    assert loss.exit_code == 0 and float(loss.output.split(": ")[1]) < 0.6931  # better than a constant 0.5
    plain = invoke("score", sub, tmp_path / "answers.csv")  # accuracy by default: probabilities are not labels
    assert plain.exit_code != 0 and "holds probabilities" in plain.output and "--metric auc" in plain.output
    labels = invoke("make-submission", tmp_path / "runs" / "p", "-o", tmp_path / "labels.csv")
    assert labels.exit_code == 0
    hard = invoke("run", data, "--runs-dir", tmp_path / "runs", "--name", "l", "--submission", "label", *FAST)
    assert hard.exit_code == 0 and "Submission: one label per row" in hard.output
    assert set(pd.read_csv(tmp_path / "runs" / "l" / "submission.csv", dtype=str)["has_cactus"]) <= {"0", "1"}


def test_a_labelled_test_folder_scores_the_submission_held_out(tmp_path):
    """Intel Image Classification's seg_test/<class>/: the test images' folders are their answers, so kit run
    prints the held-out score (from RUN/test_answers.csv, under the submission's header), as for built-in sets."""
    from conftest import folder_hash, make_class_folders

    data = make_class_folders(tmp_path / "intel", n_per_class=6, n_test=0)
    for j, c in enumerate(["cat", "dog", "emu"] * 2):
        (data / "test" / c).mkdir(exist_ok=True)
        make_image(c, 900 + j, size=12).save(data / "test" / c / f"{900 + j}.jpg", quality=95)
    before = folder_hash(data)
    result = invoke("run", data, "--runs-dir", tmp_path / "runs", "--name", "i", *FAST)
    assert result.exit_code == 0, result.output
    run = tmp_path / "runs" / "i"
    answers = pd.read_csv(run / "test_answers.csv", dtype=str)
    sub = pd.read_csv(run / "submission.csv", dtype=str)
    assert list(answers.columns) == list(sub.columns) and sorted(answers.iloc[:, 0]) == sorted(sub.iloc[:, 0])
    assert answers.iloc[:, 1].tolist() == [i.split("/")[0] for i in answers.iloc[:, 0]]  # each folder is its answer
    score = (sub.set_index(sub.columns[0]).iloc[:, 0] == answers.set_index(answers.columns[0]).iloc[:, 0]).mean()
    assert f"Held-out test accuracy: {score:.4f}" in result.output
    assert folder_hash(data) == before
