"""The course's assignments: ids, notebook names and deliverables (`shared/course/README.md`).

This is public information (students see it on the sheet). Checks and rubrics live elsewhere;
an assignment that has a rubric and a check module can be graded, the others are only known
(so that a submission for them gets a clear "not gradable yet" message instead of a guess).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AssignmentInfo:
    id: str
    week: int
    title: str
    points: int
    notebook: str | None
    artifact_dirs: tuple[str, ...]
    datasets: tuple[str, ...] = ()   # grader.data.DATASETS the notebook reads from DATA_DIR
    # A submission with code beside the notebook (the midterm): the Python package the notebook
    # imports (it stays in the run's working copy) and files handed in next to it (the slides).
    package: str | None = None
    files: tuple[str, ...] = ()


CATALOG: dict[str, AssignmentInfo] = {
    info.id: info
    for info in (
        AssignmentInfo("w5-resnet", 5, "CNN deep dive: ResNet", 25,
                       "resnet_implementation.ipynb", ("feature_visualization", "performance_analysis"), ("cifar10",)),
        AssignmentInfo("w5-lstm", 5, "RNN/LSTM deep dive", 25,
                       "lstm_implementation.ipynb", ("gate_analysis", "time_series_forecasting"), ("series",)),
        AssignmentInfo("w5-attention", 5, "Attention mechanisms", 20,
                       "attention_mechanisms.ipynb", ("attention_visualization", "seq2seq_model"), ("seq2seq",)),
        AssignmentInfo("w6-self-attention", 6, "Optimised self-attention", 30,
                       "self_attention_optimized.ipynb", ("performance_benchmark", "masking_techniques")),
        AssignmentInfo("w6-multihead", 6, "Multi-head attention analysis", 30,
                       "multihead_analysis.ipynb", ("head_patterns", "head_importance")),
        AssignmentInfo("w7-positional", 7, "Positional encodings compared", 25,
                       "positional_encoding_comparison.ipynb", ("encoding_analysis", "length_generalization")),
        AssignmentInfo("w7-transformer", 7, "Encoder-decoder transformer", 25,
                       "transformer_enc_dec.ipynb", ("translation_model", "decoding_strategies"), ("multi30k",)),
        AssignmentInfo("w8-midterm", 8, "Midterm: a transformer from scratch", 100,
                       "report.ipynb", ("applied", "analysis"), ("multi30k",), package="midterm",
                       files=("slides.pdf",)),
    )
}


def assignment_for_notebook(name: str) -> AssignmentInfo | None:
    """The assignment whose notebook has this file name (case-insensitive), if any."""
    lowered = name.lower()
    for info in CATALOG.values():
        if info.notebook and info.notebook.lower() == lowered:
            return info
    return None
