"""Shared fixtures: small notebooks built in the test, and the sandbox runner around them."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nbformat
import pytest

from grader.sandbox import SandboxJob, run_notebook

# The tests read English messages unless they ask for Korean (the course's default) themselves;
# set here, before anything runs, so that subprocesses (the CLI, batches) inherit it.
os.environ["GRADER_LANG"] = "en"

REPO = Path(__file__).resolve().parents[1]
SOLUTION = REPO / "reference" / "solutions" / "w6-self-attention"
TEMPLATE = REPO / "student_template" / "w6-self-attention"


def make_notebook(*sources: str) -> dict:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('SEED = 0\nDEVICE = "cpu"\nDATA_DIR = "data"\nPROFILE = "smoke"')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("# test"), params] + [nbformat.v4.new_code_cell(s) for s in sources]
    return json.loads(nbformat.writes(nb))


@pytest.fixture
def run_cells(tmp_path):
    """Run code cells (after a markdown and a parameters cell) in the local sandbox."""

    def run(*sources: str, probe: str | None = None, cell_timeout_s: float = 20, timeout_s: float = 60,
            memory_mb: int = 1536):
        work = tmp_path / "work"
        work.mkdir(exist_ok=True)
        job = SandboxJob(
            notebook=make_notebook(*sources), workdir=work,
            parameters={"SEED": 0}, probe_source=(lambda paths: probe) if probe else None,
            cell_timeout_s=cell_timeout_s, timeout_s=timeout_s, memory_mb=memory_mb,
        )
        return run_notebook(job, "local")

    return run
