"""autotune.runtime.environment: what a process sees of its machine (what every worker records)."""

from __future__ import annotations

from autotune.runtime import environment


def test_a_cpu_description_names_the_device_the_versions_and_the_capabilities():
    env = environment.describe("cpu")
    assert env["device"] == "cpu" and env["torch"] and env["transformers"] and env["has_bf16"] is True
    assert env["total_memory_bytes"] > 0 and "has_bitsandbytes" not in env  # a worker does not import it


def test_with_imports_it_says_whether_bitsandbytes_and_triton_work_here():
    import importlib.util

    env = environment.describe("cpu", with_imports=True)
    assert env["has_bitsandbytes"] == (importlib.util.find_spec("bitsandbytes") is not None)
    assert isinstance(env["bnb_compileable"], bool) and isinstance(env["has_triton"], bool)


def test_with_imports_it_says_whether_torchao_imports_and_a_cpu_has_no_float8():
    import importlib.util

    env = environment.describe("cpu", with_imports=True)
    assert env["has_torchao"] == (importlib.util.find_spec("torchao") is not None)
    assert (env["torchao"] is not None) == env["has_torchao"] and env["has_float8"] is False
