"""--model auto for photos (kit.auto): the decision, the user's settings file, the Keras cache, the fallback line,
and the budget's choice of a backbone's image size. A tiny backbone file of the test's own; never the network."""

import json
import time
from collections import Counter

import pytest
from click.testing import CliRunner
from conftest import make_image

from kit import auto, budget
from kit.budget import Budget
from kit.cli import cli
from kit.config import Config
from kit.errors import ConfigError
from kit.submission import run_tta
from kit.training import resolve_config
from kit.validation import ValidationReport


def report(size=(500, 375), mode="RGB", n=5) -> ValidationReport:
    return ValidationReport(problems=[], class_counts={"a": n}, num_test=0, sizes=Counter({size: n}),
                            modes=Counter({mode: n}))


def test_small_and_grayscale_images_keep_kits_cnns_and_photos_are_photos():
    assert auto.describe_images(report((28, 28), "L")) == (False, "small images (grayscale, median 28×28)")
    assert auto.describe_images(report((32, 32))) == (False, "small images (colour, median 32×32)")
    assert auto.describe_images(report((500, 375))) == (True, "photos (colour, median 500×375)")
    assert auto.describe_images(report((1024, 1024), "L"))[0]  # X-rays and scans: large grayscale photos
    config = resolve_config(Config(data="d"), report((28, 28), "L"))
    assert (config.model, config.auto_reason) == ("baseline", "small images (grayscale, median 28×28) → baseline")


def test_settings_file_names_the_backbone_for_photos(settings, tiny_backbone, tmp_path):
    path, digest = tiny_backbone
    written = settings(f'[auto]\nbackbone_file = "{path}"\ntrust_model = "{digest}"\n')
    config = resolve_config(Config(data="d"), report())
    assert (config.model, config.backbone_file, config.trust_model) == ("backbone_file", str(path), digest)
    assert config.auto_reason == f"photos (colour, median 500×375) → tiny (from {auto.shown(written)})"
    # photos: mirrored views in the frozen phase, and the mirror tried at test time (run_tta)
    assert (config.image_size, config.optimizer, config.augment, config.feature_views) == (288, "adamw", "strong", 2)
    assert run_tta(config) == 2
    small = resolve_config(Config(data="d", model="mobilenet_v2"), report((32, 32)))  # a mirrored digit is not one
    assert (small.augment, small.feature_views, run_tta(small)) == ("light", 1, 0)
    chosen = resolve_config(Config(data="d", augment="light", feature_views=3), report())  # yours stand
    assert (chosen.augment, chosen.feature_views, run_tta(chosen)) == ("light", 3, 0)
    explicit = resolve_config(Config(data="d", model="small"), report())
    assert (explicit.model, explicit.auto_reason) == ("small", "")  # a model given is never second-guessed
    digits = resolve_config(Config(data="d"), report((28, 28), "L"))
    assert digits.model == "baseline" and not digits.backbone_file
    settings(f'[auto]\nbackbone_file = "tiny.keras"\ntrust_model = "{digest}"\n')  # relative to the file's folder
    (written.parent / "tiny.keras").write_bytes(path.read_bytes())
    assert auto.settings_backbone().backbone_file == str(written.parent / "tiny.keras")


@pytest.mark.parametrize("text, expected", [
    ('[auto]\nbackbone_file = "{path}"\ntrust_model = "{zeros}"\n', "has sha256 {digest}, not the trust_model given"),
    ('[auto]\nbackbone_file = "{path}"\n', 'set trust_model = "{digest}" in [auto]'),
    ('[auto]\nbackbone_file = "/no/such.keras"\ntrust_model = "{digest}"\n', "backbone_file /no/such.keras: no such"),
    ('[auto]\nbackbone = "x"\n', "unknown setting(s) backbone in [auto]"),
    ('[auto\n', "cannot parse"),
])
def test_settings_file_mistakes_are_one_line_naming_the_file(settings, tiny_backbone, text, expected):
    path, digest = tiny_backbone
    values = {"path": path, "digest": digest, "zeros": "0" * 64}
    written = settings(text.format(**values))
    with pytest.raises(ConfigError) as caught:
        resolve_config(Config(data="d"), report())
    message = str(caught.value)
    assert message.startswith(f"{written}: ") and expected.format(**values) in message and "\n" not in message


def test_settings_without_a_backbone_then_the_keras_cache_then_offline(settings, tmp_path, monkeypatch):
    settings("[auto]\n")  # a section naming nothing: kit looks further
    models = tmp_path / "keras" / "models"
    models.mkdir(parents=True)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    assert auto.weights_within_reach() is None  # conftest: KIT_OFFLINE=1
    (models / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5").write_bytes(b"")
    assert auto.cached_backbone().model == "mobilenet_v2"
    (models / "efficientnetb0_notop.h5").write_bytes(b"")  # preferred on a CPU
    config = resolve_config(Config(data="d"), report())
    assert (config.model, config.image_size) == ("efficientnet_b0", 288)
    assert config.auto_reason == f"photos (colour, median 500×375) → efficientnet_b0 (ImageNet weights in {models})"
    (models / "convnext_tiny_notop.h5").write_bytes(b"")  # last but one on a CPU, first on a GPU
    assert [auto.cached_backbone(gpu).model for gpu in (False, True)] == ["efficientnet_b0", "convnext_tiny"]
    assert auto.weights_within_reach(gpu=True).model == "convnext_tiny"
    (models / "convnext_tiny_notop.h5").unlink()
    assert auto.cached_backbone(gpu=True).model == "efficientnet_b0"  # the GPU's next choice that is there


def test_online_is_decided_quickly_and_never_with_kit_offline(monkeypatch):
    asked = []
    monkeypatch.setattr(auto.socket, "create_connection", lambda *a, **k: asked.append(a) or (_ for _ in ()).throw(
        OSError("no network")))
    assert auto.online() is False and asked == []  # KIT_OFFLINE=1 (conftest): not even asked
    monkeypatch.setenv("KIT_OFFLINE", "0")
    assert auto.online(timeout=0.5) is False and asked == [(auto.WEIGHTS_HOST,)]
    monkeypatch.setattr(auto.socket, "create_connection", lambda *a, **k: type("S", (), {"close": lambda s: 0})())
    assert auto.online(timeout=0.5) is True
    monkeypatch.setattr(auto, "settings_backbone", lambda: None)
    monkeypatch.setattr(auto, "cached_backbone", lambda gpu=False: None)
    assert auto.weights_within_reach().model == auto.DOWNLOADED  # this machine: no GPU
    assert auto.weights_within_reach(gpu=True).model == auto.DOWNLOADED_ON_GPU == "convnext_tiny"


def test_budget_reads_the_backbone_at_the_largest_size_whose_frozen_phase_fits(monkeypatch, tiny_backbone):
    path, digest = tiny_backbone
    config = Config(data="d", model="backbone_file", backbone_file=str(path), trust_model=digest)
    timed = []

    def seconds_per_image(config, size, batch_size=16):
        timed.append(size)
        return 0.01 * (size / 288) ** 2, 1

    monkeypatch.setattr(budget, "_feature_seconds_per_image", seconds_per_image)
    # 1,000 + 250 images: 15 s of features at 288 px, 9 at 224, 1.7 at 96 (+ 3 s tracing, and the reserve: 5 s +
    # the predictions of the 250): 26 s in all at 288, 19 at 224, against 85% of what is left
    plenty = Budget(time.time() + 1000, 250)
    assert budget.backbone_size_for_budget(plenty, config, 288, 1000, 250)[0] == 288 and timed == [288]
    timed.clear()
    tight = Budget(time.time() + 25, 250)
    size, _ = budget.backbone_size_for_budget(tight, config, 288, 1000, 250)
    assert size == 224 and timed == [288, 224]  # the size chosen is timed itself
    roomier = Budget(time.time() + 32, 250)
    assert budget.backbone_size_for_budget(roomier, config, 288, 1000, 250)[0] == 288
    hopeless = Budget(time.time() + 8, 250)
    assert budget.backbone_size_for_budget(hopeless, config, 288, 1000, 250)[0] == 0


def test_run_with_the_settings_file_then_the_fallback_line(settings, tiny_backbone, tmp_path):
    """One tiny photo competition, run twice with no model flag: with the settings file (the backbone, its reason
    in the output and config.json), and with no weights within reach (kit's CNN and the one line saying why)."""
    data = tmp_path / "photos"
    for k, label in enumerate(["cat", "dog", "emu"] * 5):
        (data / "train" / label).mkdir(parents=True, exist_ok=True)
        make_image(label, k, size=64, mode="RGB").save(data / "train" / label / f"{k}.jpg", quality=95)
    (data / "test").mkdir()
    for j in range(3):
        make_image("cat", 100 + j, size=64, mode="RGB").save(data / "test" / f"t{j}.jpg", quality=95)
    path, digest = tiny_backbone
    written = settings(f'[auto]\nbackbone_file = "{path}"\ntrust_model = "{digest}"\n')
    common = ["--runs-dir", str(tmp_path / "runs"), "--fine-tune-epochs", "1", "--epochs", "1", "--image-size", "32"]
    result = CliRunner().invoke(cli, ["run", str(data), "--name", "bb", *common], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    reason = f"photos (colour, median 64×64) → tiny (from {auto.shown(written)})"
    assert f"Model: {reason}\n" in result.output and "Frozen phase" in result.output
    config = json.loads((tmp_path / "runs" / "bb" / "config.json").read_text())
    assert (config["model"], config["auto_reason"], config["backbone_file"]) == ("backbone_file", reason, str(path))
    written.unlink()  # no settings, an empty Keras cache (conftest), offline: kit's CNN, and why
    result = CliRunner().invoke(cli, ["run", str(data), "--name", "cnn", *common], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    line = next(line for line in result.output.splitlines() if line.startswith("Model: "))
    assert line.startswith("Model: photos (colour, median 64×64), but no pretrained weights within reach (no [auto] "
                           "backbone_file in ") and line.endswith("→ baseline")
    assert 'put [auto] backbone_file = "/path/to/backbone.keras" and trust_model = "<its sha256>" in' in line
    config = json.loads((tmp_path / "runs" / "cnn" / "config.json").read_text())
    assert config["model"] == "baseline" and config["auto_reason"] == line[len("Model: "):]


@pytest.mark.parametrize("counts, asked, expected", [
    ({"a": 48, "b": 48, "c": 60}, -1, 0),  # the flower competition's size: the head alone
    ({"a": 1000, "b": 1000}, -1, 0),  # cats vs dogs: the head kept its place on validation
    ({"a": 1999, "b": 2000, "c": 9000}, -1, 3),  # the median class decides
    ({"a": 1999, "b": 1999, "c": 9000}, -1, 0),
    ({"benign": 2000, "malignant": 40}, -1, 0),  # of two classes the smaller decides
    ({"a": 5, "b": 5}, 2, 2),  # yours stand
    ({"a": 5000, "b": 5000}, 0, 0),
])
def test_a_backbone_fine_tunes_by_default_only_with_enough_images_per_class(counts, asked, expected):
    n = sum(counts.values())
    photos = ValidationReport(problems=[], class_counts=counts, num_test=0, sizes=Counter({(500, 375): n}),
                              modes=Counter({"RGB": n}))
    config = resolve_config(Config(data="d", model="mobilenet_v2", fine_tune_epochs=asked), photos)
    assert config.fine_tune_epochs == expected
    from kit.training import fine_tune_line

    line = fine_tune_line(config.fine_tune_epochs, photos)
    assert ("Fine-tuning: none (median class" in line) == (expected == 0) and "\n" not in line


def test_a_tight_budget_drops_the_mirror_views_before_it_drops_the_backbone(settings, tiny_backbone, monkeypatch):
    path, digest = tiny_backbone
    settings(f'[auto]\nbackbone_file = "{path}"\ntrust_model = "{digest}"\n')
    monkeypatch.setattr(budget, "_feature_seconds_per_image", lambda config, size, batch_size=16:
                        (0.1 * (size / 288) ** 2, 1))
    # 1,000 + 250 images at 96 px: ~45 s with the mirror views (and the mirror's predictions), ~28 s without
    config = resolve_config(Config(data="d"), report(), Budget(time.time() + 40, 500), (1000, 250))
    assert (config.model, config.image_size, config.augment, config.feature_views) == ("backbone_file", 96, "light", 1)
    assert run_tta(config) == 0
    asked = resolve_config(Config(data="d", augment="strong"), report(), Budget(time.time() + 40, 500), (1000, 250))
    assert (asked.model, asked.image_size, asked.feature_views) == ("backbone_file", 96, 2)  # yours stand
    assert "read at 96 px with 2 view(s) although its features may take about" in asked.auto_reason
    hopeless = resolve_config(Config(data="d"), report(), Budget(time.time() + 5, 500), (1000, 250))
    assert (hopeless.model, hopeless.image_size, hopeless.feature_views) == ("backbone_file", 96, 1)
    assert "kit's CNNs from scratch score near chance on photos in so little" in hopeless.auto_reason
    roomy = resolve_config(Config(data="d"), report(), Budget(time.time() + 10_000, 500), (1000, 250))
    assert (roomy.image_size, roomy.augment, roomy.feature_views) == (288, "strong", 2)
