"""The command line: bad input gets one clear line and a non-zero exit, never a traceback; help everywhere."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from autotune.cli import main

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def in_tmp_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing a failing command might write lands in the checkout


def invoke(*args):
    return CliRunner().invoke(main, list(args))


def assert_clear_error(result, *fragments):
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    for fragment in fragments:
        assert fragment in result.output, result.output


def test_missing_model_path(tmp_path):
    result = invoke("search", "--model", str(tmp_path / "nowhere"), "--device", "cpu")
    assert_clear_error(result, "does not exist")


def test_model_folder_without_config(tmp_path):
    (tmp_path / "empty").mkdir()
    result = invoke("search", "--model", str(tmp_path / "empty"), "--device", "cpu")
    assert_clear_error(result, "no config.json")


def test_zero_trials(bundled_model):
    assert_clear_error(invoke("search", "--model", str(bundled_model), "--trials", "0"), "--trials must be at least 1")


def test_malformed_space_file(tmp_path, bundled_model):
    space = tmp_path / "broken.yaml"
    space.write_text("knobs: [dtype: {values: [float32\n")
    result = invoke("search", "--model", str(bundled_model), "--space", str(space))
    assert_clear_error(result, "not valid YAML")


def test_unknown_knob_value(tmp_path, bundled_model):
    space = tmp_path / "bad.yaml"
    space.write_text("knobs:\n  dtype:\n    values: [float32, float8]\n")
    result = invoke("search", "--model", str(bundled_model), "--space", str(space))
    assert_clear_error(result, "knob 'dtype' has no value 'float8'", "allowed:")


def test_unknown_knob(tmp_path, bundled_model):
    space = tmp_path / "bad.yaml"
    space.write_text("knobs:\n  turbo:\n    values: [true]\n")
    assert_clear_error(invoke("search", "--model", str(bundled_model), "--space", str(space)), "unknown knob 'turbo'")


def test_unknown_space_name(bundled_model):
    assert_clear_error(invoke("search", "--model", str(bundled_model), "--space", "nonesuch"), "no search space named")


def test_bad_prompt_file(tmp_path, bundled_model):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"text": "no prompt key"}\n')
    assert_clear_error(invoke("search", "--model", str(bundled_model), "--prompts", str(prompts)), 'non-empty string "prompt"')


def test_export_of_missing_study(tmp_path):
    assert_clear_error(invoke("export", "--study", "nothing", "--root", str(tmp_path)), "no study database")


@pytest.mark.parametrize("command", sorted(main.commands))
def test_every_command_has_help_and_is_in_the_reference(command):
    result = CliRunner().invoke(main, [command, "--help"])
    assert result.exit_code == 0 and len(main.commands[command].help or "") > 20
    assert f"## `autotune {command}`" in (ROOT / "docs" / "cli.md").read_text()


def test_the_cli_reference_is_current():
    """docs/cli.md is what the commands' --help says now: python -m autotune.cli.reference > docs/cli.md."""
    from autotune.cli.reference import reference

    assert (ROOT / "docs" / "cli.md").read_text() == reference(), "regenerate docs/cli.md"


def test_options_are_declared_once_with_their_defaults():
    """Each option of every command comes from autotune.config.settings.OPTIONS: its flag and default are
    the declared ones, and SearchSettings' defaults are the declared ones too."""
    import click

    from autotune.cli.reference import commands
    from autotune.config.settings import OPTIONS, SearchSettings
    from autotune.config.workload import Workload

    for name, command in commands(main):
        for param in command.params:
            if isinstance(param, click.Option) and param.name in OPTIONS:
                declared = OPTIONS[param.name]
                assert set(param.opts) <= {f for flags in declared.flags for f in flags.split("/")}, (name, param.name)
                if declared.default is not None and declared.kind != "flag":  # a flag is off unless given
                    assert param.default == declared.default, (name, param.name)
    settings = SearchSettings(model="m", workload=Workload(prompts=("a",)), study_name="s")
    for field in ("trials", "space", "device", "root", "min_agreement", "seed", "trial_timeout", "repeats",
                  "warmup", "confirm", "max_retry", "early_stop", "cover", "max_initial_failures",
                  "heartbeat_interval", "grace_period"):
        assert getattr(settings, field) == OPTIONS[field].default, field


def test_unknown_random_model():
    assert_clear_error(invoke("search", "--model", "random:gpt-5", "--device", "cpu"),
                       "unknown random-weight model", "random:gemma-2b")


def test_search_help_names_sampling_and_random_models():
    result = CliRunner().invoke(main, ["search", "--help"])
    assert "--sampling" in result.output and "--sampling-seed" in result.output and "random:gemma-2b" in result.output


def test_trials_table_shows_recompiles_and_marks_random_weight_agreement():
    import optuna
    from rich.console import Console

    from autotune.present.tables import trials_table

    study = optuna.create_study(study_name="t", direction="maximize")
    attrs = {"role": "baseline", "config": "baseline", "status": "ok", "decode_tokens_per_s": 50.0,
             "peak_memory_bytes": 2**30, "recompiles": 3, "top1_agreement": 0.25, "prefix_match": 0.1,
             "divergence_margin": 0.0625, "equivalence_meaningful": False}
    study.add_trial(optuna.trial.create_trial(value=50.0, user_attrs=attrs))
    console = Console(width=200, record=True)
    console.print(trials_table(study))
    text = console.export_text()
    assert "recompiles" in text and " 3 " in text and "0.250 (rw)" in text and "random weights" in text
    assert "margin" in text and "0.062" in text  # the gap at the first differing token: a near-tie
