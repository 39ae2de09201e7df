"""autotune: find the fastest transformers inference configuration whose outputs still match the
unoptimized model, by measurement, and export it as a preset any code can load."""

from autotune.logs import drop_library_noise

__version__ = "0.1.0"
drop_library_noise()
# The name on PyPI: `autotune` there is an unrelated 2018 package with its own `autotune` module and command.
# The import and the command stay `autotune`.
DISTRIBUTION = "transformers-autotune"


def load_preset(path, device=None):
    """Load a preset's model and GenerationConfig with its runtime hints applied.

    Args:
        path: the preset JSON file (`autotune search` or `autotune export` writes it), or a model folder
            exported with its preset (`autotune export --folder`).
        device: "cpu" or "cuda" (default: CUDA when available).

    Returns:
        (model, generation_config), built as the preset's trial was: see `autotune.runtime.preset_loader`.
    """
    from autotune.runtime.preset_loader import load_preset as _load_preset

    return _load_preset(path, device=device)


def __getattr__(name):
    """`autotune.search` and `autotune.verify` (autotune.api), imported when first asked for, so that `import
    autotune` stays light; their signatures list the commands' options with their declared defaults."""
    if name in ("search", "verify", "SearchResult"):
        from autotune import api

        return getattr(api, name)
    raise AttributeError(f"module 'autotune' has no attribute {name!r}")


__all__ = ["DISTRIBUTION", "SearchResult", "__version__", "load_preset", "search", "verify"]
