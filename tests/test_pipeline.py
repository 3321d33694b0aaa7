"""tf.data pipeline: uint8 batches in a stable order, seeded shuffling, augmentation on training only."""

from pathlib import Path

import numpy as np
import pytest
from conftest import make_image
from PIL import Image

from kit.pipeline import make_dataset, make_training_stream


def _files(tmp_path, n=10, mode="L"):
    paths = []
    for k in range(n):
        p = tmp_path / f"{k}.png"
        make_image(("cat", "dog")[k % 2], k, size=12, mode=mode).save(p)
        paths.append(str(p))
    return paths


def test_eval_batches_are_uint8_in_order(tmp_path):
    paths = _files(tmp_path)
    batches = list(make_dataset(paths, list(range(10)), image_size=8, channels=1, batch_size=4).as_numpy_iterator())
    assert [len(b[1]) for b in batches] == [4, 4, 2]
    assert batches[0][0].dtype == np.uint8 and batches[0][0].shape == (4, 8, 8, 1)
    assert np.concatenate([b[1] for b in batches]).tolist() == list(range(10))


def _stream(paths, **kwargs):
    options = dict(image_size=12, channels=1, batch_size=4, seed=1, augment="none", epochs=2)
    return make_training_stream(paths, list(range(len(paths))), **{**options, **kwargs})


def test_training_order_is_seeded_and_reshuffled_each_epoch(tmp_path):
    paths = _files(tmp_path)
    labels = lambda ds: np.concatenate([y for _, y in ds.as_numpy_iterator()]).tolist()  # noqa: E731
    first, again, other = labels(_stream(paths)), labels(_stream(paths)), labels(_stream(paths, seed=2))
    assert first == again  # same seed, same order
    assert first != other
    assert first[:10] != first[10:]  # a new order every epoch
    assert sorted(first[:10]) == sorted(first[10:]) == list(range(10))


def test_augmentation_changes_training_batches_only(tmp_path):
    paths = _files(tmp_path)
    plain = next(iter(make_dataset(paths, [0] * 10, image_size=12, channels=1, batch_size=10)))[0].numpy()
    images, order = next(iter(_stream(paths, batch_size=10, augment="strong", seed=3)))
    images, order = images.numpy(), order.numpy()
    assert images.dtype == np.uint8
    assert not np.array_equal(images, plain[order])  # augmented
    val = make_dataset(paths, [0] * 10, image_size=12, channels=1, batch_size=10)
    assert np.array_equal(next(iter(val))[0].numpy(), plain)  # evaluation batches are never augmented


def test_a_resumed_stream_repeats_the_uninterrupted_batches_exactly(tmp_path):
    import keras

    keras.utils.set_random_seed(5)  # as training does: a global seed must not change how the stream is built
    paths = _files(tmp_path)
    full = list(_stream(paths, augment="strong", epochs=3).as_numpy_iterator())  # 3 batches per epoch
    for epoch, skip in [(0, 2), (1, 0), (1, 1), (2, 2)]:
        resumed = list(_stream(paths, augment="strong", epochs=3, first_epoch=epoch, skip_batches=skip)
                       .as_numpy_iterator())
        expected = full[epoch * 3 + skip:]
        assert len(resumed) == len(expected)
        for (x, y), (x0, y0) in zip(resumed, expected):
            assert np.array_equal(y, y0) and np.array_equal(x, x0)


@pytest.mark.parametrize("mode", ["L", "RGB"])  # gray PNGs decode in TensorFlow; RGB ones to 1 channel in Pillow
def test_images_are_decoded_once_across_epochs(tmp_path, mode):
    paths = _files(tmp_path, mode=mode)
    stream = _stream(paths, epochs=4).as_numpy_iterator()
    first_epoch = [next(stream) for _ in range(3)]  # 10 images in batches of 4
    for p in paths:  # later epochs must come from the cache: there is nothing left to decode
        Path(p).unlink()
    batches = first_epoch + list(stream)
    assert sorted(np.concatenate([y for _, y in batches]).tolist()) == sorted(list(range(10)) * 4)


def test_a_second_stream_of_the_same_run_reads_the_first_ones_cache(tmp_path):
    """The epoch a --time-budget times is one stream, the epochs after it another: they share the decoded set."""
    from kit.pipeline import make_training_stream, training_set

    paths = _files(tmp_path)
    labels = np.arange(10)
    args = dict(image_size=12, channels=1, batch_size=4, seed=0, augment="none", epochs=3)
    whole = list(make_training_stream(paths, labels, **args).as_numpy_iterator())  # one stream, decoding itself
    shared = training_set(paths, labels, 12, 1, 0, True, 4)
    first = list(make_training_stream(paths, labels, **{**args, "epochs": 1}, decoded=shared).as_numpy_iterator())
    for p in paths:  # nothing left to decode: the second stream must read what the first cached
        Path(p).unlink()
    rest = list(make_training_stream(paths, labels, first_epoch=1, **args, decoded=shared).as_numpy_iterator())
    assert len(first + rest) == len(whole) == 9
    assert all(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) for a, b in zip(first + rest, whole))


def test_disk_cache_gives_the_same_batches_and_is_reused_without_decoding(tmp_path):
    from kit.pipeline import disk_cache

    paths = _files(tmp_path)
    in_memory = list(_stream(paths, augment="strong").as_numpy_iterator())
    prefix = disk_cache(paths, 12, 1, str(tmp_path / "cache"))
    on_disk = list(_stream(paths, augment="strong", cache=prefix).as_numpy_iterator())
    assert all(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) for a, b in zip(in_memory, on_disk))
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [Path(prefix).name + ".u8"]  # one file, no leftovers

    for p in paths:  # a later run on the same files must not decode them again
        Path(p).rename(p + ".hidden")
    again = disk_cache(paths, 12, 1, str(tmp_path / "cache"))
    assert again == prefix
    reread = list(_stream(paths, augment="strong", cache=again).as_numpy_iterator())
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(in_memory, reread))


def test_a_half_written_disk_cache_is_discarded(tmp_path):
    from kit.pipeline import disk_cache

    paths = _files(tmp_path)
    prefix = disk_cache(paths, 12, 1, str(tmp_path / "cache"))
    partial = [Path(prefix).parent / f".{Path(prefix).name}.u8.{tag}.tmp" for tag in ("a1b2", "c3d4")]
    for p in partial:  # what atomic_write leaves when its process is killed
        p.write_bytes(b"half")
    assert disk_cache(paths, 12, 1, str(tmp_path / "cache")) == prefix
    assert not any(p.exists() for p in partial)
    assert len(list(_stream(paths, cache=prefix).as_numpy_iterator())) == 6


def test_datasets_know_their_length(tmp_path):
    paths = _files(tmp_path)  # Keras warns "ran out of data" on a validation set of unknown length
    assert int(make_dataset(paths, list(range(10)), image_size=8, channels=1, batch_size=4).cardinality()) == 3
    assert int(_stream(paths).cardinality()) == 6


def test_many_small_images_decode_in_processes_in_the_files_order(tmp_path, monkeypatch):
    import kit.decode
    import kit.images

    paths = _files(tmp_path, n=70)  # chunks of 32, 32 and 6
    on_threads = np.concatenate(list(kit.decode._decoded_chunks(paths, 12, 1).as_numpy_iterator()))
    monkeypatch.setattr(kit.decode, "PROCESSES_FROM", 20)
    monkeypatch.setattr(kit.decode, "read_images", lambda *a: 1 / 0)  # this process must decode none of them
    in_processes = np.concatenate(list(kit.decode._decoded_chunks(paths, 12, 1).as_numpy_iterator()))
    assert kit.images._process_pool is not None
    np.testing.assert_array_equal(in_processes, on_threads)


# A script without a main guard: multiprocessing would run it again in every decoding process unless kit hides it.
DECODE_THEN_WAIT = """
import os, sys, time
with open(sys.argv[1], "a") as f:
    f.write("ran\\n")
import kit.images
pool, n = kit.images.process_pool()
print(" ".join(str(p) for p in {pool.submit(os.getpid).result() for _ in range(20)}), flush=True)
time.sleep(60)
"""


def test_decoding_processes_skip_the_callers_script_and_exit_when_it_is_killed(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    script = tmp_path / "train.py"
    script.write_text(DECODE_THEN_WAIT)
    parent = subprocess.Popen([sys.executable, str(script), str(tmp_path / "ran.txt")], stdout=subprocess.PIPE,
                              text=True)
    try:
        parent.stdout.readline()  # the processes are up
        children = [p for p in _pids() if _stat(p)[1] == str(parent.pid)]  # decoding processes (and a helper)
        assert len(children) >= 2
        assert (tmp_path / "ran.txt").read_text() == "ran\n"  # the script ran once, in the parent only
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    deadline = time.time() + 10
    alive = children
    while alive and time.time() < deadline:
        time.sleep(0.2)
        alive = [p for p in children if _stat(p)[0] not in ("Z", "gone")]
    assert not alive, f"processes {alive} outlived their killed parent"


def _pids():
    import os

    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def _stat(pid):
    """(state, parent pid) from /proc, ("gone", "") once the process has exited."""
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return fields[0], fields[1]
    except OSError:
        return "gone", ""


def test_images_decoded_by_tensorflow_have_exactly_the_loaders_pixels(tmp_path, monkeypatch):
    """Plain JPEGs and PNGs skip Pillow for TensorFlow's decoders: at every JPEG scaling, with and without the final
    resize, gray or RGB, mixed with files only Pillow reads (EXIF rotation, CMYK, palette), the pixels are
    read_image's."""
    from test_images import _exif_segment, _jpeg_with, _photo

    import kit.decode
    from kit.images import read_image

    for name, (height, width) in {"r1": (40, 30), "r2": (32, 33), "r4": (64, 70), "r8": (130, 200),
                                  "exact": (16, 16), "exact2": (32, 32)}.items():
        _photo(height, width, seed=height).save(tmp_path / f"{name}.jpg")
    _photo(64, 64).convert("L").save(tmp_path / "gray.jpg")
    _photo(48, 48).save(tmp_path / "progressive.jpg", progressive=True)
    _photo(16, 16, seed=1).convert("L").save(tmp_path / "gray16.png")
    _photo(20, 24, seed=2).convert("L").save(tmp_path / "gray-resized.png")
    _photo(16, 16, seed=5).save(tmp_path / "interlaced.png", interlace=1)
    _photo(40, 30, seed=4).save(tmp_path / "upright-exif.jpg")  # a camera's EXIF, orientation 1
    _jpeg_with(tmp_path / "upright-exif.jpg", _exif_segment(1))
    plain = sorted(str(p) for p in tmp_path.iterdir())
    _photo(16, 16, seed=3).save(tmp_path / "rgb.png")  # plain for RGB; for one channel Pillow converts it
    exif = Image.new("RGB", (1, 1)).getexif()
    exif[0x0112] = 6
    _photo(40, 30).save(tmp_path / "rotated.jpg", exif=exif)
    _photo(40, 30).convert("CMYK").save(tmp_path / "cmyk.jpg")
    _photo(20, 20).convert("P").save(tmp_path / "palette.png")
    others = [str(tmp_path / name) for name in ("rotated.jpg", "cmyk.jpg", "palette.png")]
    mixed = plain[:3] + others + [str(tmp_path / "rgb.png")] + plain[3:]
    jpegs = [p for p in plain if p.endswith(".jpg")]
    pngs = [p for p in plain if p.endswith(".png")]

    pillow_reads = []
    monkeypatch.setattr(kit.decode, "read_image", lambda path, *a: pillow_reads.append(path) or read_image(path, *a))
    for paths in (plain, mixed, jpegs, pngs, jpegs[:2], jpegs[:1]):  # all plain; mixed; fewer codecs and resizes
        for channels in (3, 1):
            pillow_reads.clear()
            got = np.stack(list(kit.decode.decoded_images(paths, 16, channels).as_numpy_iterator()))
            want = np.stack([read_image(p, 16, channels) for p in paths])
            assert got.shape == want.shape and (got == want).all(), (len(paths), channels)
            rgb_pngs = [str(tmp_path / name) for name in ("rgb.png", "interlaced.png")]  # Pillow's to make gray
            by_pillow = set(paths) & set(others + (rgb_pngs if channels == 1 else []))
            assert sorted(pillow_reads) == sorted(by_pillow)  # the plain ones never went to Pillow


def test_the_first_epoch_starts_before_every_image_is_decoded(tmp_path):
    """The first epoch reads the images in training_order as they decode: no shuffle buffer has to hold them all
    before the first batch, so training starts while the rest decode. Checked with a file that cannot be read
    at the end of that order: the first batches come out, and the failure only where that file is."""
    from kit.pipeline import training_order

    paths = _files(tmp_path)
    last = paths[training_order(len(paths), 1)[-1]]
    Path(last).write_bytes(b"not an image")
    stream = _stream(paths).as_numpy_iterator()  # seed 1, batches of 4
    assert [len(next(stream)[1]) for _ in range(2)] == [4, 4]
    with pytest.raises(Exception, match=Path(last).name):
        next(stream)
