"""Reading competition folders: layouts, id → path rules, and one bad input per validation check."""

import pytest
from conftest import (
    make_av_folder,
    make_class_folders,
    make_digits_folder,
    make_image,
    write_csv,
)

from kit.data import load_competition, read_table
from kit.errors import DataError
from kit.validation import validate


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
    write_csv(av_folder / "train.csv", ["id", "kind", "source"], rows)
    write_csv(av_folder / "sample_submission.csv", ["id", "target"], [("1", "cat")])
    with pytest.raises(DataError, match=r"train.csv: cannot tell which column is the label \(columns: id, kind, "
                                        r"source\); pass --label-col NAME: `kit run DATA --label-col kind`"):
        load_competition(av_folder)
    assert load_competition(av_folder, label_col="kind").label_col == "kind"
    write_csv(av_folder / "train.csv", ["id", "label", "source"], rows)  # a column named label is the label
    assert load_competition(av_folder).label_col == "label"


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


def test_many_images_are_checked_in_processes_with_the_same_report(av_folder, monkeypatch):
    import kit.images
    import kit.validation

    (av_folder / "train" / "00002.png").write_bytes(b"<html>not an image</html>")
    (av_folder / "train" / "00005.png").write_bytes((av_folder / "train" / "00004.png").read_bytes())
    on_threads = validate(load_competition(av_folder))
    monkeypatch.setattr(kit.validation, "PROCESSES_FROM", 1)
    in_processes = validate(load_competition(av_folder))
    assert kit.images._process_pool is not None
    assert [str(p) for p in in_processes.problems] == [str(p) for p in on_threads.problems]
    assert {p.code for p in on_threads.problems} >= {"unreadable_image", "duplicate_image"}
    assert in_processes.fingerprint == on_threads.fingerprint


def test_repeated_identical_row_is_used_once_with_a_warning(av_folder):
    lines = (av_folder / "train.csv").read_text().splitlines()
    (av_folder / "train.csv").write_text("\n".join(lines + [lines[1]]) + "\n")
    comp = load_competition(av_folder)
    report = validate(comp)
    assert report.errors == [] and len(comp.train) == 24
    assert [str(p) for p in report.warnings] == ["train.csv:26: exact repeat of an earlier row; used once"]


def test_duplicate_ids_with_conflicting_labels(av_folder):
    lines = (av_folder / "train.csv").read_text().splitlines()
    (av_folder / "train.csv").write_text("\n".join(lines + ["00000,dog"]) + "\n")
    report = validate(load_competition(av_folder))
    assert codes(report) == ["duplicate_id"]
    assert str(report.errors[0]) == ("train.csv:26: id '00000' appears 2 times with labels cat, dog (rows 2, 26); "
                                     "ids must be unique")


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
    assert not report.errors
    assert [str(p) for p in report.warnings] == [
        "train.csv:2: 1 class(es) have a single image ('yak'); they are kept in training only, never in validation"]


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


# ----------------------------------------------------------------- catalogue of bad inputs (issue 3)


def test_float_id_matches_integer_file_with_warning(av_folder):
    text = (av_folder / "train.csv").read_text().replace("\n00005,", "\n5.0,", 1)
    (av_folder / "train.csv").write_text(text)
    (av_folder / "train" / "00005.png").rename(av_folder / "train" / "5.png")
    report = validate(load_competition(av_folder))
    assert report.errors == []
    assert [str(p) for p in report.warnings] == [
        "train.csv:7: id '5.0' looks like a number saved as a float (Excel?); matched 5.png"]


def test_scientific_notation_id_says_how_to_fix(av_folder):
    text = (av_folder / "train.csv").read_text().replace("\n00005,", "\n1.2E+05,", 1)
    (av_folder / "train.csv").write_text(text)
    report = validate(load_competition(av_folder))
    assert [str(p) for p in report.errors] == [
        "train.csv:7: id '1.2E+05' looks like Excel scientific notation, so the real id was lost; re-export the "
        "table with the id column formatted as text"]


def test_directory_named_like_an_image_and_dangling_symlink(av_folder):
    (av_folder / "train" / "00001.png").unlink()
    (av_folder / "train" / "00001.png").mkdir()
    (av_folder / "train" / "00002.png").unlink()
    (av_folder / "train" / "00002.png").symlink_to(av_folder / "gone.png")
    report = validate(load_competition(av_folder))
    assert [str(p) for p in report.errors] == [
        "train.csv:3: '00001.png' in train/ is a folder, not an image",
        "train.csv:4: image '00002' not found in train/ (looked for 00002, 00002.png, 00002.jpg, …)"]


def test_symlink_leading_outside_the_folder_is_rejected(av_folder, tmp_path):
    outside = tmp_path / "secret.png"
    make_image("cat", 99).save(outside)
    (av_folder / "train" / "00001.png").unlink()
    (av_folder / "train" / "00001.png").symlink_to(outside)
    report = validate(load_competition(av_folder))
    assert [str(p) for p in report.errors] == [
        "train.csv:3: image '00001.png' is a symlink that leads outside the data folder"]


def test_png_named_jpg_is_decoded_by_content_with_warning(av_folder):
    (av_folder / "train" / "00003.png").rename(av_folder / "train" / "00003.jpg")
    report = validate(load_competition(av_folder))
    assert report.errors == []
    assert [str(p) for p in report.warnings] == [
        "train.csv:5: image 'train/00003.jpg' holds PNG data; decoded by its content"]
    assert report.fallbacks["decoded by content, not by extension"] == 1


def test_html_saved_as_image(av_folder):
    (av_folder / "train" / "00003.png").write_text("<!DOCTYPE html><html><body>404</body></html>")
    report = validate(load_competition(av_folder))
    assert [str(p) for p in report.errors] == [
        "train.csv:5: image 'train/00003.png' not a readable image (HTML/XML text, not an image (a web page saved "
        "with an image name?))"]


def test_zero_byte_image(av_folder):
    (av_folder / "train" / "00003.png").write_bytes(b"")
    report = validate(load_competition(av_folder))
    assert [str(p) for p in report.errors] == [
        "train.csv:5: image 'train/00003.png' not a readable image (empty file (0 bytes))"]


def test_decompression_bomb_is_an_error(av_folder, monkeypatch):
    from PIL import Image

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 16×16 = 256 pixels > 2 × 100
    report = validate(load_competition(av_folder))
    assert report.errors and all(p.code == "unreadable_image" for p in report.errors)
    assert "image too large" in str(report.errors[0])


def test_fallbacks_are_counted(tmp_path):
    root = make_class_folders(tmp_path / "c", n_per_class=3)
    from PIL import Image

    Image.new("RGBA", (8, 8), (0, 0, 0, 0)).save(root / "train" / "cat" / "alpha.png")
    frames = [Image.new("L", (8, 8), v) for v in (0, 255)]
    frames[0].save(root / "train" / "dog" / "anim.gif", save_all=True, append_images=frames[1:])
    report = validate(load_competition(root))
    assert report.errors == []
    assert report.fallbacks["transparency composited on white"] == 1
    assert report.fallbacks["animation: first frame used"] == 1
    assert "fallback: animation: first frame used: 1 image(s)" in report.summary()


def test_unicode_nfd_file_name_matches_nfc_id(av_folder):
    import unicodedata

    name = unicodedata.normalize("NFD", "café")
    (av_folder / "train" / "00003.png").rename(av_folder / "train" / f"{name}.png")
    text = (av_folder / "train.csv").read_text().replace("\n00003,", "\n" + unicodedata.normalize("NFC", "café") + ",")
    (av_folder / "train.csv").write_text(text)
    assert validate(load_competition(av_folder)).errors == []


def test_duplicate_images_by_content(av_folder):
    import shutil

    shutil.copy(av_folder / "train" / "00000.png", av_folder / "train" / "00001.png")  # same class (cat)
    shutil.copy(av_folder / "train" / "00008.png", av_folder / "train" / "00002.png")  # a dog labelled cat
    shutil.copy(av_folder / "train" / "00010.png", av_folder / "test" / "00024.png")  # test image seen in train
    warnings = {p.code: str(p) for p in validate(load_competition(av_folder)).warnings}
    assert warnings["duplicate_image"] == "train.csv:3: 2 identical images (label cat): 'train/00000.png', " \
                                          "'train/00001.png'"
    assert warnings["duplicate_image_conflict"] == "train.csv:10: identical images with different labels (cat, " \
                                                   "dog): 'train/00002.png', 'train/00008.png'"
    assert warnings["train_test_duplicate"] == "test.csv:2: test image 'test/00024.png' is identical to training " \
                                               "image 'train/00010.png' (label dog)"


def test_unlisted_images_are_counted(av_folder):
    make_image("cat", 5).save(av_folder / "train" / "extra.png")
    warnings = [str(p) for p in validate(load_competition(av_folder)).warnings]
    assert warnings == ["train/extra.png: 1 image file(s) in the image folders are in no table (ignored)"]


def test_label_spaces_case_numbers_and_na_are_reported_not_merged(tmp_path):
    root = tmp_path / "c"
    (root / "train").mkdir(parents=True)
    labels = [" cat", "cat", "Cat", "Cat", "1", "1", "1.0", "1.0", "NA", "NA"]
    for k in range(len(labels)):
        make_image("cat", k).save(root / "train" / f"{k}.png")
    write_csv(root / "train.csv", ["id", "label"], list(enumerate(labels)))
    comp = load_competition(root)
    assert comp.class_names == ["1", "1.0", "Cat", "NA", "cat"]
    warnings = [str(p) for p in validate(comp).warnings]
    assert warnings == [
        "train.csv:2: 1 label(s) had spaces around them; stripped (first here)",
        "train.csv: labels 'Cat', 'cat' differ only in case, number format or invisible characters; they are kept as "
        "separate classes — fix train.csv if they are one class",
        "train.csv: labels '1', '1.0' differ only in case, number format or invisible characters; they are kept as "
        "separate classes — fix train.csv if they are one class",
        "train.csv: label 'NA' (2 rows) is kept as a class name; if it means 'missing', remove those rows"]


def test_crlf_cr_tab_and_quoted_commas(av_folder):
    rows = [r.split(",") for r in (av_folder / "train.csv").read_text().splitlines()[1:]]
    for newline in ("\r\n", "\r"):
        write_csv(av_folder / "train.csv", ["id", "label"], rows, newline=newline, sep="\t")
        assert load_competition(av_folder).train["id"].iloc[0] == "00000"
    quoted = [(i, f'"{lab}, the animal"') for i, lab in rows]
    write_csv(av_folder / "train.csv", ["id", "label"], quoted)
    assert load_competition(av_folder).class_names == ["cat, the animal", "dog, the animal", "emu, the animal"]


def test_non_utf8_table_names_line(av_folder):
    (av_folder / "train.csv").write_bytes("id,label\n00000,caf\xe9\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"^train.csv:2: not UTF-8 \(byte 0xe9\); save the file as UTF-8$"):
        load_competition(av_folder)


@pytest.mark.parametrize("value,reason", [
    ("C:\\\\x.png", "is an absolute path"),
    ("\\\\\\\\host\\\\share\\\\x.png", "is an absolute path"),
    ("https://example.org/x.png", "is a URL"),
    ("a\\x00b", "contains a NUL byte"),
])
def test_more_unsafe_paths(value, reason):
    from kit.data import unsafe_path_reason

    assert unsafe_path_reason(value.encode().decode("unicode_escape")) == reason
