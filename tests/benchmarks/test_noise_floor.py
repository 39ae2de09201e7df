"""benchmarks/noise_floor.py: each configuration scored against the baseline and against a float32 reference."""

from __future__ import annotations

import json

from support import load_benchmark


def test_the_baseline_and_float32_score_each_other_alike_and_themselves_fully(bundled_model, tmp_path):
    script = load_benchmark("noise_floor")
    out = tmp_path / "floor.json"
    script.main(["--model", str(bundled_model), "--prompts", "code", "--max-new-tokens", "8",
                 "--candidates", "{}", '{"dtype": "float32"}', "--out", str(out)])
    rows = {row["candidate"]: row for row in json.loads(out.read_text())["rows"]}
    base, exact = rows["baseline"], rows["dtype=float32"]
    assert base["vs_baseline"]["top1_agreement"] == 1.0 and exact["vs_float32"]["top1_agreement"] == 1.0
    assert base["vs_baseline"]["mean_kl"] < 1e-6 and exact["vs_float32"]["mean_kl"] < 1e-6
    # the distance between the two is the same seen from either side (each on its own continuation)
    assert abs(base["vs_float32"]["top1_agreement"] - exact["vs_baseline"]["top1_agreement"]) <= 0.1
    assert base["vs_float32"]["mean_kl"] > 0
