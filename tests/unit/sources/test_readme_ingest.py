"""The README's "Real data in" commands run as written (in a scratch NURU_HOME): the sample
world written only as the real products, ingested, and a night's features from it."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from nuru_yield.cli import main
from nuru_yield.config import reset_settings

README = Path(__file__).resolve().parents[3] / "README.md"


def _block() -> list[str]:
    text = README.read_text()
    section = text[text.index("## Real data in") :]
    return re.search(r"```bash\n(.*?)```", section, re.S).group(1).strip().splitlines()


@pytest.mark.slow
def test_the_readme_ingest_commands_run_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NURU_HOME", ".nuru")
    reset_settings()
    lines = _block()
    assert lines[0].startswith("nuru-yield sample-data") and len(lines) == 7
    commands = [shlex.split(line)[1:3] for line in lines if line.startswith("nuru-yield ingest")]
    assert commands == [
        ["ingest", "plots"], ["ingest", "ndvi"], ["ingest", "chirps"], ["ingest", "agera5"],
        ["ingest", "yields"],
    ]  # fmt: skip
    for line in lines:
        main(shlex.split(line)[1:])
        if line.startswith("nuru-yield sample-data"):  # nothing of it in the lake
            assert not (tmp_path / ".nuru/lake/raw").exists()
    out = capsys.readouterr().out
    assert "plots: 1 file(s)" in out and "0 quarantined" in out
    assert re.search(r"ndvi: \d+ scene\(s\) found, 0 already ingested, \d+ after 2024-06-15; "
                     r"\d+ acquisition\(s\) written, [\d,]+ plot rows; 0 scene", out)  # fmt: skip
    assert "agera5: 1098 file(s), 366 day(s) read; raw weather rebuilt for 2024" in out
    assert "yields: 1 file(s), 0 rows" in out  # the 2024 harvests are not in yet
    assert len(list((tmp_path / ".nuru/lake/raw/weather/year=2024").glob("month-*.parquet"))) == 12
    features = tmp_path / ".nuru/lake/features/2024-06-15/plot_features.parquet"
    assert pq.read_metadata(features).num_rows > 400  # the Long Rains crops in progress
