"""`similarity_report`: a batch folder in, the pairs of submissions that look copied out.

read (grader.similarity.collect) -> fingerprint every document once (copydetect, the template as
boilerplate) -> compare pairs from the fingerprints -> free text, figures, measured numbers from
inverted indexes -> similarity.csv + similarity.html (grader.similarity.render).

Scale: every document is tokenised and fingerprinted once; a pair is compared from the two
fingerprint sets. Pairs that share no fingerprint are skipped by a set test, and pairs whose
shared fingerprints cannot reach the threshold (each shared fingerprint covers at most k tokens)
are skipped before copydetect's slice computation.
"""

from __future__ import annotations

import itertools
import os
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

from grader.errors import UsageError
from grader.i18n import LANGUAGES
from grader.similarity.collect import Document, Template, load_template, normalise_answer, read_archive, read_batch

__all__ = ["Settings", "CodeMatch", "Pair", "SimilarityReport", "similarity_report", "compare_documents",
           "check_available"]

KINDS = ("code", "answer", "image", "numbers")


@dataclass(frozen=True)
class Settings:
    """What counts as evidence. The defaults are copydetect's own (k, window) and thresholds
    chosen so that independent work is not flagged (see tests/test_similarity.py)."""

    threshold: float = 0.5          # code: share of one side's code (copydetect similarity) found in the other
    noise_t: int = 25               # copydetect: k-gram length over the filtered tokens (shorter matches are noise)
    guarantee_t: int = 30           # copydetect: matches this long are always found (window = guarantee - noise + 1)
    image_distance_max: int = 10    # figures: perceptual-hash bits (of 256) that may differ
    min_shared_numbers: int = 4     # measured numbers two submissions must share
    min_answer_chars: int = 30      # free text shorter than this (normalised) is not compared
    common_share: float = 0.2       # a figure or number of more than this share of the class (and of more
                                    # than 2 students) is common, not evidence
    max_pairs_shown: int = 100      # pairs with a side-by-side view in similarity.html (the CSV has all)

    def __post_init__(self) -> None:
        if not 0 < self.threshold <= 1:
            raise UsageError(f"--threshold must be in (0, 1], got {self.threshold}")
        if self.noise_t < 1 or self.guarantee_t < self.noise_t:
            raise UsageError("the guarantee threshold must be at least the noise threshold (both >= 1)")

    @property
    def window(self) -> int:
        return self.guarantee_t - self.noise_t + 1


@dataclass
class CodeMatch:
    """copydetect's verdict on one pair: the share of each side found in the other and where."""

    similarity_a: float
    similarity_b: float
    tokens: int
    slices_a: list[tuple[int, int]] = field(default_factory=list)
    slices_b: list[tuple[int, int]] = field(default_factory=list)

    @property
    def score(self) -> float:
        return max(self.similarity_a, self.similarity_b)


@dataclass
class Pair:
    a: Document
    b: Document
    code: CodeMatch | None = None
    answers: list[dict] = field(default_factory=list)   # {"tag_a", "tag_b", "text"}
    images: list[dict] = field(default_factory=list)    # {"a", "b", "distance", "identical", "thumb_a", "thumb_b"}
    numbers: list[str] = field(default_factory=list)
    flagged_code: bool = False

    @property
    def kinds(self) -> list[str]:
        present = {"code": self.flagged_code, "answer": bool(self.answers), "image": bool(self.images),
                   "numbers": bool(self.numbers)}
        return [k for k in KINDS if present[k]]

    @property
    def score(self) -> float:
        """The code similarity (0 when the code was not compared or matched nothing)."""
        return self.code.score if self.code else 0.0

    def rank_key(self) -> tuple:
        return (-len(self.kinds), -self.score, -len(self.numbers), self.a.key, self.b.key)


@dataclass
class SimilarityReport:
    batch_dir: Path
    documents: list[Document]           # the batch's students
    archive: list[Document]             # --against documents
    pairs: list[Pair]                   # flagged, ranked
    settings: Settings
    templates: list[Template]
    missing_templates: list[str]        # assignments whose template was not found (nothing excluded)
    compared_pairs: int
    duration_s: float
    csv_path: Path | None = None
    html_path: Path | None = None


def check_available() -> None:
    """UsageError when the similarity extra is not installed (before any work)."""
    import importlib.util

    # Found, not imported: copydetect imports matplotlib, which `grade batch` need not pay for here.
    missing = [module for module in ("copydetect", "imagehash") if importlib.util.find_spec(module) is None]
    if missing:
        raise UsageError(f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not installed: "
                         "pip install 'grader[similarity]'")


# --------------------------------------------------------------------------------------------
# code
# --------------------------------------------------------------------------------------------


_MASK64 = (1 << 64) - 1
_BASE = 0x100000001B3  # FNV's 64-bit prime: an odd multiplier for the polynomial k-gram hash


def _kgram_hashes(text: str, k: int):
    """A 64-bit hash of every k-gram of `text` (int64 array, len(text) - k + 1 entries).

    copydetect hashes k-grams with Python's hash(), which is salted per process: the same batch
    would give other fingerprints, hence other percentages, at every run. This is a polynomial
    hash (wrapping uint64 arithmetic, vectorised) with a final mix, the same in every process."""
    import numpy as np

    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    n = len(codes) - k + 1
    if n <= 0:
        return np.array([], dtype=np.int64)
    with np.errstate(over="ignore"):
        h = np.zeros(n, dtype=np.uint64)
        for j in range(k):
            h = h * np.uint64(_BASE) + codes[j:j + n] + np.uint64(1)
        h ^= h >> np.uint64(31)  # splitmix64's finaliser: spreads the low bits the window compares
        h *= np.uint64(0xBF58476D1CE4E5B9)
        h ^= h >> np.uint64(29)
    return h.view(np.int64)


class _Filter:
    """copydetect's Pygments filter (names to V/F/O, strings to S, comments and whitespace
    dropped), one code piece (a notebook cell) at a time, remembered: the template's cells, which
    every student hands in unchanged, are tokenised once for the whole class. Pieces are whole
    cells, so no token spans two of them; the pieces' offsets are shifted to the whole file's."""

    def __init__(self):
        self.cache: dict[str, tuple[str, object]] = {}

    def __call__(self, pieces: Sequence[str]):
        import numpy as np
        from copydetect.utils import filter_code

        filtered, rows = [], []
        raw_len = filtered_len = 0
        for piece in pieces:
            hit = self.cache.get(piece)
            if hit is None:
                text, offsets = filter_code(piece, "code.py", "python")
                offsets = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
                hit = self.cache[piece] = (text, offsets)
            text, offsets = hit
            if len(offsets):
                # offsets rows: [index in the filtered text, raw characters removed before it]
                rows.append(offsets + np.array([filtered_len, raw_len - filtered_len], dtype=np.int64))
            filtered.append(text)
            raw_len += len(piece)
            filtered_len += len(text)
        return "".join(filtered), (np.concatenate(rows) if rows else np.zeros((0, 2), dtype=np.int64))


class _Fingerprint:
    """What copydetect's compare_files reads of a CodeFingerprint (k, hashes, hash_idx,
    filtered_code, offsets, token_coverage, raw_code), built as CodeFingerprint builds it --
    copydetect's filter, its winnowing and its boilerplate removal -- with the deterministic
    k-gram hash above."""

    def __init__(self, code: str, filtered: str, offsets, k: int, window: int, boilerplate):
        import numpy as np
        from copydetect.utils import get_token_coverage, winnow

        all_hashes = _kgram_hashes(filtered, k)
        if len(all_hashes):
            hashes, idx = winnow(all_hashes, window_size=window, remove_duplicates=False)
        else:
            hashes, idx = all_hashes, np.array([], dtype=np.int64)
        if len(boilerplate) and len(hashes):
            keep = ~np.isin(hashes, boilerplate)  # every occurrence of a template k-gram goes
            hashes, idx = hashes[keep], idx[keep]
        hash_idx: dict = {}
        for value, position in zip(hashes.tolist(), idx.tolist()):
            hash_idx.setdefault(value, []).append(position)
        self.k = k
        self.raw_code = code
        self.filtered_code = filtered
        self.offsets = offsets
        self.hashes = set(hash_idx)
        self.hash_idx = hash_idx
        self.token_coverage = get_token_coverage(hash_idx, k, len(filtered))


# One fingerprinting worker's state (grader.similarity.core._worker_init): set once per process.
_WORKER: dict = {}


def _worker_init(k: int, window: int, boilerplate) -> None:
    _WORKER.update(k=k, window=window, boilerplate=boilerplate, tokens=_Filter())


def _fingerprint(pieces: list[str]) -> "_Fingerprint | None":
    """One document's fingerprint (in a worker process, or here), None when it has no code."""
    code = "".join(pieces)
    if len(code) < _WORKER["k"]:
        return None
    filtered, offsets = _WORKER["tokens"](pieces)
    fingerprint = _Fingerprint(code, filtered, offsets, _WORKER["k"], _WORKER["window"], _WORKER["boilerplate"])
    return fingerprint if fingerprint.hashes and fingerprint.token_coverage > 0 else None


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


class _Fingerprints:
    """The fingerprints of every document, computed once. Tokenising is most of the work (Pygments
    in pure Python): a class of PARALLEL_FROM documents or more is fingerprinted by a pool of
    processes, one a CPU. The workers only ever see code as text and return what this module
    computed from it (a fingerprint of plain values); nothing a student wrote is run or unpickled."""

    PARALLEL_FROM = 48

    def __init__(self, docs: Sequence[Document], templates: Sequence[Template], settings: Settings,
                 workers: int | None = None):
        import numpy as np

        self.k = settings.noise_t
        tokens = _Filter()
        boilerplate = []
        for template in templates:
            # As copydetect's boilerplate: every k-gram of the template (no winnowing).
            filtered, _ = tokens(template.pieces or [template.code])
            boilerplate.append(_kgram_hashes(filtered, self.k))
        self.boilerplate = np.unique(np.concatenate(boilerplate)) if boilerplate else np.array([], dtype=np.int64)
        jobs = [doc.pieces or [doc.code] for doc in docs]
        workers = workers if workers is not None else (default_workers() if len(docs) >= self.PARALLEL_FROM else 1)
        if workers > 1 and len(jobs) > 1:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            # fork: the workers start at once with this process's imports (copydetect, numpy).
            context = multiprocessing.get_context("fork")
            with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_worker_init,
                                     initargs=(self.k, settings.window, self.boilerplate)) as pool:
                self.prints: list[_Fingerprint | None] = list(pool.map(_fingerprint, jobs, chunksize=8))
        else:
            _worker_init(self.k, settings.window, self.boilerplate)
            _WORKER["tokens"] = tokens  # the template's cells are tokenised already
            self.prints = [_fingerprint(pieces) for pieces in jobs]

    def compare(self, i: int, j: int, threshold: float) -> CodeMatch | None:
        """The pair's match, or None when it cannot reach `threshold` (no copydetect run then)."""
        from copydetect import compare_files

        a, b = self.prints[i], self.prints[j]
        if a is None or b is None or a.hashes.isdisjoint(b.hashes):
            return None
        shared = a.hashes & b.hashes
        # Each shared fingerprint marks at most k tokens as copied at each place it occurs.
        bound_a = self.k * sum(len(a.hash_idx[h]) for h in shared) / a.token_coverage
        bound_b = self.k * sum(len(b.hash_idx[h]) for h in shared) / b.token_coverage
        if max(bound_a, bound_b) < threshold:
            return None
        tokens, (sim_a, sim_b), (slices_a, slices_b) = compare_files(a, b)
        match = CodeMatch(similarity_a=float(min(1.0, sim_a)), similarity_b=float(min(1.0, sim_b)),
                          tokens=int(tokens))
        if match.score >= threshold:
            match.slices_a = _slices(slices_a, len(a.raw_code))
            match.slices_b = _slices(slices_b, len(b.raw_code))
        return match


def _slices(slices, length: int) -> list[tuple[int, int]]:
    """copydetect's 2xN slice array as sorted, merged (start, end) pairs inside the text."""
    if len(slices) == 0 or len(slices[0]) == 0:
        return []
    spans = sorted((max(0, int(s)), min(length, int(e))) for s, e in zip(slices[0], slices[1]))
    merged: list[tuple[int, int]] = []
    for start, end in spans:
        if end <= start:
            continue
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


# --------------------------------------------------------------------------------------------
# the comparison
# --------------------------------------------------------------------------------------------


def _compatible(a: Document, b: Document) -> bool:
    return a.assignment is None or b.assignment is None or a.assignment == b.assignment


def _common_limit(settings: Settings, students: int) -> int:
    """A figure or number seen in more students than this is common (the template's output)."""
    return max(2, int(settings.common_share * students))


def _pairs_to_compare(docs: Sequence[Document], n_batch: int) -> Iterable[tuple[int, int]]:
    for i in range(n_batch):
        for j in range(i + 1, len(docs)):
            if _compatible(docs[i], docs[j]):
                yield i, j


def _answer_evidence(docs: Sequence[Document], n_batch: int, templates: Sequence[Template],
                     settings: Settings) -> dict[tuple[int, int], list[dict]]:
    template_lines = set().union(*(t.answer_lines for t in templates)) if templates else set()
    groups: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for index, doc in enumerate(docs):
        for tag, text in doc.answers.items():
            normalised = normalise_answer(text, template_lines)
            if len(normalised) >= settings.min_answer_chars:
                groups[normalised].append((index, tag))
    evidence: dict[tuple[int, int], list[dict]] = defaultdict(list)
    for text, members in groups.items():
        for (i, tag_i), (j, tag_j) in itertools.combinations(members, 2):
            if i == j or (i >= n_batch and j >= n_batch) or not _compatible(docs[i], docs[j]):
                continue
            key, tags = ((i, j), (tag_i, tag_j)) if i < j else ((j, i), (tag_j, tag_i))
            evidence[key].append({"tag_a": tags[0], "tag_b": tags[1], "text": text})
    return evidence


def _popcount_table():
    import numpy as np

    return np.array([bin(i).count("1") for i in range(256)], dtype=np.uint16)


def _image_evidence(docs: Sequence[Document], n_batch: int, templates: Sequence[Template],
                    settings: Settings) -> dict[tuple[int, int], list[dict]]:
    import numpy as np

    owners, items = [], []
    for index, doc in enumerate(docs):
        for item in doc.images:
            owners.append(index)
            items.append(item)
    if len(items) < 2:
        return {}
    table = _popcount_table()
    hashes = np.frombuffer(b"".join(i.phash for i in items), dtype=np.uint8).reshape(len(items), -1)
    owners_arr = np.array(owners)
    template_hashes = [np.frombuffer(h, dtype=np.uint8) for t in templates for h in t.image_hashes
                       if len(h) == hashes.shape[1]]
    excluded = np.zeros(len(items), dtype=bool)
    if template_hashes:
        t = np.stack(template_hashes)
        distances = table[hashes[:, None, :] ^ t[None, :, :]].sum(-1)
        excluded |= (distances <= settings.image_distance_max).any(axis=1)
    near: list[np.ndarray] = []
    block = 256
    for start in range(0, len(items), block):
        d = table[hashes[start:start + block, None, :] ^ hashes[None, :, :]].sum(-1)
        near.extend(np.nonzero(row <= settings.image_distance_max)[0] for row in d)
    limit = _common_limit(settings, n_batch)
    evidence: dict[tuple[int, int], list[dict]] = defaultdict(list)
    seen: set[tuple[int, int]] = set()
    for x, neighbours in enumerate(near):
        if excluded[x]:
            continue
        students = {int(o) for o in owners_arr[neighbours] if o < n_batch}
        if len(students) > limit:
            continue  # most of the class has this picture: the template draws it, nobody copied it
        for y in neighbours:
            y = int(y)
            i, j = owners[x], owners[y]
            if y <= x or i == j or excluded[y] or (i >= n_batch and j >= n_batch) \
                    or not _compatible(docs[i], docs[j]) or (x, y) in seen:
                continue
            seen.add((x, y))
            first, second = (items[x], items[y]) if i < j else (items[y], items[x])
            distance = int(table[hashes[x] ^ hashes[y]].sum())
            evidence[(min(i, j), max(i, j))].append({
                "a": first.name, "b": second.name, "distance": distance,
                "identical": first.sha256 == second.sha256,
                "thumb_a": first.thumbnail, "thumb_b": second.thumbnail})
    return evidence


def _number_evidence(docs: Sequence[Document], n_batch: int, templates: Sequence[Template],
                     settings: Settings) -> dict[tuple[int, int], list[str]]:
    template_numbers = set().union(*(t.numbers for t in templates)) if templates else set()
    holders: dict[str, list[int]] = defaultdict(list)
    for index, doc in enumerate(docs):
        for number in doc.numbers:
            if number not in template_numbers:
                holders[number].append(index)
    limit = _common_limit(settings, n_batch)
    shared: dict[tuple[int, int], list[str]] = defaultdict(list)
    for number, members in holders.items():
        if sum(1 for m in members if m < n_batch) > limit:
            continue  # the same deterministic result for most of the class
        for i, j in itertools.combinations(members, 2):
            if (i >= n_batch and j >= n_batch) or not _compatible(docs[i], docs[j]):
                continue
            shared[(i, j)].append(number)
    return {pair: sorted(numbers, key=float) for pair, numbers in shared.items()
            if len(numbers) >= settings.min_shared_numbers}


def compare_documents(docs: Sequence[Document], n_batch: int, templates: Sequence[Template],
                      settings: Settings, workers: int | None = None) -> tuple[list[Pair], int]:
    """The flagged pairs among docs[:n_batch] and between them and docs[n_batch:] (the archive),
    ranked; and how many pairs were compared. `workers`: fingerprinting processes (None: one a
    CPU for a class of _Fingerprints.PARALLEL_FROM documents or more, else this process)."""
    prints = _Fingerprints(docs, templates, settings, workers)
    pairs: dict[tuple[int, int], Pair] = {}
    compared = 0
    for i, j in _pairs_to_compare(docs, n_batch):
        compared += 1
        match = prints.compare(i, j, settings.threshold)
        if match is not None and match.score >= settings.threshold:
            pairs[(i, j)] = Pair(docs[i], docs[j], code=match, flagged_code=True)

    def pair(i: int, j: int) -> Pair:
        if (i, j) not in pairs:
            # Another kind of evidence: show the code side by side too (what matches, if anything).
            match = prints.compare(i, j, 0.0)
            pairs[(i, j)] = Pair(docs[i], docs[j], code=match)
        return pairs[(i, j)]

    for key, answers in _answer_evidence(docs, n_batch, templates, settings).items():
        pair(*key).answers = answers
    for key, images in _image_evidence(docs, n_batch, templates, settings).items():
        pair(*key).images = images
    for key, numbers in _number_evidence(docs, n_batch, templates, settings).items():
        pair(*key).numbers = numbers
    ranked = sorted((p for p in pairs.values() if p.kinds), key=Pair.rank_key)
    return ranked, compared


def _report(batch_dir: Path, against: Sequence[Path], settings: Settings, template: Path | None,
            say: Callable[[str], None], started: float) -> SimilarityReport:
    say("reading the batch")
    documents = read_batch(batch_dir)
    archive_docs: list[Document] = []
    names: set[str] = set()
    for archive in against:
        say(f"reading {archive}")
        name = Path(archive).resolve().name or str(archive)
        base, count = name, 1
        while name in names:  # two archives both called 2024-fall: keys stay apart
            count += 1
            name = f"{base}#{count}"
        names.add(name)
        archive_docs.extend(read_archive(Path(archive), name=name))
    assignments = sorted({d.assignment for d in documents if d.assignment})
    templates, missing = [], []
    for assignment in assignments:
        loaded = load_template(assignment, Path(template) if template is not None else None)
        if loaded.path is not None:
            templates.append(loaded)
        else:
            missing.append(assignment)
    say("comparing")
    pairs, compared = compare_documents(documents + archive_docs, len(documents), templates, settings)
    return SimilarityReport(batch_dir=batch_dir, documents=documents, archive=archive_docs, pairs=pairs,
                            settings=settings, templates=templates, missing_templates=missing,
                            compared_pairs=compared, duration_s=round(time.monotonic() - started, 3))


def similarity_report(batch_dir: Path, *, against: Sequence[Path] = (), settings: Settings | None = None,
                      lang: str | None = None, template: Path | None = None,
                      progress: Callable[[str], None] | None = None, write: bool = True) -> SimilarityReport:
    """Compare the students of the batch folder `batch_dir` (and them with `against`) and write
    similarity.csv and similarity.html there. Results and scores are not touched.

    Raises UsageError: not a batch folder, an archive that is not a folder, a bad setting, the
    similarity extra not installed."""
    from grader.similarity.collect import is_batch_folder

    started = time.monotonic()
    settings = settings or Settings()
    say = progress or (lambda message: None)
    batch_dir = Path(batch_dir)
    if not batch_dir.is_dir():
        raise UsageError(f"{batch_dir}: no such folder")
    if not is_batch_folder(batch_dir):
        raise UsageError(f"{batch_dir}: not a batch folder (no student folders with a result.json): "
                         "give the --out folder of `grade batch`")
    for archive in against:
        if not Path(archive).is_dir():
            raise UsageError(f"--against {archive}: no such folder")
    if template is not None and not Path(template).exists():
        raise UsageError(f"--template {template}: no such file or folder")
    if lang is not None and lang not in LANGUAGES:
        raise UsageError(f"unknown language {lang!r}: choose one of {', '.join(LANGUAGES)}")
    check_available()
    if not write:
        return _report(batch_dir, against, settings, template, say, started)
    from grader.batch.state import OutputArea
    from grader.similarity.render import write_report

    # The batch's own lock: a `grade batch` still writing here would change what is compared.
    with OutputArea(batch_dir):
        report = _report(batch_dir, against, settings, template, say, started)
        say("writing the report")
        write_report(report, lang=lang)
    return report
