"""autotune.logs: the import noise of torchao is dropped, everything else its loggers say passes."""

from __future__ import annotations

import logging

import autotune  # noqa: F401  (importing autotune installs the filters)


def test_torchaos_kernel_load_failures_are_dropped_and_its_other_warnings_pass(caplog):
    with caplog.at_level(logging.WARNING):
        logging.getLogger("torchao").warning("Failed to load /x/_C_mxfp8.so: Could not load this library")
        logging.getLogger("torch.utils._pytree").warning(
            "<enum 'KernelPreference'> is an Enum subclass and is now natively supported by torch.compile")
        logging.getLogger("torchao").warning("Skipping import of cpp extensions due to incompatible torch version")
    assert [record.getMessage() for record in caplog.records] == [
        "Skipping import of cpp extensions due to incompatible torch version"]
