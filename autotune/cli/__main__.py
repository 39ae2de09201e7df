"""`python -m autotune.cli`: the `autotune` command (what `search --gpus` starts its workers with)."""

from autotune.cli import main

main()
