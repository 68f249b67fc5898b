"""`compile: true|false`: the training step (and, where a task asks, its evaluation forward)
through torch.compile, on CPU and CUDA.

- What is compiled is the task's `loss_fn(model, batch, device)`: the forward and the loss as
  one graph, whose backward inductor also generates. The optimizer step stays eager (the
  fused AdamW kernel is already one op per parameter group).
- Compiled artefacts are cached across runs: inductor's and the FX graph cache live under
  $MAEBENCH_HOME/cache/inductor (TORCHINDUCTOR_CACHE_DIR; a value already set wins), so a
  second run of the same model and shapes skips most of the compile time.
- When compilation fails (no C++ compiler, an op dynamo or inductor cannot handle, ...) the
  step runs eagerly from then on, after one line saying why. An error that eager mode raises
  as well is the step's own and propagates unchanged; out-of-memory and Ctrl-C always do.
- The protocol defaults (`compile:` in maebench/protocols/*.yaml) were chosen by measurement
  (benchmarks/compile_stages.py): on where a demo-sized run is at least 1.1x faster with the
  compile time included, off elsewhere.
"""
from __future__ import annotations

import os
from typing import Callable

import torch

_CHECKED: dict[str, str | None] = {}


def cache_dir() -> str:
    """Inductor's cache directory, set in the environment before the first compile."""
    if "TORCHINDUCTOR_CACHE_DIR" not in os.environ:
        from maebench.home import home_dir
        path = home_dir() / "cache" / "inductor"
        path.mkdir(parents=True, exist_ok=True)
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(path)
    return os.environ["TORCHINDUCTOR_CACHE_DIR"]


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"[:200]


class CompiledStep:
    """A callable with the signature of the function it wraps: the compiled function until
    compilation fails once, the plain function after that."""

    def __init__(self, fn: Callable, *, what: str, log: Callable[[str], None] = print, **compile_kwargs):
        cache_dir()
        self.fn, self.what, self.log = fn, what, log
        self.compiled: Callable | None = torch.compile(fn, **compile_kwargs)
        self.failure: str | None = None

    def __call__(self, *args, **kwargs):
        if self.compiled is None:
            return self.fn(*args, **kwargs)
        try:
            return self.compiled(*args, **kwargs)
        except (torch.OutOfMemoryError, KeyboardInterrupt):
            raise
        except Exception as e:      # noqa: BLE001 -- decided below: compile's failure or the step's own
            out = self.fn(*args, **kwargs)          # raises the step's own error when it has one
            self.compiled, self.failure = None, _first_line(e)
            self.log(f"compile: {self.what} failed to compile ({self.failure}); continuing eagerly")
            return out


def maybe_compile(fn: Callable, enabled: bool | None, *, what: str = "the training step",
                  log: Callable[[str], None] = print, **compile_kwargs) -> Callable:
    """`fn` itself when `enabled` is false (or None: the key is absent), else a CompiledStep."""
    if not enabled:
        return fn
    return CompiledStep(fn, what=what, log=log, **compile_kwargs)
