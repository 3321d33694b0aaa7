"""Competitions as organisers publish them (#19): each fixture copies a real competition's file names, headers, id
formats, nesting and zips, with tiny images; `kit run … --epochs 1` must end in a submission of exactly the
sample's shape, or stop before training with one line."""

import json
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
from click.testing import CliRunner
from conftest import folder_hash, make_image, write_csv

from kit.cli import cli

CLASSES = ("cat", "dog", "emu")
FAST = ["--epochs", "1", "--batch-size", "8", "--image-size", "8", "--augment", "none"]


def invoke(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result


def save(path: Path, label: str, seed: int, mode="L", size=12) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = make_image(label, seed, size=size)
    (im.convert(mode) if mode != "L" else im).save(path, **({"quality": 95} if path.suffix.lower() in (".jpg", ".jpeg")
                                                             else {}))


def save_class_folders(folder: Path, names, file_name, first_seed: int = 0) -> None:
    """Six RGB images per class, in FOLDER/<name>/<file_name(name, k)>, one name per class of CLASSES."""
    for name, c in zip(names, CLASSES):
        for k in range(6):
            save(folder / name / file_name(name, k), c, first_seed + CLASSES.index(c) * 10 + k, mode="RGB")


def save_tests(folder: Path, names, seed: int) -> None:
    """Unlabelled test images, one per name, cycling through the classes' patterns."""
    for j, name in enumerate(names):
        save(folder / name, CLASSES[j % 3], seed + j, mode="RGB")


def labelled(n_per_class=6, classes=CLASSES):
    return [(k, c) for c in classes for k in [classes.index(c) * n_per_class + j for j in range(n_per_class)]]


def run_to_submission(data: Path, tmp: Path, *flags) -> pd.DataFrame:
    """kit run, then the submission read back: same header, ids and order as the sample (when there is one)."""
    before = folder_hash(data)
    result = invoke("run", data, "--runs-dir", tmp / "runs", "--name", "r", *FAST, *flags)
    assert result.exit_code == 0, result.output
    assert folder_hash(data) == before  # nothing written into the data folder, zips or not
    sub = pd.read_csv(tmp / "runs" / "r" / "submission.csv", dtype=str, keep_default_na=False)
    samples = [p for p in data.iterdir() if "submission" in p.name.lower() and p.suffix == ".csv"]
    if samples:
        sample = pd.read_csv(samples[0], dtype=str, keep_default_na=False)
        assert list(sub.columns) == list(sample.columns)
        assert sub.iloc[:, 0].tolist() == sample.iloc[:, 0].tolist()
    return sub


def refused_before_training(data: Path, tmp: Path, *parts, flags=()):
    result = invoke("run", data, "--runs-dir", tmp / "runs", "--name", "r", *FAST, *flags)
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert result.exit_code == 2 and len(errors) == 1, result.output
    assert "Epoch" not in result.output and not (tmp / "runs" / "r" / "model.keras").exists()
    for part in parts:
        assert part in errors[0], errors[0]


# ------------------------------------------------------------------------------------------- layouts


def test_av_identify_the_apparels(tmp_path):
    data = tmp_path / "apparels"
    rows = labelled()
    for k, c in rows:
        save(data / "train" / f"{k}.png", c, k)
    for j in range(6):
        save(data / "test" / f"{100 + j}.png", CLASSES[j % 3], 50 + j)
    write_csv(data / "train.csv", ["id", "label"], rows)
    write_csv(data / "test.csv", ["id"], [(100 + j,) for j in range(6)])
    write_csv(data / "sample_submission.csv", ["id", "label"], [(100 + j, "cat") for j in range(6)])
    assert set(run_to_submission(data, tmp_path)["label"]) <= set(CLASSES)


def test_av_identify_the_digits(tmp_path):
    data = tmp_path / "digits"
    rows = [(f"{k}.png", c) for k, c in labelled()]
    for name, c in rows:
        save(data / "Images" / "train" / name, c, int(name[:-4]))
    names = [f"{100 + j}.png" for j in range(6)]
    for j, name in enumerate(names):
        save(data / "Images" / "test" / name, CLASSES[j % 3], 60 + j)
    write_csv(data / "train.csv", ["filename", "label"], rows)
    write_csv(data / "Test_fCbTej3.csv", ["filename"], [(n,) for n in names])
    write_csv(data / "Sample_Submission_lxuyBuB.csv", ["filename", "label"], [(n, "cat") for n in names])
    run_to_submission(data, tmp_path)


def _pixel_rows(n, first_label=None, side=8):
    rows = []
    for k in range(n):
        label = CLASSES[k % 3]
        pixels = np.asarray(make_image(label, k, size=side)).reshape(-1).tolist()
        rows.append(([label] if first_label is None else []) + pixels)
    return rows


def test_kaggle_digit_recognizer_pixel_tables(tmp_path):
    data = tmp_path / "digit-recognizer"
    data.mkdir()
    write_csv(data / "train.csv", ["label"] + [f"pixel{i}" for i in range(64)], _pixel_rows(24))
    write_csv(data / "test.csv", [f"pixel{i}" for i in range(64)], [r[1:] for r in _pixel_rows(6)])
    write_csv(data / "sample_submission.csv", ["ImageId", "Label"], [(j + 1, 0) for j in range(6)])
    sub = run_to_submission(data, tmp_path)
    assert sub["ImageId"].tolist() == [str(j) for j in range(1, 7)]  # ImageId = the 1-based row of test.csv


def test_kaggle_fashion_mnist_csvs_score_against_the_labelled_test_table(tmp_path):
    data = tmp_path / "fashionmnist"
    data.mkdir()
    header = ["label"] + [f"pixel{i}" for i in range(1, 65)]
    write_csv(data / "fashion-mnist_train.csv", header, _pixel_rows(24))
    write_csv(data / "fashion-mnist_test.csv", header, _pixel_rows(9))
    result = invoke("run", data, "--runs-dir", tmp_path / "runs", "--name", "r", *FAST)
    assert result.exit_code == 0, result.output
    assert "Held-out test accuracy:" in result.output
    sub = pd.read_csv(tmp_path / "runs" / "r" / "submission.csv", dtype=str)
    assert len(sub) == 9 and list(sub.columns) == ["id", "label"]


def _dogs_vs_cats(data: Path, test_dir: str, sample: str | None):
    for k in range(8):
        for c in ("cat", "dog"):
            save(data / "train" / f"{c}.{k}.jpg", "cat" if c == "cat" else "dog", k + (100 if c == "dog" else 0),
                 mode="RGB")
    for j in range(1, 7):
        save(data / test_dir / f"{j}.jpg", "cat" if j % 2 else "dog", 300 + j, mode="RGB")
    if sample:
        write_csv(data / sample, ["id", "label"], [(j, 0.5 if "sample_" in sample else 0) for j in range(1, 7)])


def test_dogs_vs_cats_2013_labels_from_file_names(tmp_path):
    data = tmp_path / "dogs-vs-cats"
    _dogs_vs_cats(data, "test1", "sampleSubmission.csv")
    sub = run_to_submission(data, tmp_path, "--label-map", "cat=0,dog=1")
    assert set(sub["label"]) <= {"0", "1"}  # the 2013 answer: 1 for dog


def test_dogs_vs_cats_redux_probability_of_dog_with_a_custom_name_pattern(tmp_path):
    data = tmp_path / "redux"
    _dogs_vs_cats(data, "test", "sample_submission.csv")
    refused_before_training(data, tmp_path, "sample_submission.csv: one probability per row, but of which class",
                            "--positive CLASS", flags=["--label-from-name", r"^(cat|dog)\."])
    sub = run_to_submission(data, tmp_path, "--label-from-name", r"^(cat|dog)\.", "--positive", "dog")
    p = sub["label"].astype(float)
    assert p.between(1e-6, 1 - 1e-6).all() and not set(sub["label"]) <= {"0", "1"}  # P(dog), not hard labels


def test_dogs_vs_cats_train_folder_is_never_a_class(tmp_path):
    data = tmp_path / "dvc"
    _dogs_vs_cats(data, "test1", None)
    for k in range(8):  # names that carry no class: kit must not take train/ and test1/ as two classes
        (data / "train" / f"cat.{k}.jpg").rename(data / "train" / f"{k}.jpg")
        (data / "train" / f"dog.{k}.jpg").rename(data / "train" / f"{k + 50}.jpg")
    refused_before_training(data, tmp_path, "train/: images, but no class folders", "--label-from-name")


def test_kaggle_cifar10(tmp_path):
    data = tmp_path / "cifar-10"
    rows = [(k + 1, c) for k, c in labelled()]
    for k, c in rows:
        save(data / "train" / f"{k}.png", c, k, mode="RGB")
    for j in range(1, 7):
        save(data / "test" / f"{j}.png", CLASSES[j % 3], 70 + j, mode="RGB")
    write_csv(data / "trainLabels.csv", ["id", "label"], rows)
    write_csv(data / "sampleSubmission.csv", ["id", "label"], [(j, "cat") for j in range(1, 7)])
    run_to_submission(data, tmp_path)


def _cactus(data: Path, zipped: bool):
    rows = [(f"{k:04x}a9e1.jpg", int(c == "dog")) for k, c in labelled(8, ("cat", "dog"))]
    for name, y in rows:
        save(data / "train" / name, "dog" if y else "cat", int(name[:4], 16), mode="RGB")
    tests = [f"{900 + j:04x}b2.jpg" for j in range(6)]
    for j, name in enumerate(tests):
        save(data / "test" / name, "dog" if j % 2 else "cat", 400 + j, mode="RGB")
    write_csv(data / "train.csv", ["id", "has_cactus"], rows)
    write_csv(data / "sample_submission.csv", ["id", "has_cactus"], [(n, 0.5) for n in tests])
    if zipped:
        for split in ("train", "test"):
            with zipfile.ZipFile(data / f"{split}.zip", "w") as z:
                for f in sorted((data / split).iterdir()):
                    z.write(f, f"{split}/{f.name}")
            for f in (data / split).iterdir():
                f.unlink()
            (data / split).rmdir()


def test_aerial_cactus_ids_with_extensions(tmp_path):
    data = tmp_path / "aerial-cactus-identification"
    _cactus(data, zipped=False)
    sub = run_to_submission(data, tmp_path)
    assert sub["has_cactus"].astype(float).between(0, 1).all()  # P(has_cactus = 1): the sample's 0.5 asks for it
    assert not set(sub["has_cactus"]) <= {"0", "1"}


def test_aerial_cactus_as_downloaded_train_zip_and_test_zip(tmp_path, monkeypatch):
    monkeypatch.setenv("KIT_CACHE_DIR", str(tmp_path / "cache"))
    data = tmp_path / "aerial-cactus-identification"
    _cactus(data, zipped=True)
    run_to_submission(data, tmp_path)
    assert sorted(p.name for p in data.iterdir()) == ["sample_submission.csv", "test.zip", "train.csv", "train.zip"]


def test_the_kaggle_cli_zip_holding_the_whole_competition(tmp_path, monkeypatch):
    monkeypatch.setenv("KIT_CACHE_DIR", str(tmp_path / "cache"))
    inner = tmp_path / "unpacked"
    _cactus(inner, zipped=True)
    data = tmp_path / "download"
    data.mkdir()
    with zipfile.ZipFile(data / "aerial-cactus-identification.zip", "w") as z:
        for f in sorted(inner.iterdir()):
            z.write(f, f.name)
    result = invoke("run", data, "--runs-dir", tmp_path / "runs", "--name", "r", *FAST)
    assert result.exit_code == 0, result.output
    sub = pd.read_csv(tmp_path / "runs" / "r" / "submission.csv", dtype=str)
    assert list(sub.columns) == ["id", "has_cactus"] and len(sub) == 6


def test_zips_that_would_write_outside_are_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("KIT_CACHE_DIR", str(tmp_path / "cache"))
    data = tmp_path / "evil"
    _cactus(data, zipped=True)
    with zipfile.ZipFile(data / "extra.zip", "w") as z:
        z.writestr("../../escaped.txt", "x")
    refused_before_training(data, tmp_path, "extra.zip", "'../../escaped.txt' would be written outside")
    assert not (tmp_path / "escaped.txt").exists()


def test_histopathologic_cancer_detection_tifs(tmp_path):
    data = tmp_path / "histopathologic-cancer-detection"
    rows = [(f"f38a6374c348f90b587e046aac6079959adf3835{k:02d}", int(c == "dog")) for k, c in
            labelled(8, ("cat", "dog"))]
    for image_id, y in rows:
        save(data / "train" / f"{image_id}.tif", "dog" if y else "cat", len(image_id) + y * 7 + int(image_id[-2:]),
             mode="RGB")
    tests = [f"00006537328c33e284c973d7b39d340809f7271b{j:02d}" for j in range(6)]
    for j, t in enumerate(tests):
        save(data / "test" / f"{t}.tif", "dog" if j % 2 else "cat", 500 + j, mode="RGB")
    write_csv(data / "train_labels.csv", ["id", "label"], rows)
    write_csv(data / "sample_submission.csv", ["id", "label"], [(t, 0) for t in tests])
    run_to_submission(data, tmp_path)


def test_dog_breed_identification_probability_per_breed(tmp_path):
    data = tmp_path / "dog-breed-identification"
    breeds = ("affenpinscher", "afghan_hound", "yorkshire_terrier")
    rows = [(f"000bec180eb18c7604dcecc8fe0d{k:04x}", breeds[CLASSES.index(c)]) for k, c in labelled()]
    for image_id, breed in rows:
        save(data / "train" / f"{image_id}.jpg", CLASSES[breeds.index(breed)], int(image_id[-4:], 16), mode="RGB")
    tests = [f"00102ee9d8eb90812350685311fe{j:04x}" for j in range(6)]
    save_tests(data / "test", [f"{t}.jpg" for t in tests], 600)
    write_csv(data / "labels.csv", ["id", "breed"], rows)
    write_csv(data / "sample_submission.csv", ["id", *breeds], [(t, *[1 / 3] * 3) for t in tests])
    sub = run_to_submission(data, tmp_path)
    assert np.allclose(sub[list(breeds)].astype(float).sum(1), 1.0, atol=1e-4)


def test_a_sample_with_columns_kit_cannot_write_is_refused_before_training(tmp_path):
    data = tmp_path / "dog-breed-identification"
    rows = [(f"id{k}", c) for k, c in labelled()]
    for image_id, c in rows:
        save(data / "train" / f"{image_id}.jpg", c, int(image_id[2:]), mode="RGB")
    save(data / "test" / "t0.jpg", "cat", 1, mode="RGB")
    write_csv(data / "labels.csv", ["id", "breed"], rows)
    write_csv(data / "sample_submission.csv", ["id", "cat", "dog", "wolf"], [("t0", 0.3, 0.3, 0.4)])
    refused_before_training(data, tmp_path, "sample_submission.csv", "1 not a class ('wolf')",
                            "1 class(es) without a column ('emu')")


def test_plant_seedlings_class_folders_with_spaces(tmp_path):
    data = tmp_path / "plant-seedlings-classification"
    species = ("Black-grass", "Common wheat", "Small-flowered Cranesbill")
    save_class_folders(data / "train", species, lambda s, k: f"{k:09x}.png")
    files = [f"{700 + j:09x}.png" for j in range(6)]
    save_tests(data / "test", files, 700)
    write_csv(data / "sample_submission.csv", ["file", "species"], [(f, "Black-grass") for f in files])
    sub = run_to_submission(data, tmp_path)
    assert set(sub["species"]) <= set(species)


def test_planet_two_test_folders(tmp_path):
    data = tmp_path / "planet-understanding-the-amazon-from-space"
    tags = ("clear primary", "haze primary road", "cloudy")
    rows = [(f"train_{k}", tags[CLASSES.index(c)]) for k, c in labelled()]
    for name, t in rows:
        save(data / "train-jpg" / f"{name}.jpg", CLASSES[tags.index(t)], int(name[6:]), mode="RGB")
    tests = [f"test_{j}" for j in range(4)] + [f"file_{j}" for j in range(3)]
    for j, name in enumerate(tests):
        folder = "test-jpg" if name.startswith("test_") else "test-jpg-additional"
        save(data / folder / f"{name}.jpg", CLASSES[j % 3], 800 + j, mode="RGB")
    write_csv(data / "train_v2.csv", ["image_name", "tags"], rows)
    write_csv(data / "sample_submission_v2.csv", ["image_name", "tags"], [(n, "primary clear") for n in tests])
    write_csv(data / "test_v2_file_mapping.csv", ["old", "new"], [("file_0.tif", "file_18830.tif")])
    run_to_submission(data, tmp_path)


def test_humpback_whales_many_single_image_classes(tmp_path):
    data = tmp_path / "humpback-whale-identification"
    rows = [(f"{k:04x}e2e2.jpg", "new_whale") for k in range(10)]
    rows += [(f"{k:04x}a1a1.jpg", f"w_{k:07x}") for k in range(30)]
    for j, (name, whale) in enumerate(rows):
        save(data / "train" / name, CLASSES[j % 3], j, mode="RGB")
    tests = [f"{j:04x}c3c3.jpg" for j in range(5)]
    save_tests(data / "test", tests, 900)
    write_csv(data / "train.csv", ["Image", "Id"], rows)
    write_csv(data / "sample_submission.csv", ["Image", "Id"],
              [(n, "new_whale w_23a388d w_9b5109b w_9c506f6 w_0369a5c") for n in tests])
    result = invoke("validate", data)
    assert result.exit_code == 0 and "30 class(es) have a single image" in result.output
    assert "Submission: the 5 most probable classes per row; metric map@5" in result.output
    run_to_submission(data, tmp_path)


def test_tiny_imagenet_validation_labels_in_a_file(tmp_path):
    data = tmp_path / "tiny-imagenet-200"
    wnids = ("n01443537", "n01629819", "n01641577")
    save_class_folders(data / "train", wnids, lambda w, k: f"images/{w}_{k}.JPEG")
    lines = []
    for j in range(6):
        save(data / "val" / "images" / f"val_{j}.JPEG", CLASSES[j % 3], 100 + j, mode="RGB")
        lines.append(f"val_{j}.JPEG\t{wnids[j % 3]}\t0\t0\t8\t8")
    (data / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    for j in range(4):
        save(data / "test" / "images" / f"test_{j}.JPEG", CLASSES[j % 3], 200 + j, mode="RGB")
    (data / "wnids.txt").write_text("\n".join(wnids) + "\n")
    result = invoke("run", data, "--runs-dir", tmp_path / "runs", "--name", "r", *FAST)
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "runs" / "r" / "metrics.json").read_text())
    assert (metrics["num_train"], metrics["num_validation"]) == (18, 6)  # val/ with its labels file
    sub = pd.read_csv(tmp_path / "runs" / "r" / "submission.csv", dtype=str)
    assert len(sub) == 4 and set(sub["label"]) <= set(wnids)


def test_a_table_inside_the_train_folder_and_a_blank_sample(tmp_path):
    data = tmp_path / "flowers-recognition"
    rows = [(f"{k}.jpg", c) for k, c in labelled()]
    for name, c in rows:
        save(data / "train" / "images" / name, c, int(name[:-4]), mode="RGB")
    names = [f"{100 + j}.jpg" for j in range(6)]
    save_tests(data / "test" / "images", names, 1000)
    write_csv(data / "train" / "train.csv", ["image_id", "category"], rows)
    write_csv(data / "sample_submission.csv", ["image_id", "category"], [(n, "") for n in names])
    sub = run_to_submission(data, tmp_path)
    assert set(sub["category"]) <= set(CLASSES)


def test_intel_image_classification_nested_split_folders(tmp_path):
    data = tmp_path / "intel-image-classification"
    scenes = ("buildings", "forest", "glacier")
    save_class_folders(data / "seg_train" / "seg_train", scenes, lambda s, k: f"{k}.jpg")
    save_class_folders(data / "seg_test" / "seg_test", scenes, lambda s, k: f"{k + 100}.jpg", first_seed=300)
    for j in range(4):
        save(data / "seg_pred" / "seg_pred" / f"{j}.jpg", CLASSES[j % 3], 500 + j, mode="RGB")
    result = invoke("validate", data)
    assert result.exit_code == 0, result.output
    assert "train: 18 images in 3 classes; test: 18 images" in result.output  # seg_* are never classes


def test_tables_given_by_flag_when_names_say_nothing(tmp_path):
    data = tmp_path / "custom"
    rows = labelled()
    for k, c in rows:
        save(data / "pics" / f"{k}.png", c, k)
    write_csv(data / "meta.csv", ["file", "klass"], [(f"{k}.png", c) for k, c in rows])
    result = invoke("train", data, "--runs-dir", tmp_path / "runs", "--name", "r", *FAST)  # read by content
    assert result.exit_code == 0 and "train: meta.csv" not in result.output, result.output
    result = invoke("train", data, "--train-csv", "meta.csv", "--train-images", "pics", "--runs-dir",
                    tmp_path / "runs", "--name", "r2", *FAST)
    assert result.exit_code == 0, result.output


def test_a_zip_bomb_is_refused_before_it_is_extracted(tmp_path, monkeypatch):
    monkeypatch.setenv("KIT_CACHE_DIR", str(tmp_path / "cache"))
    data = tmp_path / "bomb"
    _cactus(data, zipped=True)
    with zipfile.ZipFile(data / "extra.zip", "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("zeros.bin", b"\0" * (24 << 20))  # 24 MB of zeros: about 24 KB zipped
    refused_before_training(data, tmp_path, "extra.zip", "'zeros.bin' grows", "zip bomb")
    assert not list((tmp_path / "cache").rglob("zeros.bin"))
