"""Corpus BLEU (Papineni et al. 2002) on whitespace tokens, as sacreBLEU computes it with
`tokenize="none"` and its default exponential smoothing (Post 2018)."""

from __future__ import annotations

import math
from collections import Counter


def _ngrams(words: list[str], n: int) -> Counter:
    return Counter(tuple(words[i:i + n]) for i in range(len(words) - n + 1))


def corpus_bleu(hypotheses: list[str], references: list[str], max_order: int = 4) -> float:
    """BLEU in [0, 100] of the hypotheses against one reference each."""
    matches, totals = [0] * max_order, [0] * max_order
    hyp_len = ref_len = 0
    for hypothesis, reference in zip(hypotheses, references):
        hyp, ref = hypothesis.split(), reference.split()
        hyp_len, ref_len = hyp_len + len(hyp), ref_len + len(ref)
        for n in range(1, max_order + 1):
            ours, theirs = _ngrams(hyp, n), _ngrams(ref, n)
            matches[n - 1] += sum(min(c, theirs[g]) for g, c in ours.items())
            totals[n - 1] += max(len(hyp) - n + 1, 0)
    if hyp_len == 0:
        return 0.0
    log_precision, smooth = 0.0, 1.0
    for n in range(max_order):
        if totals[n] == 0:
            return 0.0
        if matches[n] == 0:  # sacreBLEU's "exp" smoothing
            smooth *= 2.0
            log_precision += math.log(1.0 / (smooth * totals[n]))
        else:
            log_precision += math.log(matches[n] / totals[n])
    brevity = 1.0 if hyp_len > ref_len else math.exp(1.0 - ref_len / hyp_len)
    return 100.0 * brevity * math.exp(log_precision / max_order)
