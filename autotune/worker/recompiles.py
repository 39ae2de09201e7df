"""How often torch.compile recompiled in this process: the `recompiles` figure of a Measurement."""

from __future__ import annotations


class CompileCounter:
    """Counts torch.compile's compilations in this process, from TorchDynamo's compile-start callbacks.

    Each callback carries the compile id `"<frame>/<n>"`: the n-th compilation of one frame (code object).
    n > 0 is a recompilation: a guard failed (a new shape, a new dtype, another code path) and the frame
    was traced again. Ids are deduplicated, since a restarted analysis reports the same id again. Dynamo's
    own counters say how many graphs were built (`counters["stats"]["unique_graphs"]`, which graph
    breaks also raise) but not how many were recompilations, hence this counter. Where the callback API is
    missing, `recompiles` is None (unknown), never a made-up 0.
    """

    def __init__(self):
        self.ids: set[str] = set()
        self.active = False

    def install(self) -> "CompileCounter":
        try:
            import torch._dynamo

            torch._dynamo.callback_handler.register_start_callback(self._on_start)
            self.active = True
        except Exception:  # pragma: no cover - a torch without the callback API
            self.active = False
        return self

    def _on_start(self, *args) -> None:
        info = args[0] if args else None
        trigger = getattr(getattr(info, "callback_trigger", None), "name", "DYNAMO")
        compile_id = getattr(info, "compile_id", None)
        if not isinstance(compile_id, str):  # a callback API without compile ids: unknown, not 0
            self.active = False
        elif trigger == "DYNAMO":
            self.ids.add(compile_id)

    @property
    def compiles(self) -> int | None:
        return len(self.ids) if self.active else None

    @property
    def recompiles(self) -> int | None:
        if not self.active:
            return None
        count = 0
        for compile_id in self.ids:
            parts = compile_id.lstrip("!").split("/")
            try:
                count += int(parts[-1].split("_")[0]) > 0
            except ValueError:
                continue
        return count


# One per process, installed on import (before any model is built or compiled).
COMPILE_COUNTER = CompileCounter().install()
