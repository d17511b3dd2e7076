"""Matplotlib figures as inline SVG for self-contained pages (the drift report, the Forecasts
view in the Airflow UI): no XML prolog or DTD reference (nothing fetched), no metadata block,
and ids salted with a fixed string so that the same figure always gives the same SVG."""

from __future__ import annotations

import io
import re
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def figure_svg(figure: Figure, *, text: Literal["path", "none"] = "path") -> str:
    """The figure as an ``<svg>`` element. ``text="path"`` draws letters as outlines (the
    page looks the same everywhere, e.g. in a mail client); ``"none"`` keeps ``<text>``
    elements in the page's own font (smaller, selectable)."""
    import matplotlib

    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": text, "svg.hashsalt": "nuru-yield"}):
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg") :]  # drop the XML prolog and its DTD reference
    return re.sub(r"\s*<metadata>.*?</metadata>", "", svg, count=1, flags=re.DOTALL)
