"""The README's "Real data in" commands run as written (in a scratch NURU_HOME), and the
ingested lake's features equal those of the contract the generator wrote."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

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
    assert lines[0].startswith("nuru-yield sample-data") and len(lines) == 6
    for line in lines:
        if line.startswith("export "):
            name, value = line.removeprefix("export ").split("=", 1)
            monkeypatch.setenv(name, value.replace("$PWD", str(tmp_path)))
            reset_settings()
            continue
        main(shlex.split(line)[1:])
    out = capsys.readouterr().out
    assert "plots: 1 file(s)" in out and "0 quarantined" in out
    assert "agera5: 1098 file(s), 366 day(s) read; raw weather rebuilt for 2024" in out
    assert "yields: 1 file(s), 0 rows" in out  # the 2024 harvests are not in yet
    assert (tmp_path / ".nuru/ingested/raw/weather/year=2024/part-0.parquet").exists()
