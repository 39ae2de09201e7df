"""A study records its equivalence gate; resuming it under another gate is refused, and a study made before the
gate existed (no `gate` recorded) resumes under the rule it was judged by, `baseline`."""

from __future__ import annotations

import pytest

from autotune.config.settings import SearchSettings
from autotune.config.workload import Workload
from autotune.errors import StudyMismatchError
from autotune.tuner.loop import Tuner
from autotune.tuner.study import STUDY_ATTR


@pytest.fixture
def settings(tmp_path, bundled_model):
    space = tmp_path / "space.yaml"
    space.write_text("knobs:\n  dtype: {values: [float32]}\n")
    return SearchSettings(model=str(bundled_model), workload=Workload(prompts=("def f(x):\n",), max_new_tokens=4),
                          study_name="g", trials=1, space=str(space), device="cpu", root=str(tmp_path / "studies"),
                          repeats=1, warmup=0)


def with_gate(settings: SearchSettings, gate: str) -> SearchSettings:
    return SearchSettings(**{**settings.__dict__, "gate": gate})


def test_a_study_records_its_gate_and_refuses_another(settings):
    tuner = Tuner(settings)
    tuner.prepare()
    assert tuner.study.user_attrs[STUDY_ATTR]["gate"] == "noise-floor"
    with pytest.raises(StudyMismatchError, match=r"another --gate \('noise-floor', now 'baseline'\)"):
        Tuner(with_gate(settings, "baseline")).prepare()


def test_a_study_of_an_older_version_resumes_under_the_baseline_rule(settings):
    tuner = Tuner(with_gate(settings, "baseline"))
    tuner.prepare()
    attrs = dict(tuner.study.user_attrs[STUDY_ATTR])
    del attrs["gate"]  # as an older version recorded it
    tuner.study.set_user_attr(STUDY_ATTR, attrs)
    with pytest.raises(StudyMismatchError, match=r"another --gate \('baseline', now 'noise-floor'\)"):
        Tuner(settings).prepare()
    Tuner(with_gate(settings, "baseline")).prepare()


def test_settings_recorded_before_the_gate_existed_read_as_the_baseline_rule(settings):
    recorded = settings.to_dict()
    assert SearchSettings.from_dict(recorded).gate == "noise-floor"
    del recorded["gate"]  # as an older version recorded them: a worker joining that study judges as it did
    assert SearchSettings.from_dict(recorded).gate == "baseline"
