"""The loss and learning-rate curves of a run's log.jsonl as one PNG (matplotlib, Agg): the
step lines' running loss and the epoch means against fractional epochs on the left; the head's
lr (lr_scale 1) and, under layer decay, the lowest group's on the right."""
from __future__ import annotations

import os
from pathlib import Path


def plot_curves(log_path: str | os.PathLike, png_path: str | os.PathLike, *, title: str = "") -> Path:
    """Writes `png_path` (its directory created) and returns it. A log without step or epoch
    lines (a run that trained no network) is an error naming the file."""
    from maebench import runlog
    from maebench.errors import MaebenchError
    lines = runlog.read(log_path)
    steps = [r for r in lines if r.get("kind") == "step" and _num(r.get("epoch"))]
    epochs = [r for r in lines if r.get("kind") == "epoch" and _num(r.get("epoch"))]
    if not steps and not epochs:
        raise MaebenchError(f"{log_path}: no training lines to plot (a run that trains no network logs "
                            "its final metrics only)")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (ax_loss, ax_lr) = plt.subplots(1, 2, figsize=(10, 3.6), constrained_layout=True)
    loss = [(r["epoch"], r["loss"]) for r in steps if _num(r.get("loss"))]
    if loss:
        ax_loss.plot(*zip(*loss), lw=1, label="loss (running mean in the epoch)")
    mean = [(r["epoch"], r["train_loss"]) for r in epochs if _num(r.get("train_loss"))]
    if mean:
        ax_loss.plot(*zip(*mean), "o-", lw=1.5, label="epoch mean")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_loss.legend(fontsize=8)
    head = [(r["epoch"], r["lr"]) for r in steps if _num(r.get("lr"))]
    low = [(r["epoch"], r["lr_low"]) for r in steps if _num(r.get("lr_low"))]
    if head:
        ax_lr.plot(*zip(*head), lw=1.5, label="lr (head, lr_scale 1)")
    if low and any(a[1] != b[1] for a, b in zip(head, low)):
        ax_lr.plot(*zip(*low), lw=1, ls="--", label="lr (lowest layer-decay group)")
    ax_lr.set(xlabel="epoch", ylabel="lr", title="learning rate")
    if head:
        ax_lr.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    out = Path(png_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)
