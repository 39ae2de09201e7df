"""R1-R7: faults inside a trial's worker, and the baseline (../shared/RELIABILITY.md)."""

from __future__ import annotations

import json
import shutil

import pytest
from faultkit import DATA, MODEL, attrs, load, run_search, worker_processes
from optuna.trial import TrialState

from autotune.tuner.trials import best_feasible_trial

pytestmark = pytest.mark.slow


def test_r1_oom_is_infeasible_not_fatal(workdir):
    run = run_search(workdir, 4, faults="1:oom")
    assert run.returncode == 0, run.stdout + run.stderr
    trials = load(workdir).trials
    oom = trials[1]
    assert oom.state == TrialState.COMPLETE and max(oom.constraints.values()) > 0
    assert (attrs(oom)["status"], attrs(oom)["failure_kind"]) == ("oom", "oom")
    assert attrs(trials[2])["status"] == "ok"
    pids = [json.loads((workdir / "studies/r/results" / f"trial-{n:05d}.json").read_text())["pid"] for n in range(3)]
    assert len(set(pids)) == 3  # every trial in a process of its own
    assert best_feasible_trial(trials).number != 1
    assert len([t for t in trials if t.state.is_finished()]) == 4


def test_r3_hang_is_killed(workdir):
    run = run_search(workdir, 3, "--trial-timeout", "20", faults="1:hang")
    assert run.returncode == 0, run.stdout + run.stderr
    hung = load(workdir).trials[1]
    assert hung.state == TrialState.FAIL and attrs(hung)["failure_kind"] == "timeout"
    result = json.loads((workdir / "studies/r/results/trial-00001.json").read_text())
    assert result["wall_s"] < 20 + 2 * 5 + 5  # timeout + kill grace (TERM, then KILL) + slack
    assert worker_processes(workdir) == []
    retry = load(workdir).trials[2]
    assert retry.system_attrs["retry_history"] == [1] and retry.params == hung.params
    assert attrs(retry)["status"] == "ok"


def test_r4_hard_crash(workdir):
    # --no-cover: trial 3 must launch a process; on this small space a covering trial and its retry use up
    # the covering budget, and TPE's trial 3 then repeated trial 1's configuration (reused, no process)
    run = run_search(workdir, 5, "--no-cover", faults="1:kill,3:exit")
    assert run.returncode == 0, run.stdout + run.stderr
    trials = load(workdir).trials
    for number, code in ((1, -9), (3, 139)):
        t = trials[number]
        assert t.state == TrialState.FAIL and attrs(t)["failure_kind"] == "crash"
        assert attrs(t)["exit_code"] == code
        result = json.loads((workdir / "studies/r/results" / f"trial-{number:05d}.json").read_text())
        assert result["exit_code"] == code and "without a result" in result["message"]
    assert [attrs(t)["status"] for t in (trials[2], trials[4])] == ["ok", "ok"]  # the retries ran


def test_r5_unsupported_combination_is_rejected_before_launch_and_avoided(workdir):
    space = workdir / "space.yaml"
    space.write_text("""
knobs:
  dtype: {values: [auto, float32]}
  decoding: {values: [standard, prompt_lookup]}
  pad_to_multiple_of: {values: [none, 8, 16, 32]}
invalid:
  - if: {decoding: [prompt_lookup], pad_to_multiple_of: [8, 16, 32]}
    reason: this test's rule
""")
    run = run_search(workdir, 30, "--space", str(space))
    assert run.returncode == 0, run.stdout + run.stderr
    trials = load(workdir).trials
    invalid = [t.number for t in trials if attrs(t).get("failure_kind") == "invalid_combination"]
    assert invalid, "the sampler never proposed an invalid combination"
    for number in invalid:
        assert not (workdir / "studies/r/trials" / f"{number:05d}").exists()  # no process started
        assert max(trials[number].constraints.values()) > 0
    uniform_share = 0.5 * 0.75  # prompt_lookup and a padding other than none
    late = [n for n in invalid if n >= 15]
    assert len(late) / 15 < uniform_share, f"TPE kept proposing invalid combinations: {invalid}"


def test_r6_systemic_failure_aborts_fast(workdir):
    broken = workdir / "broken-model"
    shutil.copytree(MODEL, broken)
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    run = run_search(workdir, 10, "--model", str(broken))
    assert run.returncode == 4
    assert "baseline" in run.stderr and "Traceback" not in run.stderr
    assert len(list((workdir / "studies/r/trials").iterdir())) == 1  # one launch, not K+1

    # every configuration but the baseline fails: the study stops once K (3) configurations have failed
    every_other = "dtype=float32:error," + ",".join(f"pad_to_multiple_of={n}:error" for n in (8, 16, 32))
    run = run_search(workdir, 10, "--new-study", "--max-retry", "0", faults=every_other)
    assert run.returncode == 4 and "the first 3 configurations after the baseline all failed" in run.stderr
    # The baseline + K launches: a configuration that failed is not launched again with --max-retry 0 (a repeat
    # of it reuses the failure and is not another configuration)
    assert len(list((workdir / "studies/r/trials").iterdir())) == 4


def test_r7_baseline_first(workdir):
    run = run_search(workdir, 2)
    assert run.returncode == 0, run.stdout + run.stderr
    baseline = load(workdir).trials[0]
    assert attrs(baseline)["role"] == "baseline" and attrs(baseline)["config"] == "baseline"
    assert baseline.params == {"dtype": "auto", "pad_to_multiple_of": None}
    assert attrs(baseline)["top1_agreement"] == 1.0
    assert (workdir / "studies/r/baseline.pt").is_file()
    assert (DATA / "small_space.yaml").is_file()
