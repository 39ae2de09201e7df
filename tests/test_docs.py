"""The documents stay honest: every link resolves, the README stays short and its test command is what CI runs.
(docs/cli.md against the commands: tests/cli/test_cli.py; the results table against the result files:
tests/benchmarks/test_results_table.py.)"""

from __future__ import annotations

import re

import pytest
from support import ROOT

DOCUMENTS = sorted([ROOT / "README.md", *ROOT.glob("docs/*.md"), *ROOT.glob("benchmarks/*.md"),
                    ROOT / "benchmarks" / "journal" / "README.md", *ROOT.glob("examples/*.md")])


def anchors(markdown: str) -> set[str]:
    """GitHub's anchors of a document's headings."""
    return {re.sub(r"[^a-z0-9 -]", "", heading.strip().lower()).replace(" ", "-")
            for heading in re.findall(r"^#+ (.*)$", markdown, flags=re.M)}


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_link_resolves(document):
    for link in re.findall(r"\]\(([^)]+)\)", document.read_text()):
        if link.startswith(("http://", "https://")):
            continue
        target, _, anchor = link.partition("#")
        path = (document.parent / target).resolve() if target else document
        assert path.exists(), f"{document.name}: {link} does not exist"
        if anchor and path.suffix == ".md":
            assert anchor in anchors(path.read_text()), f"{document.name}: no heading for #{anchor} in {path.name}"


def test_the_readme_is_short_and_its_test_command_is_what_ci_runs():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    commands = [line.strip() for line in readme.splitlines() if line.startswith("    python3 -m venv .venv")]
    assert any("autotune search --model examples/models/codelm-4m" in command for command in commands)
    tests = [command for command in commands if command.endswith("python -m pytest")]
    assert len(tests) == 1 and tests[0] in (ROOT / ".ci" / "run").read_text()
