"""Where one train step spends its time: torch.profiler over one step, ops ranked by self CPU time.

Self time (time in the op minus its children) adds up to the step, so the table's shares say
what to make faster. Ops are also grouped: dense math (matmuls, convolutions, attention
kernels), optimizer, and everything else (elementwise, normalisation, copies, indexing,
detection-specific ops such as RoIAlign and NMS).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

DENSE = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::matmul", "aten::linear",
         "aten::convolution", "aten::_convolution", "aten::mkldnn_convolution", "aten::convolution_backward",
         "aten::_scaled_dot_product_flash_attention_for_cpu",
         "aten::_scaled_dot_product_flash_attention_for_cpu_backward", "aten::slow_conv_transpose2d",
         "aten::slow_conv_transpose2d_backward", "aten::mkldnn_convolution_backward")
OPTIMIZER = ("aten::_fused_adamw_", "Optimizer.step")


@dataclass
class OpRow:
    name: str
    self_ms: float
    calls: int
    share: float          # of the step's summed self time


def profile(compute: Callable[[], object], optimizer_step: Callable[[], object] | None = None,
            top: int = 10) -> tuple[list[OpRow], dict[str, float], float]:
    """(top ops, {group: share}, total self ms) of one compute (+ optimizer) call."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        compute()
        if optimizer_step is not None:
            optimizer_step()
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    rows = sorted(events, key=lambda e: -e.self_cpu_time_total)
    out = [OpRow(e.key, e.self_cpu_time_total / 1000, e.count, e.self_cpu_time_total / total) for e in rows[:top]]
    groups = {"dense math (matmul, conv, attention)": 0.0, "optimizer": 0.0, "other": 0.0}
    for e in events:
        g = ("dense math (matmul, conv, attention)" if e.key in DENSE or "convolution" in e.key
             else "optimizer" if e.key in OPTIMIZER or "adam" in e.key.lower() else "other")
        groups[g] += e.self_cpu_time_total / total
    return out, groups, total / 1000


def mae_breakdown(model, imgs, mask_ratio: float, optimizer, repeats: int = 2) -> dict[str, float]:
    """Seconds of each part of an MAE train step (median of `repeats`): encoder and decoder
    forward, loss, decoder and encoder backward, optimizer. The backward is split where the
    gradient reaches the encoder's output (a hook on the latent tokens), so "decoder backward"
    includes the loss's backward."""
    import statistics
    import time

    parts: dict[str, list[float]] = {k: [] for k in ("encoder forward", "decoder forward", "loss",
                                                     "decoder backward", "encoder backward", "optimizer")}
    for _ in range(repeats):
        t = [time.perf_counter()]
        latent, mask, ids_restore = model.forward_encoder(imgs, mask_ratio)
        t.append(time.perf_counter())
        pred = model.forward_decoder(latent, ids_restore)
        t.append(time.perf_counter())
        loss = model.forward_loss(imgs, pred, mask)
        t.append(time.perf_counter())
        reached = []
        latent.register_hook(lambda g: reached.append(time.perf_counter()))
        loss.backward()
        t.append(reached[0])
        t.append(time.perf_counter())
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        t.append(time.perf_counter())
        for k, a, b in zip(parts, t, t[1:]):
            parts[k].append(b - a)
    return {k: statistics.median(v) for k, v in parts.items()}
