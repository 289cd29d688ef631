"""The tests the documentation cites exist: every ``tests/...`` path in README.md (and the other
READMEs and the manual in docs/), and every test it names after one (``path::test_name``, or
``::test_name`` for the last path cited before it), so a moved or renamed test can't leave the
Guarantees table pointing at nothing. The README's links reach files that exist (mkdocs --strict
checks the links inside docs/), and CI runs the README's test command."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted(
    {
        ROOT / "README.md",
        *ROOT.glob("*/README.md"),
        *ROOT.glob("tests/*/README.md"),
        *ROOT.glob("docs/**/*.md"),
    }
)
OUTPUT = "tests/output/"  # the tests' own output (git-ignored): exists once they ran
# a path (optionally ::name), or ::name alone, meaning the last path cited before it
CITATION = re.compile(r"(tests/[\w./-]*\w)(?:::(\w+))?|(?<![\w/])::(\w+)")


def dangling_citations(text: str, root: Path) -> list[str]:
    """The cited paths that don't exist and the cited tests their file doesn't define."""
    missing: list[str] = []
    last: Path | None = None
    for match in CITATION.finditer(text):
        path, name, continued = match.groups()
        if path:
            last = root / path
            if path.startswith(OUTPUT):  # written by the tests (screenshots...), not kept
                continue
            if not last.exists():
                missing.append(path)
                continue
        name = name or continued
        if not name or last is None or not last.is_file() or last.suffix != ".py":
            continue
        if not re.search(rf"^\s*(?:async )?def {name}\b", last.read_text(), re.MULTILINE):
            missing.append(f"{last.relative_to(root)}::{name}")
    return missing


def test_every_test_path_the_docs_cite_exists() -> None:
    assert ROOT / "README.md" in DOCS
    assert ROOT / "docs" / "guarantees.md" in DOCS  # the manual is searched too
    cited = {doc.relative_to(ROOT): dangling_citations(doc.read_text(), ROOT) for doc in DOCS}
    assert {doc: missing for doc, missing in cited.items() if missing} == {}


def test_a_moved_test_or_a_renamed_test_is_reported(tmp_path: Path) -> None:
    (tmp_path / "tests" / "unit").mkdir(parents=True)
    (tmp_path / "tests" / "unit" / "test_here.py").write_text("def test_a() -> None: ...\n")
    text = (
        "| x | `tests/unit/test_here.py::test_a`, `::test_gone`, `tests/unit/test_moved.py`, "
        "`tests/unit/test_moved.py::test_b` |"
    )
    assert dangling_citations(text, tmp_path) == [
        "tests/unit/test_here.py::test_gone",
        "tests/unit/test_moved.py",
        "tests/unit/test_moved.py",
    ]
    assert dangling_citations("`tests/unit/test_here.py::test_a`, `tests/unit/`", tmp_path) == []


def test_the_readme_links_reach_files_that_exist() -> None:
    readme = (ROOT / "README.md").read_text()
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", readme)
    local = [target for target in targets if "://" not in target]
    assert any(target.startswith("docs/") for target in local)
    assert [target for target in local if not (ROOT / target).exists()] == []


def test_ci_runs_the_readme_test_command() -> None:
    """The first code block of the README holds the two commands, the demo's then the tests';
    `.ci/run` runs exactly the second."""
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"```sh\n(.*?)```", readme, re.S)
    assert block is not None
    commands = [line.split("#")[0].strip() for line in block.group(1).splitlines()]
    assert commands == ["make demo", "make test"]
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    steps = [
        line.strip() for line in ci if line.strip() and not line.startswith(("#", "set ", "cd "))
    ]
    assert steps == [commands[1]]
