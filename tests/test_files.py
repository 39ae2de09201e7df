"""autotune.files: the one atomic write."""

from __future__ import annotations

import os
import stat

from autotune.files import write_atomic


def test_a_written_file_has_the_permissions_of_any_file_the_user_creates(tmp_path):
    old = os.umask(0o022)
    try:
        preset = write_atomic(tmp_path / "demo.preset.json", "{}\n")
        assert stat.S_IMODE(preset.stat().st_mode) == 0o644  # readable by the other users of a shared folder
        os.umask(0o077)
        private = write_atomic(tmp_path / "private.json", b"{}")
        assert stat.S_IMODE(private.stat().st_mode) == 0o600
        assert not list(tmp_path.glob(".*.tmp"))
    finally:
        os.umask(old)
