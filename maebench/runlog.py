"""A run's `log.jsonl` (and, when asked, its TensorBoard event files): what the training loop
logged, one JSON object a line, written by rank 0 into the run directory.

    {"kind": "step", "step": 40, "epoch": 2.5, "loss": ..., <the other logged values>, "lr": ...,
     "lr_low": ..., "grad_norm": ..., "images_per_s": ..., "mfu": ..., "peak_mem_mb": ..., "time": ...}
        every `log_every` optimizer steps (and an epoch's last): the running means of the
        epoch so far; `step` counts optimizer steps from the start of training, `epoch` is
        fractional (steps / steps per epoch). `lr` is the schedule's lr, the lr of every group
        with lr_scale 1 (the head), `lr_low` that of the group with the smallest lr_scale (the
        lowest layer under layer decay). `grad_norm` (the last step's gradient norm before
        clipping) only when clip_grad is set; `mfu` only when the task counts FLOPs.
    {"kind": "epoch", "epoch": 3, "step": 48, "train_loss": ..., "train_<value>": ..., "train_lr": ...,
     "test_<metric>": ..., "n_parameters": ..., "time": ...}
        after each epoch: the fields of the official MAE `log.txt` (train_* are the epoch's
        means over all processes, train_lr the mean lr of the head over the steps this process
        ran in the epoch; test_* an evaluation within training, when one ran), except that
        `epoch` counts epochs done (1 after the first) as the checkpoint's history does.
    {"kind": "final", <the run's metrics>, "time": ...}
        when the run is done: the metrics of its row (numbers and strings); the one line of a
        protocol that trains no network.

A resumed run continues the same file: when training (re)starts at optimizer step S, the lines
after S -- what a killed run logged after its last checkpoint, and any final line -- are
dropped (the file is rewritten atomically) before anything is appended, so every epoch has one
line. TensorBoard's writer is opened with purge_step S + 1, which tells TensorBoard's reader to
drop the same events. Nothing here syncs a GPU: the progress line calls in at its log steps,
after its own synchronize.
"""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

LOG_FILE = "log.jsonl"
TENSORBOARD_DIR = "tensorboard"
TENSORBOARD_ENV = "MAEBENCH_TENSORBOARD"


def tensorboard_asked(flag: bool) -> bool:
    """--tensorboard, or MAEBENCH_TENSORBOARD=1 (true, yes) in the environment."""
    return bool(flag) or os.environ.get(TENSORBOARD_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def check_tensorboard(asked: bool) -> None:
    """Before any run starts: asked for TensorBoard without the package is a usage error (exit 2)."""
    if not asked:
        return
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError:
        from maebench.errors import UsageError
        raise UsageError(f"TensorBoard logging was asked for (--tensorboard or {TENSORBOARD_ENV}) but the "
                         "tensorboard package is not installed: pip install tensorboard") from None


def _clean(v: Any) -> Any:
    """A JSON-safe scalar: numbers as float/int (non-finite ones as null), strings as they are."""
    if isinstance(v, bool) or isinstance(v, str):
        return v
    if isinstance(v, int):
        return v
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def read(path: str | os.PathLike) -> list[dict]:
    """Every line of a log.jsonl; a line that is not a JSON object is an error naming the file and line."""
    from maebench.errors import MaebenchError
    out = []
    for i, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise MaebenchError(f"{path}: line {i} is not JSON ({e.msg})") from None
        if not isinstance(obj, dict):
            raise MaebenchError(f"{path}: line {i} is not a JSON object")
        out.append(obj)
    return out


class RunLog:
    """The log of one run directory (rank 0). `bind` the optimizer groups before training;
    the progress line then calls `restart_at`, `interval` and `epoch`; the runner `final`."""

    def __init__(self, out_dir: str | os.PathLike, *, tensorboard: bool = False):
        self.out_dir = Path(out_dir)
        self.path = self.out_dir / LOG_FILE
        self.tensorboard = tensorboard
        self.writer = None
        self.low_scale, self.n_parameters = 1.0, None
        self.step: int | None = None                  # the last optimizer step logged by this process

    def bind(self, groups: list[dict]) -> None:
        """The lr scales and trainable parameter count of the optimizer's groups."""
        scales = [float(g.get("lr_scale", 1.0)) for g in groups if g.get("params")]
        self.low_scale = min(scales, default=1.0)
        self.n_parameters = sum(p.numel() for g in groups for p in g["params"])

    # ---- writing -------------------------------------------------------------------------------
    def _append(self, record: dict) -> None:
        line = json.dumps({k: _clean(v) for k, v in record.items()}, allow_nan=False)
        with open(self.path, "a") as f:
            f.write(line + "\n")

    def _rewrite(self, keep) -> None:
        """Keep the lines for which keep(line) is true; atomically (a temporary file, then rename)."""
        if not self.path.exists():
            return
        lines = self.path.read_text().splitlines()
        kept = [ln for ln in lines if ln.strip() and keep(_parse(ln))]
        if len(kept) == len([ln for ln in lines if ln.strip()]):
            return
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text("".join(ln + "\n" for ln in kept))
        os.replace(tmp, self.path)

    def _scalars(self, prefix: str, record: dict, step: int) -> None:
        if self.writer is None:
            return
        for k, v in record.items():
            if k not in ("kind", "step", "time") and isinstance(_clean(v), (int, float)) \
                    and not isinstance(v, bool) and _clean(v) is not None:
                self.writer.add_scalar(f"{prefix}/{k}", float(v), step)
        self.writer.flush()

    def restart_at(self, step: int) -> None:
        """Training (re)starts after optimizer step `step` (0: from scratch): drop what was logged after it."""
        def keep(line: dict | None) -> bool:
            return line is not None and line.get("kind") in ("step", "epoch") and int(line.get("step", 0)) <= step
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._rewrite(keep)
        self.step = step
        self._open_writer(purge_step=step + 1)

    def _open_writer(self, purge_step: int | None) -> None:
        if self.tensorboard and self.writer is None:
            from torch.utils.tensorboard import SummaryWriter
            self.writer = SummaryWriter(str(self.out_dir / TENSORBOARD_DIR), purge_step=purge_step)

    def interval(self, *, step: int, epoch: float, means: dict[str, float], lr: float,
                 grad_norm: float | None, images_per_s: float, mfu: float | None, peak_mem_mb: float) -> None:
        record = {"kind": "step", "step": step, "epoch": round(epoch, 4), **means, "lr": lr,
                  "lr_low": lr * self.low_scale}
        if grad_norm is not None:
            record["grad_norm"] = grad_norm
        record.update(images_per_s=images_per_s, peak_mem_mb=peak_mem_mb)
        if mfu is not None:
            record["mfu"] = mfu
        record["time"] = time.time()
        self.step = step
        self._append(record)
        self._scalars("train", {k: v for k, v in record.items() if k != "epoch"}, step)

    def epoch(self, history_entry: dict, *, train_lr: float | None, step: int) -> None:
        """`history_entry`: the loop's history line of the epoch ({"epoch", means..., "eval/<k>"})."""
        record: dict[str, Any] = {"kind": "epoch", "epoch": history_entry["epoch"], "step": step}
        for k, v in history_entry.items():
            if k != "epoch":
                record[f"test_{k[5:]}" if k.startswith("eval/") else f"train_{k}"] = v
        if train_lr is not None:
            record["train_lr"] = train_lr
        record["n_parameters"] = self.n_parameters
        record["time"] = time.time()
        self.step = step
        self._append(record)
        self._scalars("epoch", {k: v for k, v in record.items() if k != "epoch"}, step)

    def final(self, metrics: dict[str, Any]) -> None:
        """The run's metrics, replacing any earlier final line (a resumed run that only evaluates);
        in TensorBoard at the last optimizer step logged (0 for a run that trains no network)."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._rewrite(lambda line: line is not None and line.get("kind") != "final")
        record = {"kind": "final", **{k: v for k, v in metrics.items() if isinstance(v, (int, float, str))},
                  "time": time.time()}
        self._append(record)
        step = self.step if self.step is not None else (last_step(self.path) or 0)
        self._open_writer(purge_step=None)
        self._scalars("final", record, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def _parse(line: str) -> dict | None:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError:
        return None                      # a torn last line of a killed run: dropped on rewrite
    return obj if isinstance(obj, dict) else None


def last_step(path: str | os.PathLike) -> int | None:
    """The largest `step` of a log.jsonl's step and epoch lines (None without one)."""
    p = Path(path)
    if not p.exists():
        return None
    steps = [int(r["step"]) for r in map(_parse, p.read_text().splitlines())
             if r is not None and r.get("kind") in ("step", "epoch") and "step" in r]
    return max(steps, default=None)
