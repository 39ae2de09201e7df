"""benchmarks/search_efficiency.py: the replay of the sampler over a measured grid (the GPU grid itself is
measured on the GPU machine; here a grid of made-up figures over a small space)."""

from __future__ import annotations

import pytest
from support import load_benchmark

from autotune.config.candidate import Candidate
from autotune.config.space import SearchSpace

SPACE = """
knobs:
  dtype: {values: [auto, float16, bfloat16]}
  cache_implementation: {values: [dynamic, static]}
  compile: {values: ["off", default, max-autotune], when: {cache_implementation: [static]}}
"""


@pytest.fixture(scope="module")
def efficiency():
    return load_benchmark("search_efficiency")


def made_up_grid(efficiency) -> dict:
    space = SearchSpace.from_yaml(SPACE)
    rows = {}
    for i, c in enumerate(efficiency.unique(space.candidates())):
        value = 100.0 + 50 * (c.compile != "off") + 30 * (c.compile == "max-autotune") + 5 * (c.dtype == "bfloat16")
        feasible = not (c.dtype == "float16" and c.compile == "max-autotune")  # say it disagrees
        rows[c.key()] = {"config": c.describe(), "candidate": c.to_dict(), "value": value if feasible else 0.0,
                         "feasible": feasible, "seconds": 10.0 + 40 * (c.compile != "off"), "trial": i}
    return {"space": space.to_dict(), "model": "made-up", "device": "cpu", "rows": rows}


def test_replay_counts_each_configuration_once_until_within_five_percent(efficiency):
    grid = made_up_grid(efficiency)
    total = sum(r["seconds"] for r in grid["rows"].values())
    best = max(r["value"] for r in grid["rows"].values() if r["feasible"])
    for run in efficiency.replay_all(grid, seeds=5):
        assert run["reached"] and 0 < run["seconds"] <= total
        assert run["share"] == pytest.approx(run["seconds"] / total)
        assert run["distinct"] <= len(grid["rows"]) and run["trials"] >= run["distinct"]
    text = efficiency.summary(grid, efficiency.replay_all(grid, seeds=3))
    assert f"best {best:.1f} tok/s" in text and "median share" in text


def test_a_configuration_missing_from_the_grid_is_an_error(efficiency):
    grid = made_up_grid(efficiency)
    del grid["rows"][Candidate().key()]  # the baseline, which every replay asks for first
    with pytest.raises(SystemExit, match="not in the grid"):
        efficiency.replay(grid, 0)


def test_a_replay_starts_as_a_study_does(efficiency, monkeypatch):
    """The baseline, the seed recipe, then covering trials until every value of the space was measured."""
    grid = made_up_grid(efficiency)
    asked = []
    real_tally = efficiency.coverage.tally

    def tally(space, ran):
        asked.append([c for _, c, _ in ran])
        return real_tally(space, ran)

    monkeypatch.setattr(efficiency.coverage, "tally", tally)
    monkeypatch.setattr(efficiency, "WITHIN", -1.0)  # never reached: the replay runs its whole course
    efficiency.replay(grid, 0)
    first = asked[-1]
    space = SearchSpace.from_dict(grid["space"])
    assert first[0] == Candidate() and first[1] == efficiency.seed_recipe(space)
    measured, _ = real_tally(space, [(i, c, "ok") for i, c in enumerate(first)])
    assert set(measured) == efficiency.coverage.all_values(space)


def test_the_tuner_draws_its_covering_pool_with_the_seed_and_the_others_cover_nothing(efficiency, monkeypatch):
    """As `autotune search` does (coverage.pool with the study's seed); `tpe` is `--no-cover`, `random` the
    reference: neither asks for a covering trial."""
    grid = made_up_grid(efficiency)
    seeds, covers = [], []
    real_pool, real_next = efficiency.coverage.pool, efficiency.coverage.next_cover
    monkeypatch.setattr(efficiency.coverage, "pool", lambda space, seed, assistant: seeds.append(seed)
                        or real_pool(space, seed, assistant))
    monkeypatch.setattr(efficiency.coverage, "next_cover", lambda *a, **k: covers.append(1) or real_next(*a, **k))
    for sampler in ("tpe", "random"):
        assert efficiency.replay(grid, 3, sampler)["reached"]
    assert seeds == [] and covers == []
    assert efficiency.replay(grid, 3, "tuner")["reached"]
    assert seeds == [3] and covers


def test_all_samplers_print_one_table_each(efficiency):
    grid = made_up_grid(efficiency)
    text = efficiency.replay_summaries(grid, 2, "all")
    assert text.count("median share") == 3
    assert "== the tuner" in text and "== TPE alone" in text and "== random sampling" in text
    assert efficiency.replay_summaries(grid, 2, "tpe").count("median share") == 1


@pytest.mark.slow
def test_the_grid_is_measured_by_one_worker_per_device(efficiency, bundled_model, tmp_path):
    """`grid --gpus 0,1` (here on CPU): the grid's trials run in two workers on one journal file, every
    configuration once, each with its own seconds, and the table is written."""
    space = tmp_path / "space.yaml"
    space.write_text("knobs:\n  dtype: {values: [auto, bfloat16]}\n  cache_implementation: {values: [dynamic, static]}\n")
    out = tmp_path / "grid.json"
    assert efficiency.main(["grid", "--model", str(bundled_model), "--device", "cpu", "--space", str(space),
                            "--max-new-tokens", "4", "--repeats", "1", "--trial-timeout", "120", "--gpus", "0,1",
                            "--root", str(tmp_path / "studies"), "--out", str(out), "--grid-only"]) == 0
    import json

    import optuna

    grid = json.loads(out.read_text())
    configurations = {(r["candidate"]["dtype"], r["candidate"]["cache_implementation"]) for r in grid["rows"].values()}
    assert configurations == {("auto", "dynamic"), ("auto", "static"), ("bfloat16", "dynamic"), ("bfloat16", "static")}
    assert all(r["status"] == "ok" and r["seconds"] > 0 and r["value"] > 0 for r in grid["rows"].values())
    assert (tmp_path / "studies" / "grid.log").is_file()  # the journal file the two workers shared
    from autotune.tuner.storage import storage_for

    study = optuna.load_study(study_name="grid", storage=storage_for(str(tmp_path / "studies" / "grid.log"),
                                                                     heartbeat_interval=None))
    workers = {t.user_attrs.get("worker", {}).get("gpu") for t in study.trials}
    assert workers == {"0", "1"}

    # the GPU machine taken back in mid-trial: a trial left RUNNING by a worker that is gone
    from autotune.config.space import SearchSpace as Space
    from autotune.tuner.study import STUDY_ATTR

    grid_space = Space.from_dict(study.user_attrs[STUDY_ATTR]["space"])
    static = next(Candidate.from_dict(r["candidate"]) for r in grid["rows"].values()
                  if r["candidate"]["cache_implementation"] == "static")
    study.enqueue_trial(grid_space.params_of(static))
    orphan = study.ask()
    orphan.set_user_attr("worker", {"host": __import__("socket").gethostname(), "pid": 1, "boot": "a boot before"})
    measured = len(study.trials)

    # `table` reads the study as it stands, measuring nothing
    table_out = tmp_path / "table.json"
    assert efficiency.main(["table", "--root", str(tmp_path / "studies"), "--out", str(table_out), "--grid-only"]) == 0
    assert json.loads(table_out.read_text())["rows"] == grid["rows"] and json.loads(table_out.read_text())["missing"] == []

    # the same command again goes on: nothing is measured twice, the orphan is failed and costs nothing
    assert efficiency.main(["grid", "--model", str(bundled_model), "--device", "cpu", "--space", str(space),
                            "--max-new-tokens", "4", "--repeats", "1", "--trial-timeout", "120", "--gpus", "0",
                            "--root", str(tmp_path / "studies"), "--out", str(out), "--grid-only"]) == 0
    study = optuna.load_study(study_name="grid", storage=storage_for(str(tmp_path / "studies" / "grid.log"),
                                                                     heartbeat_interval=None))
    assert study.trials[orphan.number].user_attrs["failure_kind"] == "worker_died"
    assert all(t.user_attrs.get("duplicate_of") is not None for t in study.trials[measured:])
    assert json.loads(out.read_text())["rows"] == grid["rows"]


def made_up_study(efficiency, space: SearchSpace, results: list[tuple]):
    """An in-memory study holding trials as the grid's would: (candidate, state, failure kind, seconds,
    duplicate of)."""
    import datetime

    import optuna
    from optuna.trial import TrialState

    study = optuna.create_study(direction="maximize")
    start = datetime.datetime(2026, 11, 30, 12, 0, 0)
    for candidate, state, failure, seconds, duplicate in results:
        attrs = {"candidate_key": candidate.key(), "candidate": candidate.to_json(), "config": candidate.describe(),
                 "status": "ok" if state == TrialState.COMPLETE else "crash", "failure_kind": failure,
                 "duplicate_of": duplicate}
        trial = optuna.trial.create_trial(
            state=state, value=100.0 if state == TrialState.COMPLETE else None, params=space.params_of(candidate),
            distributions={name: optuna.distributions.CategoricalDistribution(space.to_dict()["knobs"][name]["values"])
                           for name in space.params_of(candidate)},
            user_attrs=attrs, constraints={"runs": 0.0} if state == TrialState.COMPLETE else None)
        trial.datetime_start, trial.datetime_complete = start, start + datetime.timedelta(seconds=seconds)
        study.add_trial(trial)
    return study


def test_a_grid_cut_short_measures_again_only_what_it_did_not_measure(efficiency):
    """A trial whose worker died with the GPU machine (`worker_died`) measured nothing: its configuration is
    measured again and its seconds (up to the moment it was failed, a session later) are no one's cost; a
    configuration enqueued and not started is not enqueued twice; a crash is a measurement."""
    from optuna.trial import TrialState

    space = SearchSpace.from_yaml(SPACE)
    a, b, c, d, e = efficiency.unique(space.candidates())[:5]
    study = made_up_study(efficiency, space, [
        (a, TrialState.COMPLETE, None, 50.0, None),
        (a, TrialState.COMPLETE, None, 0.1, 0),          # drawn again, its result reused
        (b, TrialState.FAIL, "worker_died", 7200.0, None),
        (c, TrialState.FAIL, "crash", 30.0, None),
    ])
    study.enqueue_trial(space.params_of(d))
    assert efficiency.to_measure(study, space, [a, b, c, d, e]) == [b, e]

    table = efficiency.grid_table(study, space, "m", "cpu")
    assert set(table["rows"]) == {a.key(), c.key()}
    assert table["rows"][a.key()]["seconds"] == 50.0 and table["rows"][a.key()]["feasible"]
    assert table["rows"][c.key()]["seconds"] == 30.0 and not table["rows"][c.key()]["feasible"]
