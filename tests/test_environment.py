"""autotune.environment: what a worker records of its process, and its settings."""

from __future__ import annotations

import pytest

from autotune import environment, hints, quantize
from autotune.errors import InputError


def test_every_setting_of_the_process_is_recorded_where_set(monkeypatch):
    """A figure says which process settings it was measured with (the twelfth session's variants left no
    trace of theirs in the workers' results): those set, and only those."""
    variables = {quantize.BARRIER_VARIABLE, quantize.FORM_VARIABLE, hints.COMBO_VARIABLE}
    assert set(environment.SETTINGS) == variables
    for name in variables:
        monkeypatch.delenv(name, raising=False)
    assert environment.describe("cpu")["settings"] == {}
    monkeypatch.setenv(hints.COMBO_VARIABLE, "1")
    monkeypatch.setenv(quantize.FORM_VARIABLE, "float32")
    assert environment.describe("cpu")["settings"] == {"AUTOTUNE_COMBO_KERNELS": "1", "AUTOTUNE_INT8_FORM": "float32"}


def test_a_setting_out_of_its_choices_says_what_to_use(monkeypatch):
    monkeypatch.setenv(quantize.FORM_VARIABLE, "fast")
    with pytest.raises(ValueError, match="AUTOTUNE_INT8_FORM='fast': use grouped"):
        quantize.product_form()


@pytest.mark.parametrize("variable, knob", [("AUTOTUNE_INT8_KERNEL", "int8_kernel"),
                                           ("AUTOTUNE_FUSE", "fuse_projections")])
def test_a_setting_that_became_a_knob_is_refused_with_the_knobs_name(monkeypatch, variable, knob):
    """The thirteenth session's commands set AUTOTUNE_INT8_KERNEL / AUTOTUNE_FUSE; they are knobs now, and a
    process that still sets one is refused before it measures anything without it."""
    monkeypatch.setenv(variable, "1")
    with pytest.raises(InputError, match=f"{variable} is the {knob} knob"):
        environment.probe("cpu")
    with pytest.raises(InputError, match=knob):
        environment.describe("cpu")
