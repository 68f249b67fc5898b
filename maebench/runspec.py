"""What a command asks to run, as plain values: the program (a transfer task or a pretraining
method, one row of tasks/table.py `TASKS` or backbones/pretraining `METHODS`) and a `RunSpec`.

Both are small frozen dataclasses of strings, numbers and tuples, so a spec pickles: a search
runs one spec many times with other `--set` values, a launcher ships one to another process or
machine, and `maebench.runner.execute(spec)` runs it there. The command line builds the spec
from its flags and stops; nothing below the runner reads an argparse namespace.

Torch-free, so that `maebench --help` answers at once.
"""
from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass, field
from typing import Any, Callable

from maebench import config


@dataclass(frozen=True)
class Program:
    """One row of the task table or the method table: the same shape for both."""
    name: str                              # `--task NAME` / `--method NAME`
    kind: str                              # "task" or "method"
    protocol: str                          # maebench/protocols/<protocol>.yaml
    entry: str                             # "module:function": spec -> iterable of runner.Recipe
    options: tuple[str, ...] = ()          # its own command-line options (argparse dests)
    summary: str = ""                      # one line for --help
    label: str = ""                        # short display name (leaderboard headers)
    metrics: tuple[tuple[str, str], ...] = ()   # (stored metric name, display label), display order
    headline: tuple[str, ...] = ()         # the metrics a summary column (and --seeds) shows
    joint_search: bool = False             # --search scores the whole space in one pass inside its recipe
    search_points: str = ""                # "module:function": spec -> [(spec, searched inside its recipe)],
                                           # a program whose one command is several searches (partial's K)

    @property
    def row_task(self) -> str:
        """The results row's task: the task's name, or pretrain-<method>."""
        return self.name if self.kind == "task" else f"pretrain-{self.name}"

    def recipes(self) -> Callable:
        return _function(self.entry)

    def points(self, spec: "RunSpec") -> list[tuple["RunSpec", bool]]:
        """The searches of one command: (spec, True when its own recipe searches jointly)."""
        return _function(self.search_points)(spec) if self.search_points else [(spec, self.joint_search)]


def _function(entry: str) -> Callable:
    module, function = entry.split(":")
    return getattr(importlib.import_module(module), function)


@dataclass(frozen=True)
class RunSpec:
    """Everything one command line says about a run, with the defaults of `maebench run`."""
    program: Program
    backbone: str | None = None            # run: the backbone; pretrain: the name to register (--name)
    data: str | None = None
    seed: int = 0
    out: str | None = None
    results: str | None = None
    resume: bool = False
    force: bool = False
    device: str | None = None
    deterministic: bool = False
    tensorboard: bool = False              # --tensorboard: event files in the run directory (maebench/runlog.py)
    config_file: str | None = None
    sets: tuple[str, ...] = ()
    epochs: int | None = None
    batch_size: int | None = None
    options: dict[str, Any] = field(default_factory=dict)   # the program's own options; None = not given
    tags: tuple[str, ...] = ()             # --tag KEY=VALUE: stored with the row as tag_KEY (a study, its variant)
    # --search (maebench/search.py): choose the protocol's `search:` space on held-out training data
    search: bool = False
    search_space: tuple[str, ...] = ()     # --search-space KEY=V1,V2,... (replaces that key's values)
    search_budget: float | None = None     # --search-budget: full-run equivalents (None: the protocol's)
    search_reuse: bool = False             # --search-reuse: the best trial's model scored, not the choice retrained
    search_worker: tuple[int, int] | None = None   # --search-worker I/W: trials I, I+W, ... of each search, no final run
    # a search trial: train on the training data less this held-out fraction (drawn by the seed,
    # maebench/data/heldout.py) and evaluate on that fraction instead of the reported split
    trial_holdout: float | None = None
    trial_reported: bool = False           # with trial_holdout: scored on the reported split (a reused trial)
    # the final run of a search: {"config": stored as config key `search`, "record": stored as
    # metrics key `search` (every trial, the choice, the cost)}
    searched: dict[str, Any] | None = None

    def option(self, name: str, default: Any = None) -> Any:
        value = self.options.get(name)
        return default if value is None else value

    def tag_dict(self) -> dict[str, str]:
        return dict(t.split("=", 1) for t in self.tags)

    def replace(self, **changes: Any) -> "RunSpec":
        return dataclasses.replace(self, **changes)

    def training_flags(self) -> dict[str, Any]:
        """--epochs / --batch-size / --deterministic as config keys (None = not given)."""
        return config.training_flags(epochs=self.epochs, batch_size=self.batch_size,
                                     deterministic=self.deterministic)

    def load_config(self, *, arch: str | None, flags: dict[str, Any] | None = None,
                    protocol: str | None = None) -> dict:
        """The effective config: protocol defaults <- by_arch <- --config <- flags <- --set; a
        search trial's config also holds `trial_holdout`, a searched run's `search` (so neither
        shares a run id, or a leaderboard cell, with a plain run)."""
        cfg = config.load(protocol or self.program.protocol, config_file=self.config_file,
                          sets=list(self.sets), flags={**self.training_flags(), **(flags or {})}, arch=arch)
        if self.trial_holdout is not None:
            cfg["trial_holdout"] = float(self.trial_holdout)      # trained on the training data less this part
        if self.searched is not None:
            cfg["search"] = self.searched["config"]
        return cfg
