"""Nothing lost, round 3 (#30): derived data never touches the user's files, one read policy and one write policy,
arguments that mean one thing, and never a traceback. Each test names the example of the issue it guards."""

import os
import shutil
import threading
import zipfile

import numpy as np
import pandas as pd
import pytest
from conftest import folder_hash, invoke, make_av_folder, make_image, one_error, write_csv
from PIL import Image

from kit import sources
from kit.config import Config
from kit.data import load_competition
from kit.errors import KitError

FAST = ["--epochs", "1", "--batch-size", "8", "--image-size", "16", "--augment", "none"]


def zip_folder(data, name, members):
    with zipfile.ZipFile(data / name, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for member in members:
            z.write(data / member, member)


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KIT_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One finished run on a folder with two exactly repeated rows (validation warns of them)."""
    tmp = tmp_path_factory.mktemp("lost")
    data = make_av_folder(tmp / "comp", n_per_class=10)
    rows = (data / "train.csv").read_text().splitlines()
    (data / "train.csv").write_text("\n".join(rows + rows[1:3]) + "\n")
    result = invoke("run", data, "--runs-dir", tmp / "runs", "--name", "r", "--learning-rate", "0.01", *FAST)
    assert result.exit_code == 0, result.output
    return tmp, data, tmp / "runs" / "r", result.output


# --------------------------------------------------------------------------- 1. derived data is kit's own


def test_a_zip_beside_its_extracted_images_never_writes_into_them(tmp_path):
    data = make_av_folder(tmp_path / "D")
    zip_folder(data, "comp.zip", [str(p.relative_to(data)) for p in sorted(data.rglob("*")) if p.is_file()])
    edited = make_image("dog", 99)
    edited.save(data / "train" / "00000.png")
    before = folder_hash(data)
    assert invoke("validate", data).exit_code == 0
    assert folder_hash(data) == before  # the edit stands: nothing was extracted over the user's image
    (data / "test").rename(tmp_path / "test-away")  # now the zip has something to add: a derived folder
    result = invoke("validate", data)
    assert result.exit_code == 0, result.output
    derived = next(p for p in (tmp_path / "cache" / "derived").glob("D-*") if p.is_dir())
    assert (derived / "train").is_symlink() and not (derived / "test").is_symlink()
    assert folder_hash(data) == {k: v for k, v in before.items() if not (k == "test" or k.startswith("test/"))}
    assert np.array_equal(np.asarray(Image.open(derived / "train" / "00000.png")), np.asarray(edited))


def test_a_linked_folder_out_plus_a_zip_is_refused_and_the_outside_file_kept(tmp_path):
    outside = tmp_path / "outside"
    make_av_folder(outside)
    data = make_av_folder(tmp_path / "D")
    zip_folder(data, "comp.zip", ["train/00000.png", "train.csv"])
    shutil.rmtree(data / "train")
    (data / "train").symlink_to(outside / "train")
    (data / "test").rename(tmp_path / "test-away")
    before = folder_hash(outside)
    one_error(invoke("validate", data), "train", "symbolic link that leads outside")
    assert folder_hash(outside) == before


def test_derived_folders_are_keyed_by_content_locked_and_cleaned(tmp_path):
    data = tmp_path / "pix"
    data.mkdir()
    rows = [[c] + list(np.full(16, 10 * i + k)) for i, c in enumerate("ab") for k in range(3)]
    write_csv(data / "train.csv", ["label"] + [f"pixel{i}" for i in range(16)], rows)
    first = sources.readable_folder(data)
    stale = first.parent / f".{first.name}.killed"  # what a kill -9 mid-build leaves
    stale.mkdir()
    shutil.rmtree(first)
    results = []
    builders = [threading.Thread(target=lambda: results.append(sources.readable_folder(data))) for _ in range(2)]
    for b in builders:
        b.start()
    for b in builders:
        b.join()
    assert results == [first, first] and first.is_dir() and not stale.exists()
    stat = (data / "train.csv").stat()
    rows[0][1] = 5  # same size, same time, other content: another derived folder
    write_csv(data / "train.csv", ["label"] + [f"pixel{i}" for i in range(16)], rows)
    os.utime(data / "train.csv", ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert (data / "train.csv").stat().st_size == stat.st_size
    assert sources.readable_folder(data) != first


# ------------------------------------------------------------------------------------- archive guards


def _stored_zip(path, members):
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as z:
        for name, data in members:
            z.writestr(name, data)


def _patched(path, offset_in_local, offset_in_central, value: bytes):
    """Rewrite a field of the (first) member in both its local and its central header."""
    raw = bytearray(path.read_bytes())
    local, central = raw.find(b"PK\x03\x04"), raw.find(b"PK\x01\x02")
    raw[local + offset_in_local:local + offset_in_local + len(value)] = value
    raw[central + offset_in_central:central + offset_in_central + len(value)] = value
    path.write_bytes(bytes(raw))


def _comp_with(tmp_path, make_zip):
    data = make_av_folder(tmp_path / "Z")
    shutil.rmtree(data / "test")
    make_zip(data / "test.zip")
    return data


@pytest.mark.parametrize("damage, words", [
    ("encrypted", "encrypted"),
    ("deflate64", "deflate64"),
    ("corrupt", "corrupt"),
    ("truncated", "not a readable zip"),
    ("symlink", "symbolic link"),
    ("many-members", "would expand to"),
    ("lying-size", "corrupt"),
])
def test_every_archive_problem_is_one_line_before_anything_is_written(tmp_path, damage, words):
    image = (tmp_path / "t.png")
    make_image("cat", 1).save(image)
    png = image.read_bytes()

    def make(path):
        if damage == "many-members":  # each member under the member limit; the archive as a whole a bomb
            with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
                for i in range(40):
                    z.writestr(f"test/{i}.bin", b"\0" * (2 << 20))
            return
        if damage == "symlink":
            info = zipfile.ZipInfo("test/link.png")
            info.external_attr = (0o120777 << 16)
            with zipfile.ZipFile(path, "w") as z:
                z.writestr(info, "/etc/passwd")
            return
        if damage == "corrupt":
            with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
                z.writestr("test/00024.png", png * 4)
            raw = bytearray(path.read_bytes())
            for i in range(60, 90):
                raw[i] ^= 0x5A
            path.write_bytes(bytes(raw))
            return
        _stored_zip(path, [("test/00024.png", png)])
        if damage == "encrypted":
            _patched(path, 6, 8, b"\x01\x00")
        elif damage == "deflate64":
            _patched(path, 8, 10, b"\x09\x00")
        elif damage == "truncated":
            path.write_bytes(path.read_bytes()[:-30])
        elif damage == "lying-size":  # claims 10 bytes, holds the whole PNG
            _patched(path, 22, 24, (10).to_bytes(4, "little"))

    data = _comp_with(tmp_path, make)
    before = folder_hash(data)
    one_error(invoke("validate", data), "test.zip", words)
    assert folder_hash(data) == before
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file() and p.suffix in (".png", ".bin")]


def test_tar_archives_are_read_with_the_same_guards(tmp_path):
    import tarfile

    data = make_av_folder(tmp_path / "T")
    with tarfile.open(data / "test.tar.gz", "w:gz") as t:
        t.add(data / "test", arcname="test")
    shutil.rmtree(data / "test")
    comp = load_competition(data)
    assert len(comp.test) == 6 and all(os.path.isfile(p) for p in comp.test["path"])
    with tarfile.open(tmp_path / "bad.tar", "w") as t:
        info = tarfile.TarInfo("test/x.png")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/passwd"
        t.addfile(info)
    (data / "test.tar.gz").unlink()
    shutil.move(tmp_path / "bad.tar", data / "test.tar")
    one_error(invoke("validate", data), "test.tar", "is a link")


# --------------------------------------------------------------------------------- read and write policy


@pytest.mark.parametrize("table", ["train.csv", "sample_submission.csv", "test.csv"])
def test_tables_linked_from_outside_are_never_read(tmp_path, table):
    data = make_av_folder(tmp_path / "D")
    outside = tmp_path / "elsewhere.csv"
    shutil.move(data / table, outside)
    (data / table).symlink_to(outside)
    one_error(invoke("validate", data), table, "symbolic link that leads outside")
    assert invoke("validate", data, "--follow-symlinks").exit_code == 0


def test_a_pixel_table_linked_from_outside_is_never_read(tmp_path):
    data = tmp_path / "pix"
    data.mkdir()
    write_csv(tmp_path / "real.csv", ["label"] + [f"pixel{i}" for i in range(16)], [["a"] + [1] * 16] * 4)
    (data / "train.csv").symlink_to(tmp_path / "real.csv")
    one_error(invoke("validate", data), "train.csv", "symbolic link that leads outside")


def test_force_never_reaches_through_a_link_in_a_run_folder(trained, tmp_path):
    _, data, run, _ = trained
    keep = tmp_path / "keep"
    (keep / "sub").mkdir(parents=True)
    (keep / "mine.csv").write_text("mine\n")
    (keep / "sub" / "f.txt").write_text("mine\n")
    link = run / "export-link"
    link.symlink_to(keep)
    try:
        before = folder_hash(keep)
        one_error(invoke("make-submission", run, "-o", link / "mine.csv", "--force"), "symbolic link")
        one_error(invoke("export", run, "-o", link / "sub", "--force"), "symbolic link")
        assert folder_hash(keep) == before
    finally:
        link.unlink()


def test_a_damaged_or_unwritable_ledger_is_named_not_blamed_on_the_file(trained, tmp_path, monkeypatch):
    _, data, run, _ = trained
    out = tmp_path / "sub.csv"
    assert invoke("make-submission", run, "-o", out).exit_code == 0
    state = tmp_path / "state"
    state.mkdir()
    (state / "written.json").write_text("{not json")
    monkeypatch.setenv("KIT_STATE_DIR", str(state))
    one_error(invoke("make-submission", run, "-o", out, "--force"), "record of the files it wrote", "damaged")


def test_kit_cache_dir_inside_the_data_folder_is_refused_in_one_short_line(tmp_path, monkeypatch):
    data = make_av_folder(tmp_path / "D")
    with zipfile.ZipFile(data / "extra.zip", "w") as z:
        z.writestr("extra/a.txt", "x")
    monkeypatch.setenv("KIT_CACHE_DIR", str(data / "cache"))
    line = one_error(invoke("validate", data), "KIT_CACHE_DIR", "inside the data folder")
    assert len(line) < 400 and not (data / "cache").exists()


# ----------------------------------------------------------------------------- arguments mean one thing


def test_ids_differing_only_in_case_are_matched_exactly(tmp_path):
    data = make_av_folder(tmp_path / "D", n_per_class=4)
    make_image("cat", 1).save(data / "train" / "A.png")
    make_image("dog", 2).save(data / "train" / "a.png")
    make_image("emu", 3).save(data / "train" / "B.png")
    make_image("cat", 4).save(data / "train" / "Ab.png")
    make_image("cat", 5).save(data / "train" / "AB.png")
    rows = [r.split(",") for r in (data / "train.csv").read_text().split()[1:]]
    write_csv(data / "train.csv", ["id", "label"], rows + [("A", "cat"), ("a", "dog"), ("b", "emu")])
    comp = load_competition(data)
    paths = dict(zip(comp.train["id"], comp.train["path"]))
    assert paths["A"].endswith("/A.png") and paths["a"].endswith("/a.png")
    assert paths["b"].endswith("/B.png") and any(p.code == "case_mismatch" for p in comp.problems)
    write_csv(data / "train.csv", ["id", "label"], rows + [("ab", "cat")])
    comp = load_competition(data)
    assert [p.code for p in comp.problems if p.severity == "error"] == ["ambiguous_case"]


@pytest.mark.parametrize("label_map, words", [
    ("cat=dog", "needs exactly the training classes"),
    ("cat=,dog=1", "each value non-empty"),
    ("cat=0", "class(es) without a value"),
    ("cat=0,dog=1,emu=3", "not a class"),
    ("cat=0,dog=0", "two classes map to the same value"),
])
def test_label_maps_are_checked_before_training(tmp_path, label_map, words):
    data = make_av_folder(tmp_path / "D", classes=("cat", "dog"))
    one_error(invoke("run", data, "--runs-dir", tmp_path / "runs", "--label-map", label_map, *FAST), words)
    assert not (tmp_path / "runs").exists()


def test_a_label_map_on_a_probability_sample_is_refused(tmp_path):
    data = make_av_folder(tmp_path / "D", classes=("cat", "dog"))
    sample = pd.read_csv(data / "sample_submission.csv", dtype=str).assign(label="0.5")
    sample.to_csv(data / "sample_submission.csv", index=False)
    one_error(invoke("run", data, "--runs-dir", tmp_path / "runs", "--label-map", "cat=0,dog=1", "--positive", "dog",
                     *FAST), "not labels")


def _named_by_class(tmp_path, names):
    data = tmp_path / "N"
    (data / "train").mkdir(parents=True)
    for k, name in enumerate(names):
        make_image("cat", k).save(data / "train" / name)
    return data


@pytest.mark.parametrize("pattern, words", [
    ("^(cat)?", "takes no part"),
    ("^(a|aa)+$", "backtracks"),
    ("(", "not a regular expression"),
    ("^(c)(a)", "exactly one group"),
])
def test_label_from_name_patterns_are_one_line_never_a_hang(tmp_path, pattern, words):
    data = _named_by_class(tmp_path, ["dog.1.png", "cat.2.png", "a" * 34 + ".png"])
    one_error(invoke("validate", data, "--label-from-name", pattern), words)


def test_pixel_columns_are_placed_by_their_number_and_sizes_must_agree(tmp_path):
    data = tmp_path / "pix"
    data.mkdir()
    pixels = np.arange(16) * 10  # a gradient: reversed, it would be the image turned 180°
    header = ["label"] + [f"pixel{i}" for i in reversed(range(16))]
    write_csv(data / "train.csv", header, [[c] + list(pixels[::-1]) for c in "aabb"])
    comp = load_competition(data)
    assert np.array_equal(np.asarray(Image.open(comp.train["path"].iloc[0])).ravel(), pixels)
    write_csv(data / "test.csv", [f"pixel{i}" for i in range(25)], [[0] * 25] * 2)
    one_error(invoke("validate", data), "different image sizes", "train.csv 16", "test.csv 25")
    (data / "test.csv").unlink()
    write_csv(data / "train.csv", ["label"] + [f"pixel{i}" for i in range(17) if i != 5], [["a"] + [0] * 16] * 2)
    one_error(invoke("validate", data), "train.csv:1", "pixel5")


def test_ensemble_weights_stay_finite_and_folds_must_all_be_there(trained):
    from kit.submission import ensemble_weights

    assert ensemble_weights([1, 2], [1e308, 1e308]) == [0.5, 0.5]
    assert ensemble_weights([1, 2], [1e308, 1e300]) == pytest.approx([1.0, 1e-8])
    with pytest.raises(KitError):
        ensemble_weights([1, 2], [float("inf"), 1])


def test_a_k_fold_run_missing_or_swapping_a_fold_is_refused(tmp_path, trained):
    _, _, other, _ = trained
    data = make_av_folder(tmp_path / "D", n_per_class=6)
    result = invoke("train", data, "--runs-dir", tmp_path / "runs", "--name", "k", "--folds", "2", *FAST)
    assert result.exit_code == 0, result.output
    run = tmp_path / "runs" / "k"
    shutil.move(run / "fold1", tmp_path / "fold1")
    one_error(invoke("make-submission", run, "-o", tmp_path / "s.csv"), "fold1", "missing")
    shutil.copytree(other, run / "fold1")  # another run's folder in the fold's place
    one_error(invoke("make-submission", run, "-o", tmp_path / "s.csv"), "fold1", "not fold 1 of this run")
    shutil.rmtree(run / "fold1")
    (run / "fold1").symlink_to(tmp_path / "fold1")
    one_error(invoke("make-submission", run, "-o", tmp_path / "s.csv"), "fold1", "symbolic link")
    assert not (tmp_path / "s.csv").exists()


def test_edited_class_names_are_caught(trained, tmp_path):
    _, _, run, _ = trained
    copy = tmp_path / "r"
    shutil.copytree(run, copy)
    names = (copy / "class_names.json").read_text()
    (copy / "class_names.json").write_text(names.replace('"cat"', '"tmp"').replace('"emu"', '"cat"')
                                           .replace('"tmp"', '"emu"'))
    one_error(invoke("make-submission", copy, "-o", tmp_path / "s.csv"), "class_names.json", "changed after kit")
    one_error(invoke("report", copy), "class_names.json", "changed after kit")


@pytest.mark.parametrize("command", ["validate", "run", "train", "score", "make-submission", "export", "predict"])
def test_help_is_help(command):
    result = invoke(command, "--help")
    assert result.exit_code == 0 and "Usage:" in result.output and "Error" not in result.output


def test_an_archive_linked_from_outside_is_refused(tmp_path):
    data = make_av_folder(tmp_path / "D")
    zip_folder(data, "../test.zip", ["test/00024.png"])
    shutil.rmtree(data / "test")
    (data / "test.zip").symlink_to(tmp_path / "test.zip")
    one_error(invoke("validate", data), "test.zip", "symbolic link that leads outside")


def test_members_named_twice_in_other_spellings_are_one_line(tmp_path):
    data = make_av_folder(tmp_path / "D")
    png = (data / "test" / "00024.png").read_bytes()
    shutil.rmtree(data / "test")
    with zipfile.ZipFile(data / "test.zip", "w") as z:
        z.writestr("test/00024.png", png)
        z.writestr("./test/00024.png", png)
    one_error(invoke("validate", data), "test.zip", "appears twice")


def test_half_built_folders_of_older_keys_are_removed(tmp_path):
    data = make_av_folder(tmp_path / "D")
    zip_folder(data, "test.zip", ["test/00024.png"])
    shutil.rmtree(data / "test")
    derived = tmp_path / "cache" / "derived"
    derived.mkdir(parents=True)
    (derived / ".D-oldkey.x1y2").mkdir()  # a kit killed while it built for an older download
    assert invoke("validate", data).exit_code == 2  # only one test image: the sample names six
    assert not (derived / ".D-oldkey.x1y2").exists()


# ------------------------------------------------------------------------------------- never a traceback


def test_scoring_odd_answer_keys_is_one_line(tmp_path):
    write_csv(tmp_path / "answers.csv", ["id", "label"], [(1, "a"), (2, "b")])
    write_csv(tmp_path / "probs.csv", ["id", "x", "y"], [(1, 0.5, 0.5), (2, 0.5, 0.5)])
    one_error(invoke("score", tmp_path / "probs.csv", tmp_path / "answers.csv", "--metric", "log_loss"),
              "do not cover the classes")
    write_csv(tmp_path / "labels.csv", ["id", "label"], [(1, "a"), (2, "b")])
    one_error(invoke("score", tmp_path / "labels.csv", tmp_path / "answers.csv", "--metric", "auc", "--positive", "a"),
              "holds labels", "not probabilities")
    write_csv(tmp_path / "one.csv", ["id"], [(1,), (2,)])
    one_error(invoke("score", tmp_path / "probs.csv", tmp_path / "one.csv"), "one column")


def test_a_yaml_config_that_is_a_list_is_one_line(tmp_path):
    data = make_av_folder(tmp_path / "D")
    (tmp_path / "c.yaml").write_text("- epochs: 1\n")
    one_error(invoke("train", data, "--config", tmp_path / "c.yaml"), "c.yaml", "found a list")


def test_class_names_are_plain_text_in_plots(tmp_path):
    from kit import reports

    path = tmp_path / "m.png"
    assert reports._save_figure(lambda: reports._confusion_figure(np.eye(2, dtype=int), ["$\\notacommand$", "b"], 2),
                                path) == [path]


def test_an_unforeseen_library_error_is_one_line_naming_the_step(tmp_path, monkeypatch):
    import kit.validation

    def broken(*args, **kwargs):
        raise ValueError("something deep inside a library\nwith a second line")

    monkeypatch.setattr(kit.validation, "_check_labels", broken)
    line = one_error(invoke("validate", make_av_folder(tmp_path / "D")), "while validating the data",
                     "ValueError: something deep inside a library", "--debug")
    assert "second line" not in line


def test_kit_run_shows_and_keeps_what_validation_saw(trained):
    _, _, run, output = trained
    assert "2 warning(s)" in output and "exact repeat of an earlier row" in output
    seen = pd.read_json(run / "validation.json", typ="series")
    assert seen["count"] == 2 and all("exact repeat" in w for w in seen["warnings"])


def test_config_refuses_a_label_from_name_without_one_group():
    with pytest.raises(KitError, match="exactly one group"):
        Config(label_from_name="cat").validate()
