"""benchmarks/assisted_divergence.py: the prefix match of assisted decoding against greedy decoding."""

from __future__ import annotations

from support import load_benchmark


def test_prefix_share_counts_up_to_the_first_differing_token():
    script = load_benchmark("assisted_divergence")
    assert script.prefix_share([1, 2, 3, 4], [1, 2, 9, 4]) == 0.5
    assert script.prefix_share([1, 2], [1, 2]) == 1.0
    assert script.prefix_share([5, 2], [1, 2]) == 0.0


def test_float32_assisted_decoding_follows_greedy_decoding(bundled_model, tmp_path):
    """The bundled model as its own assistant, in float32: every continuation is the greedy one."""
    script = load_benchmark("assisted_divergence")
    out = tmp_path / "d.json"
    assert script.main(["--model", str(bundled_model), "--assistant", str(bundled_model), "--dtypes", "float32",
                        "--assistant-tokens", "3", "--new-tokens", "8", "--out", str(out)]) == 0
    import json

    rows = json.loads(out.read_text())["rows"]
    assert len(rows) == 1 and rows[0]["mean"] == 1.0 and len(rows[0]["prefix_match"]) == 4
