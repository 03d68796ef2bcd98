"""The paper's look: the designs' order, labels and colours (one per design in every figure; the
reference is grey so it reads as a baseline), and the figures' seaborn theme.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import seaborn as sns

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
