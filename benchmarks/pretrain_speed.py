"""The MAE paper's Table 2 (wall-clock pretraining cost) measured on this machine.

Three ViT-L MAE training steps at mask ratio 0.75, in one run on the same machine:
    ViT-L with mask tokens in the encoder, 8-block decoder    (paper: 42.4 h, 1.0x)
    ViT-L on the visible patches only,     8-block decoder    (paper: 15.4 h, 2.8x)
    ViT-L on the visible patches only,     1-block decoder    (paper: 11.6 h, 3.7x)
For each: images/s of a whole training step (forward, backward, fused AdamW), FLOPs per step
(torch.utils.flop_counter, forward + backward), peak memory, speedups against the first row,
achieved FLOP/s and its share of the fp32 matmul peak measured in the same run.

The paper's hours are 800 epochs on 128 TPU-v3 cores at 224 px; here small images and batches
keep a CPU run to a few minutes. At 112 px a 16 px patch grid is 7 x 7 = 49 patches (12 visible),
against 196 (49 visible) at 224 px, so the encoder's share of the work, and with it the
speedup, is smaller than the paper's; --img-size 224 gives the paper's token counts.

    python benchmarks/pretrain_speed.py [--img-size 112] [--batch-size 4] [--steps 3]
    from benchmarks.pretrain_speed import measure, format_table   # rows as dicts
"""
from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path

# runnable as a script from anywhere: the repository root on the path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# (mask tokens in the encoder, decoder depth, the paper's speedup for ViT-L)
CONFIGS = [(True, 8, 1.0), (False, 8, 2.8), (False, 1, 3.7)]
SHORT = {"vit-micro": "ViT-micro", "vit-tiny": "ViT-Ti", "vit-small": "ViT-S", "vit-base": "ViT-B",
         "vit-large": "ViT-L", "vit-huge": "ViT-H"}


class _PeakMemory:
    """Peak memory of the code inside: the CUDA allocator's peak, or on CPU the process's peak
    resident set (VmHWM), which Linux resets when 5 is written to /proc/self/clear_refs."""

    def __init__(self, device):
        self.device = device

    def __enter__(self):
        import torch
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            try:
                Path("/proc/self/clear_refs").write_text("5")
                self.exact = True
            except OSError:           # not Linux, or not allowed: the peak since process start
                self.exact = False
        return self

    def __exit__(self, *exc):
        import torch
        if self.device.type == "cuda":
            self.mb = torch.cuda.max_memory_allocated(self.device) / 2 ** 20
        else:
            try:
                line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith("VmHWM"))
                self.mb = int(line.split()[1]) / 1024
            except (OSError, StopIteration):
                from maebench.flops import peak_memory_mb
                self.mb = peak_memory_mb(self.device)


def measure(*, arch: str = "vit-large", img_size: int = 112, patch_size: int = 16, batch_size: int = 4,
            steps: int = 3, warmup: int = 1, mask_ratio: float = 0.75, decoder_embed_dim: int = 512,
            decoder_num_heads: int = 16, device: str = "cpu", threads: int | None = None,
            alternate: bool = False, log=print) -> list[dict]:
    """One row per configuration of Table 2 (dicts; see format_table for the columns).
    alternate: the three models side by side, their forward + backward steps in rotating order
    (A B C, B C A, ...) so that a change of the machine's load hits all three alike; each AdamW
    step is timed afterwards, one optimizer at a time (its state is 8 bytes per parameter)."""
    import torch
    if alternate:
        return _measure_alternating(arch=arch, img_size=img_size, patch_size=patch_size, batch_size=batch_size,
                                    steps=steps, warmup=warmup, mask_ratio=mask_ratio,
                                    decoder_embed_dim=decoder_embed_dim, decoder_num_heads=decoder_num_heads,
                                    device=device, threads=threads, log=log)

    from maebench.backbones.mae import create_mae
    from maebench.flops import count_flops, matmul_peak
    from maebench.optim import param_groups

    if threads:
        torch.set_num_threads(threads)
    dev = torch.device(device)
    peaks = [matmul_peak(dev, seconds=1.0)]
    rows = []
    for mask_tokens, depth, paper in CONFIGS:
        label = SHORT.get(arch, arch) + (" with mask tokens" if mask_tokens else "")
        torch.manual_seed(0)
        model = create_mae(arch, img_size=img_size, patch_size=patch_size, decoder_embed_dim=decoder_embed_dim,
                           decoder_depth=depth, decoder_num_heads=decoder_num_heads, target="norm-pixel",
                           mask_tokens_in_encoder=mask_tokens).to(dev)
        opt = torch.optim.AdamW(param_groups(model, weight_decay=0.05), lr=1e-4, betas=(0.9, 0.95), fused=True)
        x = torch.randn(batch_size, 3, img_size, img_size, device=dev)

        def fwd_bwd():
            loss, _, _ = model(x, mask_ratio=mask_ratio)
            loss.backward()

        def sync():
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)

        flops = count_flops(fwd_bwd)                 # forward + backward of one step
        opt.zero_grad(set_to_none=True)
        for _ in range(warmup):
            fwd_bwd()
            opt.step()
            opt.zero_grad(set_to_none=True)
        compute_s = optim_s = 0.0
        with _PeakMemory(dev) as mem:
            for _ in range(steps):
                sync()
                t0 = time.perf_counter()
                fwd_bwd()
                sync()
                t1 = time.perf_counter()
                opt.step()
                opt.zero_grad(set_to_none=True)
                sync()
                compute_s += t1 - t0
                optim_s += time.perf_counter() - t1
        step_s = (compute_s + optim_s) / steps
        tokens = 1 + (model.patch_embed.num_patches if mask_tokens else
                      round(model.patch_embed.num_patches * (1 - mask_ratio)))
        rows.append({"encoder": label, "decoder_depth": depth, "mask_tokens_in_encoder": mask_tokens,
                     "encoder_tokens": tokens, "img_size": img_size, "batch_size": batch_size,
                     "gflop_per_step": flops / 1e9, "step_s": step_s, "fwd_bwd_s": compute_s / steps,
                     "optimizer_s": optim_s / steps, "images_per_s": batch_size / step_s,
                     "achieved_gflop_s": flops / (compute_s / steps) / 1e9, "peak_mem_mb": mem.mb,
                     "paper_speedup": paper, "device": str(dev), "threads": torch.get_num_threads()})
        log(f"  {label}, {depth}-block decoder: {step_s:.2f} s/step, {flops / 1e9:.1f} GFLOP/step")
        del model, opt, x
        gc.collect()
    peaks.append(matmul_peak(dev, seconds=1.0))
    return _ratios(rows, max(peaks))                 # the best the machine did during this run


def _ratios(rows: list[dict], peak: float) -> list[dict]:
    base = rows[0]
    for r in rows:
        r["speedup"] = base["step_s"] / r["step_s"]
        r["fwd_bwd_speedup"] = base["fwd_bwd_s"] / r["fwd_bwd_s"]
        r["flop_ratio"] = base["gflop_per_step"] / r["gflop_per_step"]
        r["matmul_peak_gflop_s"] = peak / 1e9
        r["share_of_peak"] = r["achieved_gflop_s"] * 1e9 / peak
    return rows


def _measure_alternating(*, arch, img_size, patch_size, batch_size, steps, warmup, mask_ratio, decoder_embed_dim,
                         decoder_num_heads, device, threads, log) -> list[dict]:
    import statistics

    import torch

    from maebench.backbones.mae import create_mae
    from maebench.flops import count_flops, matmul_peak
    from maebench.optim import param_groups

    if threads:
        torch.set_num_threads(threads)
    dev = torch.device(device)
    peaks = [matmul_peak(dev, seconds=1.0)]
    torch.manual_seed(0)
    x = torch.randn(batch_size, 3, img_size, img_size, device=dev)
    models, flops = [], []
    for mask_tokens, depth, _ in CONFIGS:
        torch.manual_seed(0)
        m = create_mae(arch, img_size=img_size, patch_size=patch_size, decoder_embed_dim=decoder_embed_dim,
                       decoder_depth=depth, decoder_num_heads=decoder_num_heads, target="norm-pixel",
                       mask_tokens_in_encoder=mask_tokens).to(dev)
        models.append(m)
        flops.append(count_flops(lambda m=m: m(x, mask_ratio=mask_ratio)[0].backward()))
        m.zero_grad(set_to_none=True)

    def fwd_bwd(m) -> float:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        t0 = time.perf_counter()
        m(x, mask_ratio=mask_ratio)[0].backward()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        dt = time.perf_counter() - t0
        m.zero_grad(set_to_none=True)
        return dt

    times: list[list[float]] = [[] for _ in CONFIGS]
    mem = [0.0] * len(CONFIGS)
    for i in range(warmup + steps):
        for k in [(i + j) % len(CONFIGS) for j in range(len(CONFIGS))]:
            with _PeakMemory(dev) as pm:
                dt = fwd_bwd(models[k])
            mem[k] = max(mem[k], pm.mb)
            if i >= warmup:
                times[k].append(dt)
        log(f"  round {i + 1}: " + ", ".join(f"{t[-1]:.2f} s" for t in times if t))
    rows = []
    for k, (mask_tokens, depth, paper) in enumerate(CONFIGS):
        m = models[k]
        opt = torch.optim.AdamW(param_groups(m, weight_decay=0.05), lr=1e-4, betas=(0.9, 0.95), fused=True)
        m(x, mask_ratio=mask_ratio)[0].backward()
        opt.step()                                   # state allocation, untimed
        opt_s = []
        for _ in range(2):
            t0 = time.perf_counter()
            opt.step()
            opt_s.append(time.perf_counter() - t0)
        del opt
        m.zero_grad(set_to_none=True)
        gc.collect()
        fb, o = statistics.median(times[k]), statistics.median(opt_s)
        label = SHORT.get(arch, arch) + (" with mask tokens" if mask_tokens else "")
        tokens = 1 + (m.patch_embed.num_patches if mask_tokens else round(m.patch_embed.num_patches * (1 - mask_ratio)))
        rows.append({"encoder": label, "decoder_depth": depth, "mask_tokens_in_encoder": mask_tokens,
                     "encoder_tokens": tokens, "img_size": img_size, "batch_size": batch_size,
                     "gflop_per_step": flops[k] / 1e9, "step_s": fb + o, "fwd_bwd_s": fb, "optimizer_s": o,
                     "images_per_s": batch_size / (fb + o), "achieved_gflop_s": flops[k] / min(times[k]) / 1e9,
                     "peak_mem_mb": mem[k], "paper_speedup": paper, "device": str(dev),
                     "threads": torch.get_num_threads(), "fwd_bwd_times": times[k], "alternating": True})
        log(f"  {label}, {depth}-block decoder: {fb + o:.2f} s/step, {flops[k] / 1e9:.1f} GFLOP/step")
    del models
    gc.collect()
    peaks.append(matmul_peak(dev, seconds=1.0))
    return _ratios(rows, max(peaks))


def format_table(rows: list[dict]) -> str:
    from tabulate import tabulate
    head = ["encoder", "dec. depth", "enc. tokens", "GFLOP/step", "FLOP ratio", "s/step", "AdamW s", "images/s",
            "speedup", "fwd+bwd speedup", "paper speedup", "GFLOP/s", "% of peak", "peak mem MB"]
    body = [[r["encoder"], r["decoder_depth"], r["encoder_tokens"], f"{r['gflop_per_step']:.1f}",
             f"{r['flop_ratio']:.2f}x", f"{r['step_s']:.2f}", f"{r['optimizer_s']:.2f}", f"{r['images_per_s']:.2f}", f"{r['speedup']:.2f}x",
             f"{r['fwd_bwd_speedup']:.2f}x", f"{r['paper_speedup']:.1f}x", f"{r['achieved_gflop_s']:.1f}",
             f"{100 * r['share_of_peak']:.0f}%", f"{r['peak_mem_mb']:.0f}"] for r in rows]
    r = rows[0]
    note = (f"{r['device']}, {r['threads']} threads, {r['img_size']} px, batch {r['batch_size']}, mask 0.75; "
            f"fp32 matmul peak measured in this run: {r['matmul_peak_gflop_s']:.1f} GFLOP/s. "
            "FLOPs: forward + backward (torch.utils.flop_counter); s/step includes the fused AdamW step (AdamW s); "
            "GFLOP/s and % of peak use the forward + backward time.")
    return tabulate(body, headers=head) + "\n" + note


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default="vit-large", help="encoder (default vit-large, as Table 2)")
    p.add_argument("--img-size", type=int, default=112, help="image size in px (paper: 224; default 112)")
    p.add_argument("--patch-size", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=4, help="images per step (default 4)")
    p.add_argument("--steps", type=int, default=3, help="timed steps per configuration (default 3)")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps first (default 1)")
    p.add_argument("--mask-ratio", type=float, default=0.75)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--alternate", action="store_true",
                   help="the three models side by side, steps in rotating order (robust to a changing load)")
    args = p.parse_args(argv)
    print(f"MAE Table 2 on {args.device}: {args.arch}, {args.img_size} px, batch {args.batch_size}, "
          f"{args.steps} timed steps after {args.warmup} warm-up")
    rows = measure(arch=args.arch, img_size=args.img_size, patch_size=args.patch_size,
                   batch_size=args.batch_size, steps=args.steps, warmup=args.warmup,
                   mask_ratio=args.mask_ratio, device=args.device, threads=args.threads, alternate=args.alternate)
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
