"""The HTML drift report opened in headless Chromium (Debian ``chromium``): the summary
table and a chart render from the file alone. With CI=true a missing browser fails; without
it the test is skipped."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from nuru_yield.monitoring.report import render_html
from tests.fixtures.services import unavailable
from tests.unit.monitoring.test_monitoring_report import sample_report

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


# Debian's package first; GitHub's Ubuntu runners ship Google Chrome, which takes the same flags.
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


@pytest.fixture(scope="module")
def chromium() -> str:
    for name in BROWSERS:
        if path := shutil.which(name):
            return path
    unavailable("chromium is not installed (Debian: apt-get install -y chromium)")
    raise AssertionError("unreachable")


def _run(chromium: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    profile = tmp_path / f"profile-{len(list(tmp_path.iterdir()))}"
    done = subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    report, reference, current = sample_report()
    path = tmp_path_factory.mktemp("report") / "drift_report.html"
    path.write_text(render_html(report, reference, current))
    return path


def test_chromium_renders_the_summary_table_and_a_chart(
    chromium: str, page: Path, tmp_path: Path
) -> None:
    dom = _run(chromium, tmp_path, "--dump-dom", page.as_uri()).stdout
    assert '<table class="summary">' in dom
    assert '<td class="name">precip_total</td>' in dom
    assert dom.count('<figure class="chart"') == 1 and "<svg" in dom

    from matplotlib.image import imread

    shot = tmp_path / "page.png"
    _run(chromium, tmp_path, f"--screenshot={shot}", "--window-size=1200,2600", page.as_uri())
    pixels = imread(shot)[..., :3]
    # The current-season histogram is filled with #c0392b at 45% opacity on white.
    red = (pixels[..., 0] > 0.8) & (pixels[..., 1] < 0.75) & (pixels[..., 2] < 0.72)
    assert red.sum() > 2000, "no histogram painted"
    assert np.isclose(pixels.mean(), 1.0, atol=0.2)  # a page, not a blank or error screen
