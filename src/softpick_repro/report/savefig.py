"""Saving a matplotlib figure as the PDF + PNG pair of a figure target, atomically."""
from __future__ import annotations

import io
from pathlib import Path

from ..io import atomic_write_bytes


def save_figure(fig, stem: str | Path) -> list[Path]:
    """Write `stem`.pdf and `stem`.png (150 dpi, tight) and close the figure."""
    import matplotlib.pyplot as plt

    stem = Path(stem)
    outputs = []
    for suffix in (".pdf", ".png"):
        buffer = io.BytesIO()
        fig.savefig(buffer, format=suffix[1:], dpi=150, bbox_inches="tight")
        # appended, not with_suffix: a size name like 1.8b puts a dot in the stem
        path = stem.with_name(stem.name + suffix)
        atomic_write_bytes(path, buffer.getvalue())
        outputs.append(path)
    plt.close(fig)
    return outputs
