"""The study loop: invalid combinations, duplicates, a failed baseline, and a changed study on resume."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from optuna.trial import TrialState

from autotune.config.candidate import Candidate
from autotune.tuner import guards
from autotune.errors import SpaceError, StudyMismatchError, SystemicFailureError
from autotune.config.settings import SearchSettings
from autotune.tuner.loop import Tuner
from autotune.tuner.trials import counts_toward_trials
from autotune.config.workload import Workload

# Each test runs a study's trials in worker processes: out of the quick subset.
pytestmark = pytest.mark.slow

SPACE = """
knobs:
  decoding: {values: [standard, prompt_lookup]}
  cache_implementation: {values: [dynamic, static]}
invalid:
  - if: {decoding: [prompt_lookup], cache_implementation: [static]}
    reason: prompt lookup runs with a dynamic cache
"""


@pytest.fixture
def settings(tmp_path, bundled_model):
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    return SearchSettings(model=str(bundled_model), workload=Workload(prompts=("def f(x):\n",), max_new_tokens=4),
                          study_name="s", trials=3, space=str(space), device="cpu", root=str(tmp_path / "studies"),
                          repeats=1, warmup=0)


def test_invalid_combination_and_duplicate_are_recorded_without_a_worker(settings):
    tuner = Tuner(settings)
    tuner.prepare()
    tuner.enqueue_seeds()
    tuner.study.enqueue_trial({"decoding": "prompt_lookup", "cache_implementation": "static"})
    tuner.study.enqueue_trial(tuner.space.params_of(Candidate()))
    study = tuner.run()
    baseline, invalid, duplicate = study.trials[:3]
    # the invalid combination did not count toward the 3 trials: the sampler drew a fourth
    assert len(study.trials) == 4 and sum(map(counts_toward_trials, study.trials)) == 3
    assert baseline.user_attrs["role"] == "baseline" and baseline.state == TrialState.COMPLETE
    assert invalid.state == TrialState.COMPLETE and invalid.value == 0.0
    assert (invalid.user_attrs["status"], invalid.user_attrs["failure_kind"]) == ("unsupported", "invalid_combination")
    assert invalid.user_attrs["message"] == "prompt lookup runs with a dynamic cache"
    assert max(invalid.constraints.values()) > 0
    assert duplicate.user_attrs["duplicate_of"] == 0 and duplicate.value == baseline.value
    assert not (settings.study_dir / "trials" / "00001").exists()  # no process was started for them
    assert not (settings.study_dir / "trials" / "00002").exists()
    assert (settings.study_dir / "results" / "trial-00001.json").exists()



def test_an_enqueued_value_outside_the_space_is_recorded_not_a_crash(settings):
    """A trial enqueued from outside (optuna's enqueue_trial, benchmarks/studies_gpu.sh) with a value this
    study's space does not hold on this machine: recorded as an invalid combination, and the study goes on
    (it crashed with optuna's "'reduce-overhead' not in ('off', 'default')" on CPU)."""
    tuner = Tuner(settings)
    tuner.prepare()
    tuner.enqueue_seeds()
    tuner.study.enqueue_trial({"decoding": "standard", "cache_implementation": "offloaded_static"})
    study = tuner.run()
    outside = study.trials[1]
    assert (outside.user_attrs["status"], outside.user_attrs["failure_kind"]) == ("unsupported", "invalid_combination")
    assert "not in this study's search space" in outside.user_attrs["message"]
    assert "offloaded_static" in outside.user_attrs["message"]
    assert sum(map(counts_toward_trials, study.trials)) == 3  # it cost nothing and did not count


def test_a_space_with_nothing_valid_left_stops_instead_of_drawing_forever(settings, monkeypatch):
    monkeypatch.setattr(guards, "MAX_INVALID_IN_A_ROW", 3)
    tuner = Tuner(SearchSettings(**{**settings.__dict__, "trials": 5}))
    tuner.prepare()
    tuner.enqueue_seeds()
    for _ in range(3):
        tuner.study.enqueue_trial({"decoding": "prompt_lookup", "cache_implementation": "static"})
    with pytest.raises(SpaceError, match="3 invalid combinations in a row"):
        tuner.run()
    assert [t.user_attrs.get("failure_kind") for t in tuner.study.trials] == [None] + ["invalid_combination"] * 3


def test_failed_baseline_stops_the_study(settings, monkeypatch):
    monkeypatch.setenv("AUTOTUNE_ALLOW_FAULTS", "1")
    tuner = Tuner(SearchSettings(**{**settings.__dict__, "faults": (("0", "error"),)}))
    with pytest.raises(SystemicFailureError, match="baseline"):
        tuner.run()
    failed, retry = tuner.study.trials  # the baseline failed once; its retry waits for the next run
    assert (failed.state, failed.user_attrs["failure_kind"]) == (TrialState.FAIL, "error")
    assert retry.state == TrialState.WAITING and retry.user_attrs["role"] == "baseline"
    assert retry.system_attrs["retry_history"] == [0]


def test_resuming_with_another_space_is_refused(settings, tmp_path):
    Tuner(SearchSettings(**{**settings.__dict__, "trials": 1})).run()
    other = tmp_path / "other.yaml"
    other.write_text("knobs:\n  dtype: {values: [float32]}\n")
    changed = SearchSettings(**{**settings.__dict__, "space": str(other), "trials": 1})
    with pytest.raises(StudyMismatchError, match="search space"):
        Tuner(changed).prepare()
    fresh = Tuner(SearchSettings(**{**changed.__dict__, "new_study": True})).run()
    assert len(fresh.trials) == 1


def test_sampling_study_judges_equivalence_by_teacher_forced_distributions(tmp_path, bundled_model):
    space = tmp_path / "dtype.yaml"
    space.write_text("knobs:\n  dtype: {values: [float32]}\n")
    settings = SearchSettings(model=str(bundled_model), study_name="sampled", trials=2, space=str(space), device="cpu",
                              workload=Workload(prompts=("def f(x):\n",), max_new_tokens=6, sampling=True, seed=7),
                              root=str(tmp_path / "studies"), repeats=1, warmup=0)
    tuner = Tuner(settings)
    tuner.prepare()
    tuner.study.enqueue_trial({"dtype": "auto"}, user_attrs={"role": "baseline"})
    tuner.study.enqueue_trial({"dtype": "float32"})
    baseline, fp32 = tuner.run().trials
    for trial in (baseline, fp32):
        assert trial.user_attrs["status"] == "ok", trial.user_attrs["message"]
        assert trial.user_attrs["prefix_match"] is None  # sampled text is not compared
    assert baseline.user_attrs["top1_agreement"] == 1.0
    agreement = fp32.user_attrs["top1_agreement"]
    assert 0.5 < agreement <= 1.0 and fp32.user_attrs["mean_kl"] >= 0
    # judged by the study's gate: against float32, whose scores the baseline trial made beside its own
    scores = SimpleNamespace(**{k: fp32.user_attrs.get(k) for k in (
        "top1_agreement", "float32_top1_agreement", "float32_mean_kl", "floor_top1_agreement", "floor_mean_kl")})
    assert fp32.user_attrs["float32_top1_agreement"] == 1.0 and fp32.user_attrs["floor_top1_agreement"] == agreement
    assert fp32.constraints["top1_agreement"] == pytest.approx(settings.equivalence_gate.gap(scores))
    assert fp32.constraints["top1_agreement"] <= 0


def test_random_weights_record_their_agreement_without_judging_it(settings):
    from autotune.config.measurement import Measurement

    tuner = Tuner(settings)
    tuner.prepare()
    judged, not_judged = tuner.study.ask(), tuner.study.ask()
    figures = dict(status="ok", decode_tokens_per_s=10.0, top1_agreement=0.2, peak_memory_bytes=1)
    tuner.record(judged, Candidate(), Measurement(**figures), None)
    tuner.record(not_judged, Candidate(), Measurement(**figures, equivalence_meaningful=False), None)
    judged, not_judged = tuner.study.trials
    assert judged.constraints["top1_agreement"] > 0  # infeasible: 0.2 < 0.99
    assert not_judged.constraints["top1_agreement"] == 0 and not_judged.user_attrs["top1_agreement"] == 0.2
    assert not_judged.user_attrs["equivalence_meaningful"] is False


def test_a_hopeless_trial_stops_after_one_pass_and_is_pruned(settings, monkeypatch):
    """Early stopping: a configuration far slower than the best so far (the `slowgen` fault delays every
    decoding step) stops after its first timed pass, is PRUNED with that pass's tok/s, is not compared, and
    a repeat of it reuses the result."""
    monkeypatch.setenv("AUTOTUNE_ALLOW_FAULTS", "1")
    tuner = Tuner(SearchSettings(**{**settings.__dict__, "trials": 3, "repeats": 3,
                                    "faults": (("cache_implementation=static", "slowgen"),)}))
    tuner.prepare()
    tuner.enqueue_seeds()
    static = tuner.space.params_of(Candidate(cache_implementation="static"))
    tuner.study.enqueue_trial(static)
    tuner.study.enqueue_trial(static)
    baseline, slow, repeat = tuner.run().trials
    assert baseline.state == TrialState.COMPLETE
    assert slow.state == TrialState.PRUNED
    a = slow.user_attrs
    assert (a["status"], a["failure_kind"]) == ("stopped", "hopeless")
    assert "stopped after the first measured pass" in a["message"]
    assert a["top1_agreement"] is None  # not compared with the baseline
    tok_s = slow.intermediate_values[0]
    assert tok_s == a["decode_tokens_per_s"] and 0 < tok_s < 0.5 * baseline.value
    record = tuner.records.load(slow.number)
    assert record["stopped_early"]["after"] == "pass 1" and len(record["runs"]) == 1
    assert record["stopped_early"]["threshold"] == pytest.approx(0.5 * baseline.value)
    assert repeat.state == TrialState.PRUNED and repeat.user_attrs["duplicate_of"] == slow.number
    assert tuner.best_value() == baseline.value


def test_early_stop_zero_runs_every_trial_to_the_end(settings, monkeypatch):
    monkeypatch.setenv("AUTOTUNE_ALLOW_FAULTS", "1")
    tuner = Tuner(SearchSettings(**{**settings.__dict__, "trials": 2, "repeats": 2, "early_stop": 0.0,
                                    "faults": (("cache_implementation=static", "slowgen"),)}))
    tuner.prepare()
    tuner.enqueue_seeds()
    tuner.study.enqueue_trial(tuner.space.params_of(Candidate(cache_implementation="static")))
    baseline, slow = tuner.run().trials
    assert slow.state == TrialState.COMPLETE and slow.user_attrs["status"] == "ok"
    assert slow.value < 0.5 * baseline.value and slow.user_attrs["top1_agreement"] is not None


def test_early_stop_must_be_a_fraction(settings):
    from autotune.errors import InputError

    with pytest.raises(InputError, match="--early-stop"):
        SearchSettings(**{**settings.__dict__, "early_stop": 1.5})


def test_a_retry_is_not_another_failed_configuration(settings, monkeypatch):
    """--max-initial-failures counts configurations: a configuration that fails and fails again on its retry
    does not stop a study that has other configurations to try."""
    monkeypatch.setenv("AUTOTUNE_ALLOW_FAULTS", "1")
    tuner = Tuner(SearchSettings(**{**settings.__dict__, "trials": 4, "max_initial_failures": 2,
                                    "faults": (("1", "error"), ("2", "error"))}))
    tuner.prepare()
    tuner.enqueue_seeds()
    tuner.study.enqueue_trial(tuner.space.params_of(Candidate(cache_implementation="static")))
    trials = tuner.run().trials
    assert [t.state for t in trials[1:3]] == [TrialState.FAIL, TrialState.FAIL]
    assert trials[2].system_attrs["retry_history"] == [1]
    assert any(t.user_attrs.get("status") == "ok" for t in trials[3:])


def test_covering_trials_follow_the_baseline_until_every_value_is_measured(settings):
    from autotune.tuner import coverage

    tuner = Tuner(SearchSettings(**{**settings.__dict__, "trials": 4}))
    study = tuner.run()
    roles = [t.user_attrs["role"] for t in study.trials]
    assert roles[:3] == ["baseline", "cover", "cover"] and roles[3] == "search"
    covers = {(t.params["decoding"], t.params["cache_implementation"]) for t in study.trials[1:3]}
    assert covers == {("prompt_lookup", "dynamic"), ("standard", "static")}  # the two valid ones left
    ran = [(t.number, Candidate.from_json(t.user_attrs["candidate"]), t.user_attrs["status"]) for t in study.trials]
    measured, _ = coverage.tally(tuner.space, ran)
    assert set(measured) == coverage.all_values(tuner.space)


def test_a_covering_trial_leaves_another_workers_running_configuration_alone(settings):
    """Two workers of one study choose covering trials: what the other is running (its configuration is
    recorded only when it ends) is not chosen again."""
    tuner = Tuner(SearchSettings(**{**settings.__dict__, "trials": 4}))
    tuner.prepare()
    tuner.enqueue_seeds()
    tuner.step()  # the baseline
    tuner.study.enqueue_trial({"decoding": "standard", "cache_implementation": "static"})  # what it would choose
    other = tuner.study.ask()  # another worker's trial, running
    assert other.params == {} and tuner.study.trials[other.number].state == TrialState.RUNNING
    tuner.covering.enqueue_next(tuner.study)
    waiting = [t for t in tuner.study.trials if t.state == TrialState.WAITING]
    assert len(waiting) == 1
    assert waiting[0].system_attrs["fixed_params"] == {"decoding": "prompt_lookup", "cache_implementation": "dynamic"}


def test_two_studies_of_one_name_in_other_storages_do_not_share_a_folder(settings, tmp_path):
    """A SQLite study and a journal study (search --gpus) named alike under one --root: the second would have
    overwritten the first's results trial by trial; it is refused, and nothing is lost."""
    from autotune.errors import InputError
    from autotune.tuner.study import FOLDER_FILE

    Tuner(settings).prepare()
    marker = settings.study_dir / FOLDER_FILE
    assert marker.read_text().strip() == "sqlite file s.db"
    journal = SearchSettings(**{**settings.__dict__, "storage": str(tmp_path / "studies" / "s.log")})
    with pytest.raises(InputError, match=r"holds the results of the study 's' in another storage \(sqlite file s.db; "
                                         r"this one is journal file s.log\)"):
        Tuner(journal).prepare()
    assert marker.read_text().strip() == "sqlite file s.db"
    Tuner(settings).prepare()  # the study of the folder opens as before
    elsewhere = SearchSettings(**{**journal.__dict__, "root": str(tmp_path / "other")})
    Tuner(elsewhere).prepare()  # under another --root it has a folder of its own
    assert (elsewhere.study_dir / FOLDER_FILE).read_text().strip() == "journal file s.log"


def test_no_cover_leaves_every_trial_to_the_sampler(settings):
    tuner = Tuner(SearchSettings(**{**settings.__dict__, "trials": 2, "cover": False}))
    study = tuner.run()
    assert "cover" not in [t.user_attrs["role"] for t in study.trials]


def test_confirmations_cut_short_keep_a_preset_and_resume_where_they_stopped(settings, monkeypatch):
    """A session that ends during the confirmations keeps a preset: it is written before them, each
    confirmation is kept in the study as it ends, and a rerun measures only the missing ones."""
    import json

    from autotune.config.settings import default_preset_path
    from autotune.tuner.launching import TrialLauncher

    confirming = SearchSettings(**{**settings.__dict__, "trials": 1, "confirm": 2})
    tuner = Tuner(confirming)
    tuner.run()
    real, launched = TrialLauncher.run, []

    def ends_during_the_second(self, number, role, candidate, job_name=None):
        if role == "confirm" and launched:
            raise KeyboardInterrupt  # the machine went back
        launched.append(job_name)
        return real(self, number, role, candidate, job_name)

    monkeypatch.setattr(TrialLauncher, "run", ends_during_the_second)
    with pytest.raises(KeyboardInterrupt):
        tuner.confirm_and_export()
    preset = default_preset_path(confirming.root, confirming.study_name)
    assert preset.exists() and "stability" not in json.loads(preset.read_text())["measurement"]
    assert len(tuner.study.user_attrs["stability"]["runs"]) == 1

    launched.clear()
    monkeypatch.setattr(TrialLauncher, "run", lambda self, *a, **k: launched.append(k.get("job_name")) or real(self, *a, **k))
    again = Tuner(confirming)
    again.run()
    again.confirm_and_export()
    assert launched == ["confirm-00000-1"]  # only the missing one
    stability = json.loads(preset.read_text())["measurement"]["stability"]
    assert len(stability["runs"]) == 2 and all(v > 0 for v in stability["runs"]) and stability["cv"] is not None


def test_an_enqueued_value_of_a_knob_that_does_not_apply_is_recorded_not_dropped(settings):
    """compile=default beside a dynamic cache: the space never asks for compile there, so the enqueued value
    would be dropped and the trial would run another configuration without a word; it is recorded instead."""
    tuner = Tuner(settings)
    tuner.prepare()
    tuner.enqueue_seeds()
    tuner.study.enqueue_trial({"decoding": "standard", "cache_implementation": "dynamic", "compile": "default"})
    study = tuner.run()
    ignored = study.trials[1]
    assert ignored.user_attrs["failure_kind"] == "invalid_combination"
    assert "does not take here" in ignored.user_attrs["message"] and "'compile': 'default'" in ignored.user_attrs["message"]


def test_a_retry_runs_in_the_run_that_enqueued_it_in_the_failed_trials_place(settings, monkeypatch):
    """A crashed trial's retry is not left WAITING for a larger --trials: the failed trial it replaces does not
    count toward the budget, the retry does; the failure says its kind, and the table shows a waiting retry as
    waiting."""
    from autotune.present.tables import trial_rows
    from autotune.tuner.trials import budget_used, retried_trial_number
    from autotune.worker.faults import parse_spec

    monkeypatch.setenv("AUTOTUNE_ALLOW_FAULTS", "1")
    tuner = Tuner(SearchSettings(**{**settings.__dict__, "faults": tuple(parse_spec("1:kill"))}))
    tuner.prepare()
    tuner.enqueue_seeds()
    study = tuner.run()
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    assert [(t.number, t.user_attrs["failure_kind"]) for t in failed] == [(1, "crash")]
    retry = next(t for t in study.trials if retried_trial_number(t) == 1)
    assert retry.state == TrialState.COMPLETE and retry.params == failed[0].params
    assert not study.get_trials(states=(TrialState.WAITING,))
    assert budget_used(study.trials) == 3 and len(study.trials) == 4

    study.enqueue_trial(retry.params, user_attrs=dict(retry.user_attrs))  # as Optuna enqueues a retry
    waiting = trial_rows(study, by_speed=False)[-1]
    assert waiting["status"] == "waiting" and waiting["decode_tokens_per_s"] is None


def test_a_trial_killed_while_compiling_is_not_retried_and_its_configuration_not_launched_again(settings,
                                                                                                monkeypatch):
    """A worker killed at --trial-timeout during its warm-up (`warmup_timeout`) would compile as long again
    on a retry at that timeout: the failure is final, and the same configuration drawn again reuses it."""
    from autotune.config.measurement import Measurement
    from autotune.tuner import launching

    launched = []

    def launch(job, *args, **kwargs):
        launched.append(job.trial_number)
        if job.trial_number == 1:
            return Measurement.failed("timeout", "warmup_timeout", "still warming up after 240 s")
        return real_launch(job, *args, **kwargs)

    real_launch = launching.launch
    monkeypatch.setattr(launching, "launch", launch)
    tuner = Tuner(SearchSettings(**{**settings.__dict__, "trials": 3}))
    tuner.prepare()
    tuner.enqueue_seeds()
    static = tuner.space.params_of(Candidate(cache_implementation="static"))
    tuner.study.enqueue_trial(static)
    tuner.study.enqueue_trial(static)
    trials = tuner.run().trials
    assert len(trials) == 3 and launched == [0, 1]
    failed, again = trials[1], trials[2]
    assert failed.state == TrialState.FAIL and failed.user_attrs["failure_kind"] == "warmup_timeout"
    assert again.user_attrs["duplicate_of"] == 1 and again.state == TrialState.FAIL
    assert not any("retry_history" in t.system_attrs for t in trials)
