"""How kit says it reads a folder (#31): `kit validate` names where the training images, classes and test are;
--explain adds the evidence and the runner-up; a binary sample of zeros says what will be written and how to ask
for the other."""

from conftest import invoke, make_av_folder, make_image, one_error, write_csv


def test_validate_says_how_it_reads_and_explain_says_why(tmp_path):
    data = tmp_path / "caltech"
    for c in ("accordion", "airplanes", "anchor"):
        (data / "101_ObjectCategories" / c).mkdir(parents=True)
        for k in range(3):
            make_image("cat", k).save(data / "101_ObjectCategories" / c / f"image_{k:04d}.jpg")
    result = invoke("validate", data, "--explain")
    assert result.exit_code == 0, result.output
    assert "Reading: train: 9 images from 101_ObjectCategories/, 3 classes" in result.output
    assert "Evidence: class folders in ./: 3 sub-folders holding 9 images" in result.output
    assert "layout; train 101_ObjectCategories/" in result.output
    assert "Evidence:" not in invoke("validate", data).output


def test_two_equal_sets_of_classes_are_refused_with_the_command_that_works(tmp_path):
    data = tmp_path / "two"
    for folder, classes in (("setA", ("cat", "dog")), ("setB", ("red", "blue"))):
        for c in classes:
            (data / folder / c).mkdir(parents=True)
            for k in range(3):
                make_image("cat", k).save(data / folder / c / f"{k}.png")
    line = one_error(invoke("validate", data), "both hold class folders", "kit run DATA --train-images set")
    flag = line.split("--train-images ")[1].rstrip("`")
    result = invoke("validate", data, "--train-images", flag)
    assert result.exit_code == 0 and "2 classes" in result.output, result.output


def test_a_binary_sample_of_zeros_says_what_kit_writes(tmp_path):
    data = make_av_folder(tmp_path / "av", classes=("cat", "dog"))
    rows = [r.split(",") for r in (data / "train.csv").read_text().split()[1:]]
    write_csv(data / "train.csv", ["image_names", "emergency_or_not"], [(i, int(c == "dog")) for i, c in rows])
    ids = [r.split(",")[0] for r in (data / "test.csv").read_text().split()[1:]]
    write_csv(data / "test.csv", ["image_names"], [(i,) for i in ids])
    write_csv(data / "sample_submission.csv", ["image_names", "emergency_or_not"], [(i, 0) for i in ids])
    result = invoke("validate", data)
    assert "P(1) (the sample's 0/1 values could also be labels: pass --submission label" in result.output
    assert "could also be labels" not in invoke("validate", data, "--submission", "label").output \
        if "--submission" in str(invoke("validate", "--help").output) else True


# ------------------------------------------- layouts a newcomer rebuilt (red team of #31), as published

def _images(folder, names, label="cat"):
    folder.mkdir(parents=True, exist_ok=True)
    for k, name in enumerate(names):
        make_image(label, k).save(folder / name)


def _pairs(comp):
    from pathlib import Path

    frames = [f for f in (comp.train, comp.validation) if f is not None]
    return {(Path(p).name, lab) for f in frames for p, lab in zip(f["path"], f["label"])}


def test_mit_indoor67_split_lists_at_the_top(tmp_path):
    from kit.data import load_competition

    data = tmp_path / "indoor"
    lines = {"TrainImages.txt": [], "TestImages.txt": []}
    for c in ("airport_inside", "bakery"):
        _images(data / "Images" / c, [f"{c}_{k:04d}.jpg" for k in range(5)])
        lines["TrainImages.txt"] += [f"{c}/{c}_{k:04d}.jpg" for k in range(3)]
        lines["TestImages.txt"] += [f"{c}/{c}_{k:04d}.jpg" for k in range(3, 5)]
    for name, rows in lines.items():
        (data / name).write_text("\n".join(rows) + "\n")
    comp = load_competition(data)
    assert len(comp.train) == 6 and len(comp.test) == 4  # the official test images are never trained on
    assert not set(comp.train["path"]) & set(comp.test["path"])


def test_blood_cells_split_folders_deep_beside_another_dataset(tmp_path):
    from kit.data import load_competition

    data = tmp_path / "blood"
    base = data / "dataset2-master" / "dataset2-master" / "images"
    for split, n in (("TRAIN", 4), ("TEST", 2), ("TEST_SIMPLE", 1)):
        for c in ("EOSINOPHIL", "LYMPHOCYTE"):
            _images(base / split / c, [f"_{k}_{split}.jpeg" for k in range(n)])
    _images(data / "dataset-master" / "dataset-master" / "JPEGImages", [f"BloodImage_{k:05d}.jpg" for k in range(6)])
    comp = load_competition(data)
    assert comp.class_names == ["EOSINOPHIL", "LYMPHOCYTE"] and len(comp.train) == 8 and len(comp.test) == 4


def test_mnist_as_jpg_trains_on_the_full_set_not_the_sample(tmp_path):
    from kit.data import load_competition

    data = tmp_path / "mnist-jpg"
    for d in "01":
        _images(data / "trainingSet" / "trainingSet" / d, [f"img_{k}.jpg" for k in range(6)])
        _images(data / "trainingSample" / "trainingSample" / d, [f"img_{k}.jpg" for k in range(2)])
    _images(data / "testSet" / "testSet", [f"img_{k}.jpg" for k in range(3)])
    comp = load_competition(data)
    assert len(comp.train) == 12 and len(comp.test) == 3


def test_several_train_tables_take_the_one_with_labels(tmp_path):
    from kit.data import load_competition

    data = tmp_path / "conservision"
    species = ["bird", "hog"]
    _images(data / "train_features", [f"ZJ{k:06d}.jpg" for k in range(6)])
    _images(data / "test_features", [f"ZJ{k:06d}.jpg" for k in range(6, 9)])
    write_csv(data / "train_features.csv", ["id", "filepath", "site"],
              [(f"ZJ{k:06d}", f"train_features/ZJ{k:06d}.jpg", "S1") for k in range(6)])
    write_csv(data / "train_labels.csv", ["id"] + species, [(f"ZJ{k:06d}", *((1.0, 0.0) if k % 2 else (0.0, 1.0)))
                                                             for k in range(6)])
    write_csv(data / "test_features.csv", ["id", "filepath", "site"],
              [(f"ZJ{k:06d}", f"test_features/ZJ{k:06d}.jpg", "S1") for k in range(6, 9)])
    write_csv(data / "submission_format.csv", ["id"] + species, [(f"ZJ{k:06d}", 0.5, 0.5) for k in range(6, 9)])
    comp = load_competition(data)
    assert comp.train_file == "train_labels.csv" and sorted(set(comp.train["label"])) == species
    assert list(comp.test["id"]) == [f"ZJ{k:06d}" for k in range(6, 9)]


def test_a_unique_id_column_is_never_the_label(tmp_path):
    from kit.data import load_competition

    data = tmp_path / "iwildcam"
    files = [f"{k:08x}-uuid.jpg" for k in range(8)]
    _images(data / "train_images", files)
    write_csv(data / "train.csv", ["category_id", "date", "file_name", "id", "location"],
              [(k % 2, "2011-05-13", f, f[:-4], 33) for k, f in enumerate(files)])
    comp = load_competition(data)
    assert comp.label_col == "category_id" and set(comp.train["label"]) == {"0", "1"}


def test_hugging_face_imagefolder_metadata_in_train_and_test(tmp_path):
    from kit.data import load_competition

    data = tmp_path / "hf"
    _images(data / "train", [f"{k:04d}.png" for k in range(6)])
    _images(data / "test", [f"{k:04d}.png" for k in range(6, 9)])
    write_csv(data / "train" / "metadata.csv", ["file_name", "label"], [(f"{k:04d}.png", "ab"[k % 2]) for k in range(6)])
    write_csv(data / "test" / "metadata.csv", ["file_name", "label"], [(f"{k:04d}.png", "a") for k in range(6, 9)])
    comp = load_competition(data)
    assert len(comp.train) == 6 and list(comp.test["id"]) == [f"{k:04d}.png" for k in range(6, 9)]


def test_formats_kit_does_not_read_are_named(tmp_path):
    data = tmp_path / "bengali"
    data.mkdir()
    write_csv(data / "train.csv", ["image_id", "grapheme_root", "vowel_diacritic"], [("Train_0", 1, 2), ("Train_1", 3, 2)])
    (data / "train_image_data_0.parquet").write_bytes(b"PAR1")
    one_error(invoke("validate", data), "Parquet tables", "which kit does not read")
    cars = tmp_path / "cars"
    _images(cars / "cars_train", [f"{k:05d}.jpg" for k in range(4)])
    (cars / "devkit").mkdir()
    (cars / "devkit" / "cars_train_annos.mat").write_bytes(b"MATLAB")
    one_error(invoke("validate", cars), "cars_train/", "MATLAB files")


def test_flags_name_folders_as_the_user_sees_them_inside_a_wrapping_folder(tmp_path):
    from kit.data import load_competition

    data = tmp_path / "wrapped"
    for folder, classes in (("setA", ("cat", "dog")), ("setB", ("red", "blue"))):
        for c in classes:
            _images(data / "comp" / folder / c, [f"{k}.png" for k in range(3)])
    comp = load_competition(data, train_images="comp/setB")  # as seen from DATA, through the wrapping folder
    assert comp.class_names == ["blue", "red"]


def test_simpsons_class_folders_beside_a_flat_test_set(tmp_path):
    from kit.data import load_competition

    data = tmp_path / "simpsons"
    for c in ("bart_simpson", "homer_simpson", "lisa_simpson"):
        _images(data / "simpsons_dataset" / c, [f"pic_{k:04d}.jpg" for k in range(4)])
    _images(data / "kaggle_simpson_testset" / "kaggle_simpson_testset", [f"bart_simpson_{k}.jpg" for k in range(3)])
    (data / "annotation.txt").write_text("simpsons_dataset/bart_simpson/pic_0000.jpg,1,2,3,4,bart_simpson\n")
    comp = load_competition(data)
    assert comp.class_names == ["bart_simpson", "homer_simpson", "lisa_simpson"] and len(comp.test) == 3


def test_cub_200_numbered_images_and_their_official_split(tmp_path):
    from kit.data import load_competition

    data = tmp_path / "cub"
    base = data / "CUB_200_2011"
    lines, split, k = [], [], 0
    for c in ("001.Black_footed_Albatross", "002.Laysan_Albatross"):
        _images(base / "images" / c, [f"{c[4:]}_{n:04d}.jpg" for n in range(5)])
        for n in range(5):
            k += 1
            lines.append(f"{k} {c}/{c[4:]}_{n:04d}.jpg")
            split.append(f"{k} {int(n < 3)}")
    (base / "images.txt").write_text("\n".join(lines) + "\n")
    (base / "train_test_split.txt").write_text("\n".join(split) + "\n")
    (base / "image_class_labels.txt").write_text("\n".join(f"{i} {1 + (i > 5)}" for i in range(1, 11)) + "\n")
    (data / "attributes.txt").write_text("1 has_bill_shape::curved\n")
    comp = load_competition(data)
    assert len(comp.train) == 6 and len(comp.test) == 4 and len(comp.class_names) == 2
    assert not set(comp.train["path"]) & set(comp.test["path"])


def test_an_object_detection_sample_is_named_as_such(tmp_path):
    data = tmp_path / "passion"
    _images(data / "Train_Images", [f"ID_{k:03d}.jpg" for k in range(6)])
    _images(data / "Test_Images", [f"ID_{k:03d}.jpg" for k in range(6, 8)])
    write_csv(data / "Train.csv", ["Image_ID", "class", "xmin", "ymin", "width", "height"],
              [(f"ID_{k:03d}", "fruit_healthy" if k % 2 else "fruit_woodiness", 1, 2, 3, 4) for k in range(6)])
    write_csv(data / "Test.csv", ["Image_ID"], [(f"ID_{k:03d}",) for k in range(6, 8)])
    write_csv(data / "SampleSubmission.csv", ["Image_ID", "class", "confidence", "ymin", "xmin", "ymax", "xmax"],
              [(f"ID_{k:03d}", "fruit_healthy", 0.5, 1, 2, 3, 4) for k in range(6, 8)])
    result = invoke("validate", data)
    assert result.exit_code == 2 and "object detection competition" in result.output, result.output
