"""Mixed precision: autocast on CUDA (bf16 where supported, else fp16 with a loss scaler); never
on a CPU, where these machines lack native bf16 (0.3 GFLOP/s) and fp32 is the fast path."""
from __future__ import annotations

import contextlib

import torch


def autocast(device: torch.device, enabled: bool):
    if device.type != "cuda" or not enabled:
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype)


def grad_scaler(device: torch.device, enabled: bool) -> torch.amp.GradScaler:
    """A scaler that scales only under fp16 autocast (bf16 and fp32 need none)."""
    fp16 = enabled and device.type == "cuda" and not torch.cuda.is_bf16_supported()
    return torch.amp.GradScaler("cuda", enabled=fp16)
