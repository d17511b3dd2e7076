"""The county bulletin opened in headless Chromium (:mod:`tests.fixtures.browser`): the
county table and the charts render from the file alone, nothing else."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.fixtures import browser
from tests.fixtures.browser import run_chromium
from tests.unit.counties.test_counties_render import sample_page

chromium = browser.chromium


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bulletin") / "bulletin.html"
    path.write_text(sample_page())
    return path


def test_chromium_renders_the_county_table_and_the_charts(
    chromium: str, page: Path, tmp_path: Path
) -> None:
    dom = run_chromium(chromium, tmp_path, "--dump-dom", page.as_uri()).stdout
    assert '<table class="counties">' in dom
    assert dom.count('data-status="ok"') == 2 and 'data-status="too_few_plots"' in dom
    assert dom.count("<svg") == 3 and dom.count("<circle") >= 2

    from matplotlib.image import imread

    shot = tmp_path / "bulletin.png"
    run_chromium(
        chromium, tmp_path, f"--screenshot={shot}", "--window-size=1300,2200", page.as_uri()
    )
    pixels = imread(shot)[..., :3]
    # The county below 80% of its five-year mean is drawn in #c0392b (dot and whisker).
    red = (pixels[..., 0] > 0.65) & (pixels[..., 1] < 0.35) & (pixels[..., 2] < 0.3)
    assert red.sum() > 50, "no county drawn below 80% of its mean"
    assert np.isclose(pixels.mean(), 1.0, atol=0.2)  # a page, not a blank or error screen
