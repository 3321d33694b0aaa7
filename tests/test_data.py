"""Reading competition folders: layouts, id → path rules, and one bad input per validation check."""

import pytest

from conftest import make_av_folder, make_class_folders, make_digits_folder, make_image, write_csv
from kit.data import load_competition, read_table, validate
from kit.errors import DataError


def codes(report):
    return sorted(p.code for p in report.errors)


def test_av_layout_keeps_leading_zero_ids(tmp_path):
    comp = load_competition(make_av_folder(tmp_path / "c"))
    assert comp.layout == "csv" and comp.id_col == "id" and comp.label_col == "label"
    assert comp.train["id"].iloc[0] == "00000"
    assert comp.train["path"].iloc[0].endswith("train/00000.png")
    assert comp.class_names == ["cat", "dog", "emu"]
    assert comp.test_file == "test.csv" and comp.test["id"].tolist()[0] == "00024"
    report = validate(comp)
    assert report.errors == [] and report.channels == 1 and report.class_counts == {"cat": 8, "dog": 8, "emu": 8}


def test_digits_layout_with_odd_names(tmp_path):
    comp = load_competition(make_digits_folder(tmp_path / "c"))
    assert comp.id_col == "filename"
    assert comp.test_file == "Test_fCbTej3.csv" and comp.sample_file == "Sample_Submission_lxuyBuB.csv"
    assert "Images/train/0.png" in comp.train["path"].iloc[0]
    assert "Images/test/" in comp.test["path"].iloc[0]
    assert validate(comp).errors == []


def test_class_folder_layout(tmp_path):
    comp = load_competition(make_class_folders(tmp_path / "c"))
    assert comp.layout == "folders"
    assert comp.train["id"].iloc[0] == "cat/img0.jpg" and comp.train["label"].iloc[0] == "cat"
    assert sorted(comp.test["id"])[:2] == ["t0.jpg", "t1.jpg"]
    report = validate(comp)
    assert report.errors == [] and report.channels == 3


def test_class_folder_layout_without_train_dir_and_with_validation(tmp_path):
    root = tmp_path / "c"
    for split in ("train", "validation"):
        for c in ("cat", "dog"):
            (root / split / c).mkdir(parents=True)
            for k in range(3):
                make_image(c, k).save(root / split / c / f"{k}.png")
    comp = load_competition(root)
    assert len(comp.train) == 6 and len(comp.validation) == 6 and comp.test is None


def test_no_test_table_takes_ids_from_sample(av_folder):
    (av_folder / "test.csv").unlink()
    comp = load_competition(av_folder)
    assert comp.test_file == "sample_submission.csv"
    assert len(comp.test) == 6


def test_id_rules_extension_case_and_relative_paths(tmp_path):
    root = tmp_path / "c"
    (root / "images" / "sub").mkdir(parents=True)
    make_image("cat", 1).save(root / "images" / "A.JPG", format="PNG")  # id 'A' → A.JPG (upper case)
    make_image("cat", 2).save(root / "images" / "b.png")  # id 'b.png' used as given
    make_image("dog", 3).save(root / "images" / "sub" / "c.png")  # id 'sub/c.png' is a relative path
    make_image("dog", 4).save(root / "images" / "d.jpeg")
    write_csv(root / "train.csv", ["image", "label"], [("A", "cat"), ("b.png", "cat"), ("sub/c.png", "dog"),
                                                        ("d", "dog")])
    comp = load_competition(root)
    names = [p.split("images/")[-1] for p in comp.train["path"]]
    assert names == ["A.JPG", "b.png", "sub/c.png", "d.jpeg"]


def test_given_image_folder_option(tmp_path):
    root = tmp_path / "c"
    (root / "pics").mkdir(parents=True)
    for k, c in enumerate(["cat", "cat", "dog", "dog"]):
        make_image(c, k).save(root / "pics" / f"{k}.png")
    write_csv(root / "train.csv", ["id", "label"], [(k, c) for k, c in enumerate(["cat", "cat", "dog", "dog"])])
    comp = load_competition(root, train_images="pics")
    assert all("/pics/" in p for p in comp.train["path"])
    with pytest.raises(DataError, match="--train-images nope: not a folder"):
        load_competition(root, train_images="nope")


def test_bom_and_semicolon_are_read(av_folder):
    rows = [r.split(",") for r in (av_folder / "train.csv").read_text().splitlines()[1:]]
    write_csv(av_folder / "train.csv", ["id", "label"], rows, bom=True, sep=";", newline="\r\n")
    table = read_table(av_folder / "train.csv")
    assert list(table.columns) == ["id", "label"] and table["id"].iloc[0] == "00000"


def test_ambiguous_label_column_lists_columns(av_folder):
    rows = [r.split(",") + ["x"] for r in (av_folder / "train.csv").read_text().splitlines()[1:]]
    write_csv(av_folder / "train.csv", ["id", "label", "source"], rows)
    write_csv(av_folder / "sample_submission.csv", ["id", "target"], [("1", "cat")])
    with pytest.raises(DataError, match=r"train.csv: cannot tell which column is the label \(columns: id, label, "
                                        r"source\); pass --label-col NAME"):
        load_competition(av_folder)
    assert load_competition(av_folder, label_col="label").label_col == "label"


def test_missing_image_names_file_row_and_candidates(av_folder):
    (av_folder / "train" / "00003.png").unlink()
    report = validate(load_competition(av_folder))
    assert [str(p) for p in report.errors] == [
        "train.csv:5: image '00003' not found in train/ (looked for 00003, 00003.png, 00003.jpg, …)"]


def test_unreadable_image_is_named(av_folder):
    (av_folder / "train" / "00002.png").write_bytes(b"<html>not an image</html>")
    report = validate(load_competition(av_folder))
    assert codes(report) == ["unreadable_image"]
    assert str(report.errors[0]).startswith("train.csv:4: image 'train/00002.png' not a readable image")


def test_duplicate_ids(av_folder):
    lines = (av_folder / "train.csv").read_text().splitlines()
    (av_folder / "train.csv").write_text("\n".join(lines + [lines[1]]) + "\n")
    report = validate(load_competition(av_folder))
    assert codes(report) == ["duplicate_id"]
    assert str(report.errors[0]) == "train.csv:26: id '00000' appears 2 times (rows 2, 26); ids must be unique"


def test_empty_label(av_folder):
    lines = (av_folder / "train.csv").read_text().splitlines()
    lines[3] = lines[3].split(",")[0] + ","
    (av_folder / "train.csv").write_text("\n".join(lines) + "\n")
    report = validate(load_competition(av_folder))
    assert [str(p) for p in report.errors] == ["train.csv:4: empty label; every training row needs a class"]


def test_class_with_one_image(av_folder):
    lines = (av_folder / "train.csv").read_text().splitlines()
    lines[1] = lines[1].split(",")[0] + ",yak"
    (av_folder / "train.csv").write_text("\n".join(lines) + "\n")
    report = validate(load_competition(av_folder))
    assert [str(p) for p in report.errors] == [
        "train.csv:2: class 'yak' has only 1 image; need at least 2 for a stratified validation split"]


def test_test_ids_must_match_sample(av_folder):
    lines = (av_folder / "sample_submission.csv").read_text().splitlines()
    (av_folder / "sample_submission.csv").write_text("\n".join(lines[:-1] + ["99999,cat"]) + "\n")
    report = validate(load_competition(av_folder))
    assert codes(report) == ["sample_mismatch"]
    assert "1 only in the sample ('99999'), 1 only in the test set ('00029')" in str(report.errors[0])


def test_unsafe_paths_are_rejected_before_opening(av_folder):
    lines = (av_folder / "train.csv").read_text().splitlines()
    lines[1] = "../../etc/passwd,cat"
    lines[2] = "/etc/passwd,cat"
    (av_folder / "train.csv").write_text("\n".join(lines) + "\n")
    report = validate(load_competition(av_folder))
    assert [str(p) for p in report.errors] == [
        "train.csv:2: id '../../etc/passwd' goes up with '..'; ids must name files inside the data folder",
        "train.csv:3: id '/etc/passwd' is an absolute path; ids must name files inside the data folder"]


def test_not_a_folder(tmp_path):
    with pytest.raises(DataError, match="not a folder"):
        load_competition(tmp_path / "missing")


def test_empty_table(av_folder):
    (av_folder / "train.csv").write_text("id,label\n")
    with pytest.raises(DataError, match=r"^train.csv: has a header \(id, label\) but no rows$"):
        load_competition(av_folder)
