"""The HTML drift report opened in headless Chromium (:mod:`tests.fixtures.browser`): the
summary table and a chart render from the file alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nuru_yield.monitoring.report import render_html
from tests.fixtures import browser
from tests.fixtures.browser import run_chromium
from tests.unit.monitoring.test_monitoring_report import sample_report

chromium = browser.chromium


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    report, reference, current = sample_report()
    path = tmp_path_factory.mktemp("report") / "drift_report.html"
    path.write_text(render_html(report, reference, current))
    return path


def test_chromium_renders_the_summary_table_and_a_chart(
    chromium: str, page: Path, tmp_path: Path
) -> None:
    dom = run_chromium(chromium, tmp_path, "--dump-dom", page.as_uri()).stdout
    assert '<table class="summary">' in dom
    assert '<td class="name">precip_total</td>' in dom
    assert dom.count('<figure class="chart"') == 1 and "<svg" in dom

    from matplotlib.image import imread

    shot = tmp_path / "page.png"
    run_chromium(
        chromium, tmp_path, f"--screenshot={shot}", "--window-size=1200,2600", page.as_uri()
    )
    pixels = imread(shot)[..., :3]
    # The current-season histogram is filled with #c0392b at 45% opacity on white.
    red = (pixels[..., 0] > 0.8) & (pixels[..., 1] < 0.75) & (pixels[..., 2] < 0.72)
    assert red.sum() > 2000, "no histogram painted"
    assert np.isclose(pixels.mean(), 1.0, atol=0.2)  # a page, not a blank or error screen
