"""autotune.environment: what a worker records of its process, and its settings."""

from __future__ import annotations

import pytest

from autotune import environment, fusion, hints, int8_gemv, quantize


def test_every_setting_of_the_process_is_recorded_where_set(monkeypatch):
    """A figure says which process settings it was measured with (the twelfth session's variants left no
    trace of theirs in the workers' results): those set, and only those."""
    variables = {quantize.BARRIER_VARIABLE, quantize.FORM_VARIABLE, int8_gemv.ENABLE_VARIABLE,
                 fusion.FUSE_VARIABLE, hints.COMBO_VARIABLE}
    assert set(environment.SETTINGS) == variables
    for name in variables:
        monkeypatch.delenv(name, raising=False)
    assert environment.describe("cpu")["settings"] == {}
    monkeypatch.setenv(fusion.FUSE_VARIABLE, "1")
    monkeypatch.setenv(quantize.FORM_VARIABLE, "float32")
    assert environment.describe("cpu")["settings"] == {"AUTOTUNE_FUSE": "1", "AUTOTUNE_INT8_FORM": "float32"}


def test_a_setting_out_of_its_choices_says_what_to_use(monkeypatch):
    monkeypatch.setenv(quantize.FORM_VARIABLE, "fast")
    with pytest.raises(ValueError, match="AUTOTUNE_INT8_FORM='fast': use grouped"):
        quantize.product_form()
