"""`maebench doctor`: a self-check of the machine a training run is about to use.

On a CUDA GPU (device 0; about 1-3 minutes, most of it torch.compile) it checks and measures:

- versions: torch, CUDA, cuDNN, NCCL, timm; every GPU's name, memory, compute capability;
  native bf16 support; whether torch.distributed has NCCL;
- one training step (forward, backward, fused AdamW step) of the project's MAE ViT-B/16
  (224 px, mask ratio 0.75, norm-pix loss) in fp32 and under the project's autocast
  (maebench/amp.py: bf16) from the same weights, batch and mask (the masking noise is passed
  in): the losses, and the losses after the step, must agree within LOSS_RTOL;
- scaled_dot_product_attention: each backend (flash, memory-efficient, cuDNN, math) forced
  with `sdpa_kernel` on the model's attention shapes in bf16, forward and backward, against an
  fp32 math reference; and which one the model's own step dispatches to by default (the
  profiler's op and kernel names);
- eager against torch.compile of the forward + loss: compile time and steady step time; a
  compile failure is a FAIL row, not a crash;
- images/s over --steps steps after warm-up (synchronised), peak allocated memory, and MFU:
  the step's FLOPs (3 x the forward, counted by FlopCounterMode) x images/s over the device's
  datasheet bf16 dense peak (BF16_PEAK_TFLOPS), or over a measured bf16 matmul peak for a
  device not in that table (the row says which);
- a one-process NCCL process group (127.0.0.1, a free port): an all_reduce of a CUDA tensor,
  checked, then destroyed.

Without a CUDA GPU it runs the CPU path and says so: versions, a tiny MAE (vit-micro, 32 px)
step in fp32 (the CPU never autocasts), the CPU attention backends, a one-process gloo group;
no compile timing (tens of seconds of C++ compilation on a small CPU).

Every result is a row (PASS, FAIL, INFO or SKIP) of one printed table; the environment, the
rows and every measurement go to a JSON file. Any FAIL makes the exit status 1.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Callable

from maebench.doctor_rules import (  # noqa: F401  (re-exported: the tests read the rules here)
    FAIL, INFO, LOSS_RTOL, MASK_RATIO, NO_GPU, PASS, SDPA_ATOL, SKIP, Report, _error, environment_rows, bf16_peak,
    classify_sdpa, environment, losses_agree, mfu,
)

# --------------------------------------------------------------------------------------------
# the checks (torch from here on)
# --------------------------------------------------------------------------------------------
GPU_CONFIG = dict(arch="vit-base", img_size=224, patch_size=16, decoder_embed_dim=512, decoder_depth=8,
                  decoder_num_heads=16, batch_size=128, steps=20, warmup=3)
CPU_CONFIG = dict(arch="vit-micro", img_size=32, patch_size=4, decoder_embed_dim=64, decoder_depth=1,
                  decoder_num_heads=2, batch_size=8, steps=3, warmup=1)


def _build(cfg: dict, device):
    import torch

    from maebench.backbones.mae import create_mae
    torch.manual_seed(0)
    model = create_mae(cfg["arch"], img_size=cfg["img_size"], patch_size=cfg["patch_size"],
                       decoder_embed_dim=cfg["decoder_embed_dim"], decoder_depth=cfg["decoder_depth"],
                       decoder_num_heads=cfg["decoder_num_heads"], target="norm-pixel")
    model.to(device).train()
    g = torch.Generator().manual_seed(0)
    n, side = cfg["batch_size"], cfg["img_size"]
    imgs = torch.randn(n, 3, side, side, generator=g).to(device)
    noise = torch.rand(n, model.patch_embed.num_patches, generator=g).to(device)   # fixes the mask
    return model, imgs, noise


def mae_loss(model, imgs, noise):
    return model(imgs, mask_ratio=MASK_RATIO, noise=noise)[0]


def make_step(model, device, amp: bool, loss_fn: Callable) -> Callable:
    """One training step as the engine runs it: autocast (maebench/amp.py), backward, fused AdamW."""
    import torch

    from maebench import optim
    from maebench.amp import autocast
    opt = torch.optim.AdamW(optim.param_groups(model, weight_decay=0.05), lr=1.5e-4, betas=(0.9, 0.95), fused=True)

    def step(imgs, noise):
        opt.zero_grad(set_to_none=True)
        with autocast(device, amp):
            loss = loss_fn(model, imgs, noise)
        loss.backward()
        opt.step()
        return loss.detach()
    return step


def _sync(device) -> None:
    import torch
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(step: Callable, imgs, noise, device, steps: int, warmup: int) -> dict[str, float]:
    """First step (compilation included), then `steps` steps after `warmup`, synchronised."""
    t0 = time.perf_counter()
    loss = step(imgs, noise)
    _sync(device)
    first = time.perf_counter() - t0
    for _ in range(warmup):
        step(imgs, noise)
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        loss = step(imgs, noise)
    _sync(device)
    dt = (time.perf_counter() - t0) / steps
    return {"first_step_s": first, "step_s": dt, "images_per_s": imgs.shape[0] / dt, "loss": float(loss)}


def precision_check(report: Report, model, imgs, noise, device) -> None:
    """fp32 and autocast steps from the same weights, batch and mask; losses within LOSS_RTOL."""
    import torch

    from maebench.amp import autocast
    initial = {k: v.detach().clone() for k, v in model.state_dict().items()}
    modes = [("fp32", False)] + ([("autocast", True)] if device.type == "cuda" else [])
    out: dict[str, dict] = {}
    for name, amp in modes:
        model.load_state_dict(initial)
        loss = float(make_step(model, device, amp, mae_loss)(imgs, noise))
        with torch.no_grad(), autocast(device, amp):
            after = float(mae_loss(model, imgs, noise))
        out[name] = {"loss": loss, "loss_after_step": after}
    model.load_state_dict(initial)
    fp32 = out["fp32"]
    report.add("MAE step fp32", PASS if math.isfinite(fp32["loss"]) else FAIL, f"loss {fp32['loss']:.5f}",
               f"after the AdamW step {fp32['loss_after_step']:.5f}")
    report.data["mae_step"] = out
    if device.type != "cuda":
        report.add("MAE step fp32 vs bf16", SKIP, "-", "CPU path: never autocast on CPU (maebench/amp.py)")
        return
    dtype = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    out["autocast"]["dtype"] = dtype
    for key, what in (("loss", "loss"), ("loss_after_step", "loss after AdamW step")):
        ok, rel = losses_agree(fp32[key], out["autocast"][key])
        out["autocast"][f"{key}_rel_diff"] = rel
        report.add(f"MAE {what} fp32 vs {dtype}", PASS if ok else FAIL, f"{out['autocast'][key]:.5f}",
                   f"fp32 {fp32[key]:.5f}, relative difference {rel:.1e} (tolerance {LOSS_RTOL:g})")


def attention_shapes(model, batch: int) -> dict[str, tuple[int, int, int, int]]:
    """[B, heads, tokens, head_dim] of the encoder (cls + visible patches) and decoder (cls + all)."""
    from maebench.backbones.masking import num_keep
    L = model.patch_embed.num_patches
    enc, dec = model.blocks[0].attn, model.decoder_blocks[0].attn
    return {"encoder": (batch, enc.num_heads, 1 + num_keep(L, MASK_RATIO), enc.head_dim),
            "decoder": (batch, dec.num_heads, 1 + L, dec.head_dim)}


def try_sdpa_backend(backend_name: str, shapes: dict, device, dtype) -> dict[str, Any]:
    """Forward + backward with only `backend_name` allowed, on every shape; the max difference
    from the fp32 math result, or why the backend was refused (torch's warning, else its error)."""
    import warnings

    import torch
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel
    g = torch.Generator().manual_seed(0)
    worst = 0.0
    for shape in shapes.values():
        q, k, v = (torch.randn(shape, generator=g).to(device, dtype).requires_grad_() for _ in range(3))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                with sdpa_kernel([getattr(SDPBackend, backend_name)]):
                    out = F.scaled_dot_product_attention(q, k, v)
                    out.float().sum().backward()
            except RuntimeError as e:
                # on CUDA torch warns why each kernel was refused ("... not used because:", then the reason)
                why = " ".join(" ".join(str(w.message).split()) for w in caught)
                return {"available": False, "reason": why[:160] if why else _error(e, 100)}
        with torch.no_grad(), sdpa_kernel([SDPBackend.MATH]):
            ref = F.scaled_dot_product_attention(q.float(), k.float(), v.float())
        worst = max(worst, (out.detach().float() - ref).abs().max().item())
    return {"available": True, "max_abs_diff": worst}


def sdpa_check(report: Report, model, device, dtype) -> None:
    shapes = attention_shapes(model, batch=8)
    dname = str(dtype).replace("torch.", "")
    tol = SDPA_ATOL[dname]
    results = {}
    for name in ("FLASH_ATTENTION", "EFFICIENT_ATTENTION", "CUDNN_ATTENTION", "MATH"):
        r = results[name] = try_sdpa_backend(name, shapes, device, dtype)
        if not r["available"]:
            report.add(f"SDPA {name}", FAIL if name == "MATH" else INFO, "not available", r["reason"])
        else:
            ok = r["max_abs_diff"] <= tol
            report.add(f"SDPA {name}", PASS if ok else FAIL, "available",
                       f"{dname} fwd+bwd, max |diff| vs fp32 math {r['max_abs_diff']:.1e} (tolerance {tol:g})")
    report.data["sdpa"] = {"dtype": dname, "shapes": shapes, "backends": results}


def dispatch_check(report: Report, step: Callable, imgs, noise, device) -> None:
    """Which SDPA backend the model's own training step runs: the profiler's op and kernel names."""
    import os

    from torch.profiler import ProfilerActivity, profile
    if device.type == "cpu":   # kineto's "gpuGetDeviceCount failed" line on a machine without one is noise
        os.environ.setdefault("KINETO_LOG_LEVEL", "5")
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        step(imgs, noise)
        _sync(device)
    names = sorted({e.key for e in prof.key_averages()})
    backends = classify_sdpa(names)
    shown = [n for n in names if classify_sdpa([n])]
    report.data["sdpa_dispatch"] = {"backends": backends, "names": shown}
    ops = [n for n in shown if not n.startswith("autograd::") and not n.endswith("Backward0")]
    report.add("SDPA default dispatch", INFO if backends else FAIL, ", ".join(backends) or "none found",
               "the model's step, profiled: " + ", ".join(n[:50] for n in ops[:3]))


def speed_check(report: Report, model, imgs, noise, device, cfg: dict, steps: int) -> None:
    """Eager (and on a GPU compiled) step time, images/s, peak memory and MFU."""
    import torch

    from maebench import compiling, flops
    cuda = device.type == "cuda"
    with torch.no_grad():
        fwd = flops.count_flops(lambda: mae_loss(model, imgs[:1], noise[:1]))
    train_flops = 3 * fwd                       # backward ~ 2x forward
    if cuda:
        measured = flops.matmul_peak(device, dtype=torch.bfloat16, n=8192, seconds=1.0)
        known = bf16_peak(torch.cuda.get_device_name(device))
        peak, against = known if known else (measured, "measured bf16 matmul (device not in the datasheet table)")
        if known:
            against = f"{against} bf16 dense datasheet peak"
        report.add("bf16 matmul peak (measured)", INFO, f"{measured / 1e12:.0f} TFLOP/s", "8192^3, best of 1 s")
    else:
        measured = peak = flops.matmul_peak(device, seconds=0.3)
        against = "measured fp32 matmul"
    speed = {"forward_flops_per_image": fwd, "train_flops_per_image": train_flops, "peak_flop_s": peak,
             "peak_source": against, "measured_matmul_flop_s": measured, "batch_size": imgs.shape[0], "steps": steps}
    report.data["speed"] = speed
    precision = "bf16 autocast" if cuda and torch.cuda.is_bf16_supported() else ("fp16 autocast" if cuda else "fp32")
    variants = [("eager", mae_loss)]
    if cuda:
        compiling.cache_dir()
        variants.append(("compiled", torch.compile(mae_loss)))
    for name, loss_fn in variants:
        if cuda:
            torch.cuda.reset_peak_memory_stats(device)
        step = make_step(model, device, cuda, loss_fn)
        try:
            t = time_steps(step, imgs, noise, device, steps, cfg["warmup"])
        except Exception as e:          # noqa: BLE001 -- a compile failure (or out of memory) is a row
            if cuda:
                torch.cuda.empty_cache()
            speed[name] = {"error": _error(e)}
            report.add(f"step {name}", FAIL, "failed", _error(e))
            continue
        t["peak_memory_mb"] = flops.peak_memory_mb(device)
        if name == "compiled":
            t["compile_s"] = max(0.0, t["first_step_s"] - t["step_s"])
        t["mfu"] = mfu(train_flops, t["images_per_s"], peak)
        speed[name] = t
        extra = (f"; compile ~{t['compile_s']:.1f} s (first step {t['first_step_s']:.1f} s less a steady one)"
                 if name == "compiled" else "")
        report.add(f"step {name}", PASS if math.isfinite(t["loss"]) else FAIL,
                   f"{1e3 * t['step_s']:.1f} ms, {t['images_per_s']:.1f} images/s",
                   f"batch {imgs.shape[0]}, {precision}, mean of {steps} steps after {cfg['warmup']} warm-up{extra}")
        report.add(f"MFU {name}", INFO, f"{100 * t['mfu']:.3g}%",
                   f"{train_flops / 1e9:.2f} GFLOP/image x images/s over {against} {peak / 1e12:.3g} TFLOP/s")
        memory = "torch.cuda.max_memory_allocated" if cuda else "process max RSS"
        report.add(f"peak memory {name}", INFO, f"{t['peak_memory_mb']:.0f} MB", memory)
        if name == "eager":
            _guarded(report, "SDPA default dispatch", dispatch_check, step, imgs, noise, device)
    if not cuda:
        report.add("step compiled", SKIP, "-", "CPU path: torch.compile not timed (tens of seconds of C++ "
                   "compilation here); the GPU path times it")


def _free_port() -> int:
    import socket
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def process_group_check(report: Report, device) -> None:
    """A one-process group (NCCL on a GPU, gloo on CPU): all_reduce a tensor, check it, destroy."""
    from datetime import timedelta

    import torch
    import torch.distributed as dist
    backend = "nccl" if device.type == "cuda" else "gloo"
    check = f"process group ({backend})"
    result: dict[str, Any] = {"backend": backend, "ok": False}
    report.data["process_group"] = result
    if dist.is_initialized():
        report.add(check, SKIP, "-", "a process group already exists (launched by torchrun?)")
        return
    kwargs = {"device_id": device} if device.type == "cuda" else {}
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0, world_size=1,
                            timeout=timedelta(seconds=60), **kwargs)
    try:
        t = torch.arange(1.0, 5.0, device=device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        _sync(device)
        result["ok"] = torch.equal(t.cpu(), torch.arange(1.0, 5.0))     # world size 1: unchanged
        result["all_reduce"] = t.cpu().tolist()
    finally:
        dist.destroy_process_group()
    report.add(check, PASS if result["ok"] else FAIL, "all_reduce ok" if result["ok"] else "wrong sum",
               f"world size 1, 127.0.0.1, {device.type} tensor {result['all_reduce']}")


def _guarded(report: Report, check: str, fn: Callable, *args) -> None:
    """Run one check; an exception it raises becomes a FAIL row and the next check runs."""
    import torch
    try:
        fn(report, *args)
    except KeyboardInterrupt:
        raise
    except Exception as e:              # noqa: BLE001 -- the doctor reports, never crashes mid-way
        report.add(check, FAIL, "error", _error(e))
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _model_checks(report: Report, cfg: dict, device) -> None:
    """Everything that needs the MAE model: precision, attention kernels, speed."""
    import torch
    model, imgs, noise = _build(cfg, device)
    cuda = device.type == "cuda"
    _guarded(report, "MAE step", precision_check, model, imgs, noise, device)
    sdpa_dtype = (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16) if cuda else torch.float32
    _guarded(report, "SDPA backends", sdpa_check, model, device, sdpa_dtype)
    _guarded(report, "speed", speed_check, model, imgs, noise, device, cfg, cfg["steps"])


def run(json_path: str | Path = "doctor.json", *, steps: int | None = None, batch_size: int | None = None,
        log: Callable[[str], None] = print) -> int:
    """All checks; prints the table, writes the JSON file; 1 if any check failed, else 0."""
    import torch

    from maebench.errors import MaebenchError
    path = Path(json_path)
    if not path.parent.is_dir():            # before minutes of checks, not after
        raise MaebenchError(f"cannot write {path}: no directory {path.parent}")
    env = environment()
    cuda = env["cuda_available"]
    device = torch.device("cuda", torch.cuda.current_device()) if cuda else torch.device("cpu")
    cfg = dict(GPU_CONFIG if cuda else CPU_CONFIG)
    cfg["steps"] = steps or cfg["steps"]
    cfg["batch_size"] = batch_size or cfg["batch_size"]
    report = Report(path="cuda" if cuda else "cpu", data={"environment": env, "config": cfg})
    if not cuda:
        log(NO_GPU)
    environment_rows(report, env)
    t0 = time.perf_counter()
    report.data["config"]["model"] = (f"MAE {cfg['arch']}/{cfg['patch_size']} {cfg['img_size']} px, decoder "
                                      f"{cfg['decoder_embed_dim']}x{cfg['decoder_depth']}, mask {MASK_RATIO}, norm-pix")
    _guarded(report, "MAE model", _model_checks, cfg, device)
    _guarded(report, "process group", process_group_check, device)
    report.data["wall_s"] = time.perf_counter() - t0
    log(report.table())
    try:
        path.write_text(json.dumps(report.to_json(), indent=2, default=str) + "\n")
    except OSError as e:
        raise MaebenchError(f"cannot write {path}: {e.strerror or e}") from e
    failed = report.failed
    summary = f"{len(failed)} check(s) FAILED: {', '.join(r.check for r in failed)}" if failed else "all checks passed"
    log(f"{summary} ({report.data['wall_s']:.0f} s); wrote {path}" + ("" if cuda else f"\n{NO_GPU}"))
    return 1 if failed else 0
