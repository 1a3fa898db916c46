"""Preprocessing for the translation task: tokeniser, vocabulary, ids and batches.

The template fixes these rules so that the grader can rebuild the vocabulary from the training
split and hand the trained model its own held-out sentences as token ids.
"""

from __future__ import annotations

import re
from collections import Counter

import torch

from midterm.model import BOS, EOS, PAD, UNK

SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")
MIN_FREQ = 2


def tokenize(sentence: str) -> list[str]:
    """Lower-cased words and punctuation marks."""
    return re.findall(r"\w+|[^\w\s]", sentence.lower())


def build_vocab(sentences, min_freq: int = MIN_FREQ) -> list[str]:
    """The specials, then every token seen at least `min_freq` times, most frequent first, ties in
    alphabetical order."""
    counts = Counter(token for sentence in sentences for token in tokenize(sentence))
    words = sorted((w for w, c in counts.items() if c >= min_freq), key=lambda w: (-counts[w], w))
    return list(SPECIALS) + words


def encode(sentence: str, index: dict[str, int]) -> list[int]:
    """[BOS] + token ids (UNK for unknown tokens) + [EOS]."""
    return [BOS] + [index.get(token, UNK) for token in tokenize(sentence)] + [EOS]


def detokenize(ids, vocabulary: list[str]) -> str:
    """The tokens up to the first EOS (PAD and BOS skipped), joined by spaces."""
    words = []
    for token in ids:
        token = int(token)
        if token == EOS:
            break
        if token in (PAD, BOS):
            continue
        words.append(vocabulary[token] if 0 <= token < len(vocabulary) else SPECIALS[UNK])
    return " ".join(words)


def pad_batch(rows: list[list[int]]) -> torch.Tensor:
    """Rows of ids padded with PAD into one (N, longest) int64 tensor."""
    width = max(len(r) for r in rows)
    batch = torch.full((len(rows), width), PAD, dtype=torch.long)
    for i, row in enumerate(rows):
        batch[i, :len(row)] = torch.tensor(row)
    return batch
