"""The paper's look: the designs' order, labels and colours (one per design in every figure; the
reference is grey so it reads as a baseline), the figures' seaborn theme, and figures shrunk for notebooks.
"""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib.pyplot as plt
import seaborn as sns
from PIL import Image as PILImage

DESIGN_ORDER = ("micro", "mono", "celery")
DESIGN_LABEL = {"micro": "A (micro)", "mono": "B (mono)", "celery": "Celery+Redis (ref.)"}
# one colour per design in every figure; the reference is grey so it reads as a baseline, not a contender
DESIGN_COLOR = {"micro": "#1f77b4", "mono": "#d62728", "celery": "#7f7f7f"}


def set_style() -> None:
    """The one style of every figure (called by `build` and by the notebooks)."""
    sns.set_theme(context="paper", style="whitegrid", font_scale=1.1)
    plt.rcParams.update(
        # no savefig.bbox "tight": it draws every figure twice; tight_layout + _legend_top fit them once
        {"figure.dpi": 110, "savefig.dpi": 130, "savefig.bbox": None, "axes.titlesize": "medium"}
    )


def design_key(design: str) -> int:
    return DESIGN_ORDER.index(design) if design in DESIGN_ORDER else len(DESIGN_ORDER)


def small_png(path: Path | str, width: int = 720) -> bytes:
    """A figure file as PNG bytes at most `width` pixels wide, in 128 colours (the notebooks show
    paper/ figures with it, so that the committed notebooks stay small)."""
    image: PILImage.Image = PILImage.open(path).convert("RGB")
    if image.width > width:
        image = image.resize((width, round(image.height * width / image.width)), PILImage.Resampling.LANCZOS)
    buf = io.BytesIO()
    image.quantize(128).save(buf, "PNG", optimize=True)
    return buf.getvalue()
