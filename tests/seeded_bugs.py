"""Seeded bugs: buggy variants of the w6-self-attention reference submission, for the grader's tests.

Each bug replaces one exact source line of the reference notebook
(`reference/solutions/w6-self-attention/self_attention_optimized.ipynb`) with a wrong one. Every
replaced line lies inside the function the bug is named after, and no other graded function calls
that function (chunked/flash/sparse attention do not call `scaled_dot_product_attention`, the mask
functions are independent), so a bug should only break the checks of its own function.

    from tests.seeded_bugs import BUGS, make_buggy_notebook
    notebook = make_buggy_notebook("no_scaling", tmp_path / "submission")

`make_buggy_notebook` copies the whole solution folder (notebook and the artifact folders
`performance_benchmark/`, `masking_techniques/`) into `dest_dir` and edits the copy's code cells.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parents[1]
SOLUTION_DIR = REPO / "reference" / "solutions" / "w6-self-attention"
NOTEBOOK_NAME = "self_attention_optimized.ipynb"

# bug name -> (exact original source text, replacement); each original occurs once in the code cells.
BUGS: dict[str, tuple[str, str]] = {
    # scaled_dot_product_attention: the scores are not divided by sqrt(d).
    "no_scaling": (
        "    scores = (q32 @ k32.transpose(-2, -1)) / math.sqrt(q.shape[-1])  # (B, H, Tq, d) @ (B, H, d, Tk) -> (B, H, Tq, Tk)",
        "    scores = q32 @ k32.transpose(-2, -1)  # (B, H, Tq, d) @ (B, H, d, Tk) -> (B, H, Tq, Tk)",
    ),
    # scaled_dot_product_attention: the softmax (max, exp, sum) runs over the query axis.
    "softmax_wrong_axis": (
        "    softmax_dim = -1  # the key axis: each query's weights sum to 1",
        "    softmax_dim = -2  # the key axis: each query's weights sum to 1",
    ),
    # causal_mask: the diagonal is excluded (j < i instead of j <= i); row 0 is fully masked.
    "causal_off_by_one": (
        "    return torch.ones(T, T, dtype=torch.bool).tril()  # lower triangle incl. the diagonal: j <= i",
        "    return torch.ones(T, T, dtype=torch.bool).tril(diagonal=-1)  # lower triangle incl. the diagonal: j <= i",
    ),
    # padding_mask: shape (B, 1, max_len, 1), so it masks queries instead of keys.
    "padding_on_query_axis": (
        "    return allowed.view(-1, 1, 1, max_len)  # (B, 1, 1, max_len): masks keys, broadcasts over H and Tq",
        "    return allowed.view(-1, 1, max_len, 1)  # (B, 1, 1, max_len): masks keys, broadcasts over H and Tq",
    ),
    # chunked_attention: a shorter last chunk is dropped (fine when chunk_size divides Tk).
    "chunked_drops_last_chunk": (
        "    for start in range(0, Tk, chunk_size):  # the last chunk may be shorter than chunk_size",
        "    for start in range(0, Tk - chunk_size + 1, chunk_size):  # the last chunk may be shorter than chunk_size",
    ),
    # scaled_dot_product_attention: exp of the scores in the input dtype, no max subtracted: fp16 inputs
    # with large scores overflow to inf (then inf / inf = NaN); small fp32 inputs are still right.
    "fp16_overflow": (
        "    exp_scores = torch.exp(scores - row_max)  # max subtracted: every entry in [0, 1], cannot overflow",
        "    exp_scores = torch.exp(scores.to(q.dtype)).float()  # max subtracted: every entry in [0, 1], cannot overflow",
    ),
}


def _code_sources(notebook) -> list:
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def apply_bug(notebook, bug: str):
    """Apply ``BUGS[bug]`` to the code cells of an nbformat notebook, in place; returns the notebook."""
    if bug not in BUGS:
        raise KeyError(f"unknown bug {bug!r}; known: {', '.join(sorted(BUGS))}")
    original, replacement = BUGS[bug]
    cells = _code_sources(notebook)
    matches = sum(cell.source.count(original) for cell in cells)
    assert matches == 1, f"bug {bug!r}: the original text occurs {matches} times in the code cells, expected once"
    for cell in cells:
        if original in cell.source:
            cell.source = cell.source.replace(original, replacement)
    return notebook


def make_buggy_notebook(bug: str, dest_dir: Path) -> Path:
    """Copy the solution folder into ``dest_dir``, seed ``bug`` into the notebook, return the notebook's path."""
    dest_dir = Path(dest_dir)
    shutil.copytree(SOLUTION_DIR, dest_dir, dirs_exist_ok=True)
    path = dest_dir / NOTEBOOK_NAME
    notebook = apply_bug(nbformat.read(str(path), as_version=4), bug)
    nbformat.write(notebook, str(path))
    return path
