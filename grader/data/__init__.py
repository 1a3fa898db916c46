"""Data for the two profiles, in the data sets' usual layouts.

`full` (GPU runners): DATA_DIR is the course's mounted data, e.g. `cifar-10-batches-bin/` (CIFAR-10
in its binary layout: no pickle anywhere), a UCI time series as the CSV that course.yaml names,
Multi30k's plain text files. `smoke` (CI, a TA's laptop): the grader makes small data in the SAME
layouts, from data that installed packages ship (scikit-learn's 8x8 digits images for the CNN,
statsmodels' yearly sunspots series) or generated here (a seq2seq task, a parallel corpus), so a
notebook reads both profiles with one code path. Nothing is downloaded.

The judge uses the same readers to draw its held-out inputs (the test split), which the notebook
never sees as a whole: it gets them only through the probe, after its own cells ran.
"""

from __future__ import annotations

import csv
import io
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from grader import yamlio
from grader.errors import UsageError

CIFAR_FOLDER = "cifar-10-batches-bin"
CIFAR_RECORD = 1 + 3 * 32 * 32
CIFAR_LABELS = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
MULTI30K_FOLDER = "multi30k"
MULTI30K_SPLITS = ("train", "val", "test_2016_flickr")
SEQ2SEQ_FOLDER = "seq2seq"


@dataclass(frozen=True)
class Dataset:
    name: str
    make_smoke: Callable[[Path], None]      # writes the small data into DATA_DIR
    missing: Callable[[Path], list[str]]    # what a mounted full-profile DATA_DIR lacks (empty: fine)
    layout: str                             # for messages: what the folder must hold


# --- CIFAR-10, binary layout -------------------------------------------------------------------

def write_cifar_bin(path: Path, images: np.ndarray, labels: np.ndarray) -> None:
    """Records of 1 label byte + 3072 pixel bytes (R, G, B planes of 32x32), as CIFAR-10's
    `data_batch_N.bin` / `test_batch.bin`."""
    assert images.shape[1:] == (3, 32, 32) and images.dtype == np.uint8
    records = np.concatenate([labels.astype(np.uint8)[:, None], images.reshape(len(images), -1)], axis=1)
    path.write_bytes(records.tobytes())


def read_cifar_bin(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, 3, 32, 32), labels int64 (N,)) from one CIFAR-10 binary batch file."""
    raw = np.frombuffer(Path(path).read_bytes(), dtype=np.uint8)
    if raw.size % CIFAR_RECORD:
        raise ValueError(f"{path}: not a CIFAR-10 binary batch ({raw.size} bytes is not a multiple of {CIFAR_RECORD})")
    records = raw.reshape(-1, CIFAR_RECORD)
    return records[:, 1:].reshape(-1, 3, 32, 32).copy(), records[:, 0].astype(np.int64)


def _digits_as_cifar() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    small = (digits.images / 16.0 * 255.0).round().astype(np.uint8)          # (N, 8, 8)
    big = small.repeat(4, axis=1).repeat(4, axis=2)                            # (N, 32, 32)
    # three channels that differ (so colour code paths are exercised), still one digit per image
    images = np.stack([big, big[:, ::-1, :] // 2 + 64, 255 - big], axis=1)     # (N, 3, 32, 32)
    return images, digits.target.astype(np.int64)


def make_cifar_smoke(target: Path) -> None:
    images, labels = _digits_as_cifar()
    order = np.random.default_rng(20261130).permutation(len(labels))
    images, labels = images[order], labels[order]
    folder = target / CIFAR_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    test = 297
    train_images, train_labels = images[test:], labels[test:]
    for i, part in enumerate(np.array_split(np.arange(len(train_labels)), 5), start=1):
        write_cifar_bin(folder / f"data_batch_{i}.bin", train_images[part], train_labels[part])
    write_cifar_bin(folder / "test_batch.bin", images[:test], labels[:test])
    (folder / "batches.meta.txt").write_text("\n".join(CIFAR_LABELS) + "\n", encoding="ascii")


def cifar_missing(root: Path) -> list[str]:
    folder = root / CIFAR_FOLDER
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
    return [f"{CIFAR_FOLDER}/{n}" for n in names if not (folder / n).is_file()]


# --- a time series as a CSV (the file and column course.yaml names) -----------------------------

def series_config() -> tuple[str, str, str]:
    """(file, date column, value column) of the course's time series, from course.yaml `data.series`."""
    course = Path(__file__).resolve().parents[2] / "course.yaml"
    config = {}
    if course.is_file():
        config = ((yamlio.safe_load(course.read_text(encoding="utf-8")) or {}).get("data") or {}).get("series") or {}
    return (str(config.get("file", "timeseries.csv")), str(config.get("date_column", "date")),
            str(config.get("value_column", "value")))


def make_series_smoke(target: Path) -> None:
    """statsmodels' yearly sunspot numbers (1700-2008, 309 rows), a real series, offline."""
    import statsmodels.api as sm

    data = sm.datasets.sunspots.load_pandas().data
    file, date_column, value_column = series_config()
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([date_column, value_column])
    for year, value in zip(data["YEAR"], data["SUNACTIVITY"]):
        writer.writerow([f"{int(year)}-01-01", f"{float(value):.1f}"])
    target.mkdir(parents=True, exist_ok=True)
    (target / file).write_text(buffer.getvalue(), encoding="utf-8")


def read_series(root: Path) -> np.ndarray:
    """The value column of the course's series, as float64, in file order."""
    file, _, value_column = series_config()
    with open(root / file, newline="", encoding="utf-8") as handle:
        return np.array([float(row[value_column]) for row in csv.DictReader(handle)], dtype=np.float64)


def series_missing(root: Path) -> list[str]:
    file, date_column, value_column = series_config()
    path = root / file
    if not path.is_file():
        return [file]
    with open(path, newline="", encoding="utf-8") as handle:
        header = next(csv.reader(handle), [])
    return [f"{file}: column {c}" for c in (date_column, value_column) if c not in header]


# --- a parallel corpus in Multi30k's layout -----------------------------------------------------

_LEXICON = {  # English -> German, with the article by gender: learnable word by word, with agreement
    "the": None, "a": None,
    "man": ("Mann", "m"), "woman": ("Frau", "f"), "child": ("Kind", "n"), "dog": ("Hund", "m"),
    "cat": ("Katze", "f"), "horse": ("Pferd", "n"), "boy": ("Junge", "m"), "girl": ("Mädchen", "n"),
    "ball": ("Ball", "m"), "street": ("Straße", "f"), "house": ("Haus", "n"), "car": ("Auto", "n"),
}
_VERBS = {"sees": "sieht", "likes": "mag", "finds": "findet", "has": "hat", "follows": "folgt"}
_ADJECTIVES = {"big": "große", "small": "kleine", "red": "rote", "old": "alte", "young": "junge"}
_ARTICLES = {("the", "m", "nom"): "der", ("the", "f", "nom"): "die", ("the", "n", "nom"): "das",
             ("the", "m", "acc"): "den", ("the", "f", "acc"): "die", ("the", "n", "acc"): "das",
             ("a", "m", "nom"): "ein", ("a", "f", "nom"): "eine", ("a", "n", "nom"): "ein",
             ("a", "m", "acc"): "einen", ("a", "f", "acc"): "eine", ("a", "n", "acc"): "ein"}


def _phrase(rng: random.Random, case: str) -> tuple[list[str], list[str]]:
    article = rng.choice(("the", "a"))
    noun = rng.choice([n for n, v in _LEXICON.items() if v])
    german_noun, gender = _LEXICON[noun]
    english, german = [article], [_ARTICLES[(article, gender, case)]]
    if rng.random() < 0.4:
        adjective = rng.choice(sorted(_ADJECTIVES))
        english.append(adjective)
        german.append(_ADJECTIVES[adjective] + ("" if article == "the" or gender == "f" else
                                                 ("r" if case == "nom" and gender == "m" else
                                                  "s" if gender == "n" else "n")))
    return english + [noun], german + [german_noun]


def parallel_sentences(n: int, seed: int) -> list[tuple[str, str]]:
    """`n` generated (English, German) sentence pairs: subject, verb, object, with German articles
    and adjective endings by gender and case."""
    rng = random.Random(seed)
    pairs = []
    for _ in range(n):
        subject_en, subject_de = _phrase(rng, "nom")
        verb = rng.choice(sorted(_VERBS))
        object_en, object_de = _phrase(rng, "acc")
        english = " ".join(subject_en + [verb] + object_en) + " ."
        german = " ".join(subject_de + [_VERBS[verb]] + object_de) + " ."
        pairs.append((english[0].upper() + english[1:], german[0].upper() + german[1:]))
    return pairs


def make_multi30k_smoke(target: Path) -> None:
    folder = target / MULTI30K_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    for split, count, seed in zip(MULTI30K_SPLITS, (2000, 200, 200), (1, 2, 3)):
        pairs = parallel_sentences(count, seed)
        (folder / f"{split}.en").write_text("\n".join(e for e, _ in pairs) + "\n", encoding="utf-8")
        (folder / f"{split}.de").write_text("\n".join(d for _, d in pairs) + "\n", encoding="utf-8")


def read_parallel(root: Path, split: str) -> list[tuple[str, str]]:
    folder = root / MULTI30K_FOLDER
    english = (folder / f"{split}.en").read_text(encoding="utf-8").splitlines()
    german = (folder / f"{split}.de").read_text(encoding="utf-8").splitlines()
    return list(zip(english, german))


def multi30k_missing(root: Path) -> list[str]:
    return [f"{MULTI30K_FOLDER}/{s}.{lang}" for s in MULTI30K_SPLITS for lang in ("en", "de")
            if not (root / MULTI30K_FOLDER / f"{s}.{lang}").is_file()]


# --- a generated seq2seq task (w5-attention) ------------------------------------------------------

def seq2seq_pairs(n: int, seed: int, *, vocab: int = 10, min_len: int = 3, max_len: int = 8) -> list[tuple[list[int], list[int]]]:
    """Reverse a sequence of digit tokens: every output token is aligned to one input token, so a
    working attention learns a clean anti-diagonal alignment."""
    rng = random.Random(seed)
    pairs = []
    for _ in range(n):
        source = [rng.randrange(vocab) for _ in range(rng.randint(min_len, max_len))]
        pairs.append((source, source[::-1]))
    return pairs


def make_seq2seq(target: Path) -> None:
    folder = target / SEQ2SEQ_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    for split, count, seed in (("train", 3000, 11), ("test", 300, 12)):
        lines = [" ".join(map(str, s)) + "\t" + " ".join(map(str, t)) for s, t in seq2seq_pairs(count, seed)]
        (folder / f"{split}.tsv").write_text("\n".join(lines) + "\n", encoding="ascii")


def seq2seq_missing(root: Path) -> list[str]:
    return [f"{SEQ2SEQ_FOLDER}/{s}.tsv" for s in ("train", "test") if not (root / SEQ2SEQ_FOLDER / f"{s}.tsv").is_file()]


DATASETS: dict[str, Dataset] = {
    "cifar10": Dataset("cifar10", make_cifar_smoke, cifar_missing, f"{CIFAR_FOLDER}/ (CIFAR-10 binary version)"),
    "series": Dataset("series", make_series_smoke, series_missing, "the time series CSV named in course.yaml"),
    "multi30k": Dataset("multi30k", make_multi30k_smoke, multi30k_missing,
                        f"{MULTI30K_FOLDER}/{{train,val,test_2016_flickr}}.{{en,de}}"),
    # generated in both profiles: there is no course data set for it
    "seq2seq": Dataset("seq2seq", make_seq2seq, seq2seq_missing, f"{SEQ2SEQ_FOLDER}/{{train,test}}.tsv"),
}


def prepare_data_dir(datasets: tuple[str, ...], profile: str, mounted: Path | None, workspace: Path) -> Path | None:
    """The folder to mount as DATA_DIR: in `full`, the course's mounted data (checked for the
    expected layout); in `smoke`, small data made in `workspace` (or `mounted`, when the TA gives
    one: a miniature data dir in the real layout, as the tests use)."""
    if not datasets:
        return mounted
    if mounted is not None:
        problems = [p for name in datasets for p in DATASETS[name].missing(mounted)]
        if problems:
            raise UsageError(f"--data-dir {mounted} lacks {', '.join(problems[:6])} "
                             f"(expected: {'; '.join(DATASETS[n].layout for n in datasets)})")
        return mounted
    if profile == "full" and any(n != "seq2seq" for n in datasets):
        raise UsageError("the full profile reads the course's data: give --data-dir "
                         f"({'; '.join(DATASETS[n].layout for n in datasets)})")
    target = workspace / "data"
    for name in datasets:
        DATASETS[name].make_smoke(target)
    return target
