"""kit doctor: near-duplicates (re-encoded, shifted, resized copies), conflicting labels, label issues, shift, and
kit's split keeping near-duplicates together. Tiny images with planted problems; no TensorFlow."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

from conftest import write_csv
from kit.cli import cli
from kit.hashes import DUPLICATE_DISTANCE, image_signature, near_duplicates, thumb_distances, unpack

CLASSES = ("cat", "dog", "emu")


def textured(label: str, seed: int, size: int = 32, brightness: int = 0) -> Image.Image:
    """An easy class pattern (kit's test patterns) over a smooth texture of the image's own: no two alike."""
    rng = np.random.default_rng(seed)
    texture = np.asarray(Image.fromarray(rng.integers(0, 90, (4, 4), dtype=np.uint8)).resize((size, size),
                                                                                             Image.BICUBIC))
    a = texture.astype(np.int32) + rng.integers(0, 12, (size, size))
    half = size // 2
    if label == "cat":
        a[:, :half] += 130
    elif label == "dog":
        a[:half, :] += 130
    else:
        a[size // 4:3 * size // 4, size // 4:3 * size // 4] += 130
    return Image.fromarray(np.clip(a + brightness, 0, 255).astype(np.uint8), "L").convert("RGB")


def copy_of(im: Image.Image, shift=(1, 1), scale=1.0, path: Path = None, quality: int = 80) -> Image.Image:
    """A copy as people make them: moved by a pixel (the edge repeated), resized, saved as JPEG."""
    a = np.pad(np.asarray(im), [(1, 1), (1, 1), (0, 0)], mode="edge")
    a = a[1 + shift[0]:1 + shift[0] + im.height, 1 + shift[1]:1 + shift[1] + im.width]
    out = Image.fromarray(np.ascontiguousarray(a))
    if scale != 1.0:
        out = out.resize((round(im.width * scale), round(im.height * scale)), Image.BILINEAR)
    out.save(path, quality=quality)
    return out


def signature_of(path: Path) -> bytes:
    with Image.open(path) as im:
        im.load()
        return image_signature(im, path.stat().st_size)


def test_copies_are_near_and_other_images_far(tmp_path):
    original = textured("cat", 1, size=64)
    original.save(tmp_path / "a.png")
    copy_of(original, (1, -1), 1.0, tmp_path / "shifted.jpg", quality=75)
    copy_of(original, (0, 0), 0.8, tmp_path / "smaller.jpg", quality=90)
    copy_of(original, (-1, 0), 1.25, tmp_path / "both.jpg", quality=85)
    textured("cat", 2, size=64).save(tmp_path / "other.png")  # same class, another image
    thumbs = unpack([signature_of(tmp_path / n) for n in ("a.png", "shifted.jpg", "smaller.jpg", "both.jpg",
                                                          "other.png")])[0]
    d = thumb_distances(thumbs[[0, 0, 0, 0]], thumbs[[1, 2, 3, 4]])
    assert (d[:3] <= DUPLICATE_DISTANCE).all(), d
    assert d[3] > 5 * DUPLICATE_DISTANCE, d
    i, j, _ = near_duplicates(thumbs)
    assert {(a, b) for a, b in zip(i, j)} == {(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)}


def make_sick_folder(root: Path, per_class: int = 40, n_test: int = 24, test_brightness: int = 0) -> dict:
    """A competition folder with planted problems: a test image copied into train (shifted, re-encoded), a training
    image copied under another label, and flipped labels. Returns what was planted."""
    (root / "train").mkdir(parents=True)
    (root / "test").mkdir()
    rows, k = [], 0
    for c in CLASSES:
        for _ in range(per_class):
            textured(c, k).save(root / "train" / f"t{k:03d}.png")
            rows.append([f"t{k:03d}", c])
            k += 1
    test = []
    for j in range(n_test):
        textured(CLASSES[j % 3], 1000 + j, brightness=test_brightness).save(root / "test" / f"q{j:03d}.png")
        test.append(f"q{j:03d}")
    copy_of(Image.open(root / "test" / "q004.png"), (1, 0), 1.0, root / "train" / "leak.jpg", quality=80)
    rows.append(["leak", CLASSES[4 % 3]])
    copy_of(Image.open(root / "train" / "t005.png"), (0, 1), 1.25, root / "train" / "twin.jpg", quality=90)
    rows.append(["twin", "emu"])  # t005 is a cat
    flipped = {"t010": "dog", "t055": "emu", "t100": "cat"}
    rows = [[i, flipped.get(i, lab)] for i, lab in rows]
    write_csv(root / "train.csv", ["id", "label"], rows)
    write_csv(root / "test.csv", ["id"], [[t] for t in test])
    write_csv(root / "sample_submission.csv", ["id", "label"], [[t, "cat"] for t in test])
    return {"leak": ("q004", "leak"), "conflict": {"t005", "twin"}, "flipped": set(flipped)}


@pytest.fixture(scope="module")
def sick(tmp_path_factory):
    """One doctor run on the sick folder, shared by the assertions below (and its outputs)."""
    root = tmp_path_factory.mktemp("sick")
    planted = make_sick_folder(root / "data")
    out = root / "out"
    result = CliRunner().invoke(cli, ["doctor", str(root / "data"), "--json", str(out / "d.json"),
                                      "--output", str(out / "doctor.html")])
    assert result.exit_code == 0, result.output
    return root, planted, json.loads((out / "d.json").read_text()), result.output


def test_doctor_finds_the_leak_and_nothing_else(sick):
    _, planted, found, output = sick
    assert [(p["test"], p["train"]) for p in found["train_test_duplicates"]] == [planted["leak"]]
    assert found["train_test_duplicates"][0]["distance"] <= DUPLICATE_DISTANCE
    assert "leak: test q004 ~ train leak" in output


def test_doctor_finds_conflicting_duplicates(sick):
    _, planted, found, _ = sick
    groups = [g for g in found["train_duplicates"]]
    assert [set(g["ids"]) for g in groups] == [planted["conflict"]]
    assert groups[0]["conflicting"] and sorted(groups[0]["labels"]) == ["cat", "emu"]


def test_doctor_ranks_flipped_labels_first(sick):
    _, planted, found, _ = sick
    first = [x["id"] for x in found["label_issues"][:5]]
    assert planted["flipped"] <= set(first), found["label_issues"][:6]
    issue = next(x for x in found["label_issues"] if x["id"] == "t010")
    assert issue["label"] == "dog" and issue["suggested"] == "cat" and 0 < issue["score"] <= 1
    scores = [x["score"] for x in found["label_issues"]]
    assert scores == sorted(scores, reverse=True)


def test_doctor_sees_no_shift_in_a_random_split_and_writes_its_page(sick):
    root, _, found, output = sick
    assert found["shift"]["auc"] < 0.75
    page = (root / "out" / "doctor.html").read_text()
    assert "q004" in page and "data:image/jpeg;base64," in page and "Likely label errors" in page
    assert "Doctor: 1 train/test near-duplicate(s), 1 near-duplicate group(s) in train (1 with conflicting" in output


def test_validate_and_the_report_repeat_the_doctors_summary(sick):
    root, _, _, _ = sick
    from kit.reports import _doctor_note

    result = CliRunner().invoke(cli, ["validate", str(root / "data")])
    assert "Doctor (" in result.output and "1 train/test near-duplicate(s)" in result.output
    assert "1 train/test near-duplicate(s)" in _doctor_note(str(root / "data"))
    assert _doctor_note(str(root / "out")) == ""  # a folder the doctor never saw


def test_doctor_refuses_to_write_into_the_data_folder(sick):
    root, _, _, _ = sick
    result = CliRunner().invoke(cli, ["doctor", str(root / "data"), "--output", str(root / "data" / "d.html")])
    assert result.exit_code != 0 and "inside the data folder" in result.output


def test_doctor_measures_a_shifted_test_set(tmp_path):
    from kit.data import load_competition
    from kit.doctor import adversarial_validation, signatures_of
    from kit.validation import validate

    make_sick_folder(tmp_path / "data", per_class=20, n_test=30, test_brightness=60)
    comp = load_competition(str(tmp_path / "data"))
    report = validate(comp)
    train, test = (unpack(signatures_of(t, report)[1])[2] for t in (comp.train, comp.test))
    shift = adversarial_validation(train, test, list(comp.test["id"]))
    assert shift["auc"] > 0.9
    assert shift["by"][0] in ("brightness", "mean_r", "mean_g", "mean_b")
    assert len(shift["most_unlike"]) == 30


def test_label_issues_by_confident_learning():
    from kit.doctor import label_issues

    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.2, 0.8], [0.1, 0.9], [0.95, 0.05], [0.45, 0.55]])
    labels = np.array(["a", "a", "b", "b", "b", "a"])
    issues = label_issues(probs, ["a", "b"], ["0", "1", "2", "3", "4", "5"], labels)
    # thresholds: a 0.717, b 0.583. Row 4 is confidently a; row 5 (0.45/0.55) is confidently nothing: no issue
    assert [x["id"] for x in issues] == ["4"]
    assert issues[0] == {"id": "4", "label": "b", "suggested": "a", "score": 0.95, "suggested_probability": 0.95}


def test_doctor_takes_label_issues_from_a_kfold_run(tmp_path, sick):
    root, planted, _, _ = sick
    run = tmp_path / "run"
    run.mkdir()
    ids = ["t000", "t001", "t050", "t060"]
    pd.DataFrame({"id": ids, "label": ["cat", "cat", "dog", "dog"], "p:cat": [0.9, 0.1, 0.2, 0.1],
                  "p:dog": [0.05, 0.85, 0.7, 0.8], "p:emu": [0.05, 0.05, 0.1, 0.1]}).to_csv(run / "oof.csv",
                                                                                         index=False)
    result = CliRunner().invoke(cli, ["doctor", str(root / "data"), "--run", str(run), "--json",
                                      str(tmp_path / "d.json")])
    assert result.exit_code == 0, result.output
    found = json.loads((tmp_path / "d.json").read_text())
    assert [x["id"] for x in found["label_issues"]] == ["t001"]
    assert "oof.csv" in found["notes"][0] and (run / "doctor.html").is_file()


def test_split_keeps_near_duplicates_together(sick):
    from dataclasses import replace

    from kit.config import Config
    from kit.data import load_competition
    from kit.training import split_train_validation, with_near_duplicate_groups
    from kit.validation import validate

    root, _, _, _ = sick
    comp = load_competition(str(root / "data"))
    grouped = with_near_duplicate_groups(comp, validate(comp), log=lambda m: None)
    groups = grouped.train["near_duplicate_group"]
    assert groups[grouped.train["id"] == "t005"].iat[0] == groups[grouped.train["id"] == "twin"].iat[0]
    for seed in range(8):  # whichever side t005 falls on, its copy follows
        train, val = split_train_validation(grouped, Config(data=str(root / "data"), seed=seed, validation_split=0.3))
        assert {"t005", "twin"} <= set(train["id"]) or {"t005", "twin"} <= set(val["id"])
        assert len(train) + len(val) == len(comp.train)
    ungrouped = [split_train_validation(replace(comp), Config(data=str(root / "data"), seed=s, validation_split=0.3))
                 for s in range(8)]
    assert any(("t005" in set(t["id"])) != ("twin" in set(t["id"])) for t, _ in ungrouped)  # a random split can
