"""benchmarks/results_table.py: the README's and docs/results.md's results table is the one the result files
make; a table edited by hand, or a result file added without regenerating, fails."""

from __future__ import annotations

import json

from support import ROOT, load_benchmark


def test_the_documents_show_the_table_of_the_result_files():
    results = load_benchmark("results_table")
    assert results.result_files(), "no result files under benchmarks/results"
    assert results.check() == [], "run: python benchmarks/results_table.py write"


def test_a_table_that_disagrees_with_the_files_is_found(tmp_path):
    results = load_benchmark("results_table")
    readme = tmp_path / "README.md"
    readme.write_text((ROOT / "README.md").read_text().replace("606.3", "706.3"))
    assert results.check([readme]) == [str(readme)]
    results.write([readme])
    assert results.check([readme]) == []


def test_a_row_says_what_was_measured_where():
    results = load_benchmark("results_table")
    row = json.loads(results.result_files()[0].read_text())
    line = results.table([row]).splitlines()[-1]
    for fragment in (row["model"], row["machine"], row["date"], row["commit"], f"{row['best_tok_s']:.1f}"):
        assert fragment in line
    assert f"{row['best_tok_s'] / row['baseline_tok_s']:.1f}x" in line
