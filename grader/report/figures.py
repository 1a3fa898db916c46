"""Pictures for failed checks: the student's tensor beside the expected one (attention weights,
masks), where a picture says more than the largest difference. Rendered in the grader's process
from the judge's own data; never for hidden checks."""

from __future__ import annotations

from pathlib import Path

MAX_SIDE = 64  # a slice larger than this is cropped: the pattern shows at the top-left corner

# What a picture's axes are, by kind (message ids of the x and y labels). A check's figure is
# (student's, expected) or (student's, expected, kind); without a kind the axes say row and column.
AXES = {
    "attention": ("figure.axis.key", "figure.axis.query"),       # weights / masks: (query i, key j)
    "encoding": ("figure.axis.dimension", "figure.axis.position"),  # (position, dimension) tables
    "matrix": ("figure.axis.column", "figure.axis.row"),
}


def slice_2d(tensor):
    """The first (B, H) slice of a tensor as a small 2-D float array, or None."""
    if tensor is None or tensor.ndim < 2:
        return None
    plane = tensor.detach().reshape(-1, tensor.shape[-2], tensor.shape[-1])[0][:MAX_SIDE, :MAX_SIDE]
    return plane.float().cpu().numpy()


def render_comparison(actual, expected, path: Path, *, labels: tuple[str, str], title: str,
                      axes: tuple[str, str] | None = None) -> Path:
    """Two heat maps side by side (same colour scale), saved as a PNG. `axes`: the x and y labels
    of a heat map; a picture (an (H, W, 3) plot from an artifact folder) is shown without axes."""
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    # Korean titles need a CJK font (Debian's fonts-noto-cjk); matplotlib falls back glyph by glyph.
    plt.rcParams["font.family"] = ["DejaVu Sans", "Noto Sans CJK KR", "Noto Sans CJK JP", "sans-serif"]

    finite = [a[np.isfinite(a)] for a in (actual, expected) if a is not None]
    values = np.concatenate([f.ravel() for f in finite]) if finite else np.zeros(1)
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
    fig, axes = plt.subplots(1, 2, figsize=(7.5, 3.6), dpi=90)
    for axis, data, label in zip(axes, (actual, expected), labels):
        if data is None:
            axis.axis("off")
            continue
        image = axis.imshow(np.where(np.isfinite(data), data, np.nan), cmap="viridis", vmin=low,
                            vmax=high if high > low else low + 1, interpolation="nearest")
        axis.set_title(label, fontsize=10)
        if data.ndim == 3:
            axis.axis("off")
        elif axes is not None:
            axis.set_xlabel(axes[0])
            axis.set_ylabel(axes[1])
    fig.colorbar(image, ax=axes, shrink=0.8)
    fig.suptitle(title, fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # a missing CJK font draws boxes, not an error
        fig.savefig(path, format="png")
    plt.close(fig)
    return path
