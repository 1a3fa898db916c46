"""The data kit: smoke data made in the data sets' real layouts, read back by the same readers
that read the course's mounted data; a full-profile data dir that lacks a file is refused."""

from __future__ import annotations

import numpy as np
import pytest

from grader import data
from grader.errors import UsageError


def test_cifar_binary_batches_round_trip_and_hold_every_class(tmp_path):
    root = data.prepare_data_dir(("cifar10",), "smoke", None, tmp_path)
    assert data.cifar_missing(root) == []
    images, labels = data.read_cifar_bin(root / data.CIFAR_FOLDER / "test_batch.bin")
    assert images.shape == (297, 3, 32, 32) and images.dtype == np.uint8
    assert set(labels.tolist()) == set(range(10))
    total = sum(len(data.read_cifar_bin(root / data.CIFAR_FOLDER / f"data_batch_{i}.bin")[1]) for i in range(1, 6))
    assert total + 297 == 1797
    # the binary layout: 1 label byte, then 3 planes of 1024 bytes
    raw = (root / data.CIFAR_FOLDER / "test_batch.bin").read_bytes()
    assert raw[0] == labels[0] and raw[1:1025] == images[0, 0].tobytes()


def test_a_miniature_full_profile_data_dir_is_used_as_it_is(tmp_path):
    mini = tmp_path / "course-data"
    folder = mini / data.CIFAR_FOLDER
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        data.write_cifar_bin(folder / name, rng.integers(0, 256, (4, 3, 32, 32), dtype=np.uint8),
                             rng.integers(0, 10, 4))
    assert data.prepare_data_dir(("cifar10",), "full", mini, tmp_path / "ws") == mini
    (folder / "test_batch.bin").unlink()
    with pytest.raises(UsageError, match="test_batch.bin"):
        data.prepare_data_dir(("cifar10",), "full", mini, tmp_path / "ws")
    with pytest.raises(UsageError, match="--data-dir"):
        data.prepare_data_dir(("cifar10",), "full", None, tmp_path / "ws")


def test_the_series_is_real_sunspots_in_the_course_layout(tmp_path):
    root = data.prepare_data_dir(("series",), "smoke", None, tmp_path)
    values = data.read_series(root)
    assert len(values) == 309 and values.min() >= 0 and 45 < values.mean() < 55
    assert data.series_missing(root) == []


def test_the_parallel_corpus_and_the_seq2seq_task_are_deterministic(tmp_path):
    root = data.prepare_data_dir(("multi30k", "seq2seq"), "smoke", None, tmp_path)
    train = data.read_parallel(root, "train")
    assert len(train) == 2000 and train == data.parallel_sentences(2000, 1)
    assert all(e.endswith(" .") and d.endswith(" .") for e, d in train)
    assert data.multi30k_missing(root) == [] and data.seq2seq_missing(root) == []
    pairs = data.seq2seq_pairs(5, 12)
    assert all(t == s[::-1] for s, t in pairs)
