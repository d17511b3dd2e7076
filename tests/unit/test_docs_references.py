"""Every reference a reader meets in the repository resolves inside it.

Code, comments, docstrings, DAG docs, configuration files and the docs point at the design
as ``docs/DESIGN.md, "<section name>"`` or ``docs/NOTES.md, "<heading>"`` — never at a
numbered section, at an issue number (the issues are not in the repository) or at a file
path that does not exist. docs/seed-production-deployment-guide.md is a verbatim copy of
the seed's guide and is left as it was.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# The seed's guide is a verbatim copy; this file's examples are the mistakes it looks for.
NOT_CHECKED = {"docs/seed-production-deployment-guide.md", "tests/unit/test_docs_references.py"}
DESIGN_DOCS = ("docs/DESIGN.md", "docs/NOTES.md")

SECTION_SIGN = "\u00a7"
ISSUE_NUMBER = re.compile(r"\b[Ii]ssues?\s*#?\s*[0-9]+")
# DESIGN.md or NOTES.md named without its folder (the repository has no such file at the
# root); a quoted file name is code joining a path (REPO / "docs" / "DESIGN.md").
BARE_DESIGN_DOC = re.compile(r"(?<![\w/.\"'-])(?:DESIGN|NOTES)\.md\b|\bDESIGN\b(?!\.md)")
# A path into the repository's own folders: not a container path (/opt/airflow/dags/…), nor
# the Dockerfile's frontend image (# syntax=docker/dockerfile:1).
REPO_PATH = re.compile(
    r"(?<![\w./~-])(?<!syntax=)"
    r"((?:docs|scripts|dags|tests|include|docker|plugins|\.ci|\.github)/[\w./-]*\w)"
)
TEMPLATE_CHARS = "{<*$"
# A design document, then ", " or ": " and what follows it (a quoted section name, or not).
DOC_REFERENCE = re.compile(r"(docs/(?:DESIGN|NOTES)\.md)`{0,2}[,:][ \t]*\n?[ \t]*(?:#[ \t]*)?")
QUOTED_NAME = re.compile(r""""([^"]{1,80})"|'([^']{1,80})'""")
NAME_SEPARATOR = re.compile(r"(?:,\s*|\s+and\s+)(?=[\"'])")


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    problem: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.problem}"


def _line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def _one_line(name: str) -> str:
    """A section name wrapped over lines of a docstring or comment, as one line."""
    return re.sub(r"\s*\n\s*(?:#\s*)?", " ", name).strip()


def headings(markdown: str) -> set[str]:
    """The names a reference may use for each heading of a markdown file: the heading as
    written, without its number ("5. Lake layout" → "Lake layout") and without a trailing
    parenthesis ("Speed (measured here, …)" → "Speed")."""
    names: set[str] = set()
    in_fence = False
    for line in markdown.splitlines():
        if line.startswith("```"):
            in_fence = not in_fence
            continue
        match = re.match(r"#{1,6}\s+(.+?)\s*#*\s*$", line)
        if in_fence or not match:
            continue
        heading = match.group(1)
        unnumbered = re.sub(r"^\d+(?:\.\d+)*\.?\s+", "", heading)
        names |= {heading, unnumbered, re.sub(r"\s*\([^()]*\)$", "", unnumbered)}
    return names


def section_references(text: str) -> list[tuple[int, str, str | None]]:
    """(line, document, section name) for each design document followed by ", " or ": ";
    the name is None when what follows is not a quoted name (an unchecked reference)."""
    references: list[tuple[int, str, str | None]] = []
    for match in DOC_REFERENCE.finditer(text):
        line = _line_of(text, match.start())
        position = match.end()
        quoted = QUOTED_NAME.match(text, position)
        if not quoted:
            references.append((line, match.group(1), None))
            continue
        while quoted:
            name = quoted.group(1) if quoted.group(1) is not None else quoted.group(2)
            references.append((line, match.group(1), _one_line(name)))
            separator = NAME_SEPARATOR.match(text, quoted.end())
            quoted = QUOTED_NAME.match(text, separator.end()) if separator else None
    return references


def findings_in(path: str, text: str, sections: dict[str, set[str]], root: Path) -> list[Finding]:
    """Everything in one file's text that a reader could not resolve in the repository."""
    found: list[Finding] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if SECTION_SIGN in line:
            found.append(Finding(path, number, "cites a numbered section; name it instead"))
        for match in ISSUE_NUMBER.finditer(line):
            found.append(Finding(path, number, f"cites {match.group(0)!r}: say why instead"))
        for match in BARE_DESIGN_DOC.finditer(line):
            found.append(
                Finding(path, number, f"{match.group(0)!r}: write docs/DESIGN.md or docs/NOTES.md")
            )
        for match in REPO_PATH.finditer(line):
            following = line[match.end() : match.end() + 1]
            cited = match.group(1).rstrip(".")
            if following and following in TEMPLATE_CHARS:
                continue
            if not (root / cited).exists():
                found.append(Finding(path, number, f"{cited} does not exist in the repository"))
    for line, document, name in section_references(text):
        if name is None:
            found.append(
                Finding(path, line, f'{document}, then no quoted section name: {document}, "Name"')
            )
        elif name not in sections[document]:
            found.append(Finding(path, line, f'{document} has no section "{name}"'))
    return found


def repository_files() -> list[str]:
    """Tracked files and new ones not ignored (so a file written but not yet committed is
    checked too); the verbatim seed guide left out."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    return sorted(
        name
        for name in set(listed.split("\0"))
        if name and name not in NOT_CHECKED and (REPO / name).is_file()
    )


def _text(path: Path) -> str | None:
    data = path.read_bytes()
    if b"\0" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


@pytest.fixture(scope="module")
def sections() -> dict[str, set[str]]:
    return {document: headings((REPO / document).read_text()) for document in DESIGN_DOCS}


def test_every_reference_in_the_repository_resolves(sections: dict[str, set[str]]) -> None:
    files = repository_files()
    assert "README.md" in files and "include/nuru_yield/cli.py" in files
    found: list[Finding] = []
    for name in files:
        text = _text(REPO / name)
        if text is not None:
            found += findings_in(name, text, sections, REPO)
    assert not found, "unresolvable references:\n" + "\n".join(map(str, found))


def test_the_repository_names_design_sections_that_are_checked(
    sections: dict[str, set[str]],
) -> None:
    """The whole-repository test is not vacuous: references of both documents are found
    and checked."""
    named = {
        (document, name)
        for file in repository_files()
        if (text := _text(REPO / file)) is not None
        for _, document, name in section_references(text)
    }
    assert ("docs/DESIGN.md", "Lake layout") in named
    assert ("docs/NOTES.md", "Speed") in named


def test_headings_are_named_with_and_without_number_and_parenthesis() -> None:
    names = headings("# Title\n## 5. Lake layout (seed paths kept)\n```\n# not a heading\n```\n")
    assert {"Lake layout", "Lake layout (seed paths kept)", "Title"} <= names
    assert "not a heading" not in names


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("see DESIGN " + SECTION_SIGN + "6", "numbered section"),
        ("# fixed in issue " + "12", "cites 'issue 12'"),
        ("(Issue #" + "7)", "cites 'Issue #7'"),
        ("the traps (NOTES" + ".md)", "write docs/DESIGN.md or docs/NOTES.md"),
        ("read docs/NO_SUCH_FILE.md first", "docs/NO_SUCH_FILE.md does not exist"),
        ("run scripts/no_such_script.py", "scripts/no_such_script.py does not exist"),
        ('see docs/DESIGN.md, "No such section"', 'has no section "No such section"'),
        ("see `docs/DESIGN.md`, Models", "then no quoted section name"),
        ('(docs/NOTES.md, "Speed" and "Nowhere")', 'has no section "Nowhere"'),
    ],
)
def test_an_unresolvable_reference_is_found(
    sections: dict[str, set[str]], text: str, problem: str
) -> None:
    found = findings_in("example.py", text, sections, REPO)
    assert any(problem in finding.problem for finding in found), found


@pytest.mark.parametrize(
    "text",
    [
        'docs/DESIGN.md, "Lake layout" and "Scale-out"',
        '(docs/DESIGN.md, "Raw\n    input contract")',
        "(``docs/DESIGN.md``, 'Models and the registry')",
        '# docs/NOTES.md, "Known\n# traps"',
        "see scripts/promote_model_to_production.py and dags/batch_scoring.py",
        "features/{D}/ and dags/{name}.py and /opt/airflow/dags/x.py",
        "The architecture contract is `docs/DESIGN.md`; read it.",
    ],
)
def test_a_resolvable_reference_passes(sections: dict[str, set[str]], text: str) -> None:
    assert findings_in("example.py", text, sections, REPO) == []
