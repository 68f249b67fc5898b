"""maebench's MAE against the official implementation (facebookresearch/mae, models_mae.py).

Both models are built with the same configuration (ViT-B/16 encoder, 512-d x 8 decoder,
norm-pixel loss by default), our weights are loaded into the official model (same keys), and:

1. agreement: the same images and the same masking noise give the same loss and gradients
   (and the same loss with the raw-pixel target).
   The official `random_masking` draws `torch.rand(N, L)` itself, so the noise is fixed by
   seeding torch's generator identically before each forward (and checked: the two masks
   must be equal);
2. speed: a whole train step (forward, backward, fused AdamW step with the same parameter
   groups) of each, timed in alternation (A B, B A, ...) so that a change in the machine's load
   hits both equally; the ratio is our images/s over theirs, per pair, median over pairs (and,
   as a check, fastest step over fastest step);
3. the official training script's own optimizer (`torch.optim.AdamW` with default arguments,
   the for-loop implementation on CPU) against the fused one maebench's engine uses, timed on
   the same gradients.

The official code is never copied here: `--reference-mae DIR` (a checkout) is put on sys.path
at run time, with two shims for current libraries: `np.float` (removed from numpy; used by its
util/pos_embed.py) and timm's `Block` without its removed `qk_scale` argument (always None in
models_mae.py, where it selected the default head_dim ** -0.5 scale anyway).

    python benchmarks/compare_official_mae.py --reference-mae /work/ref-mae [--img-size 224] [--batch-size 8]
"""
from __future__ import annotations

import argparse
import importlib
import statistics
import sys
import time
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ARCH = {"vit-micro": (96, 4, 3), "vit-tiny": (192, 12, 3), "vit-small": (384, 12, 6), "vit-base": (768, 12, 12),
        "vit-large": (1024, 24, 16)}


def import_official(ref_dir: str | Path):
    """models_mae from a facebookresearch/mae checkout, with the two runtime shims."""
    import numpy as np
    import timm.models.vision_transformer as tvt

    ref_dir = Path(ref_dir).expanduser().resolve()
    if not (ref_dir / "models_mae.py").is_file():
        raise SystemExit(f"--reference-mae {ref_dir}: no models_mae.py there (a facebookresearch/mae checkout?)")
    if not hasattr(np, "float") or np.float is not float:
        np.float = float      # removed in numpy 1.24; util/pos_embed.py builds omega with it

    block = tvt.Block

    class BlockWithQkScale(block):
        """timm's Block accepting (and ignoring) the qk_scale=None that models_mae.py passes."""

        def __init__(self, *args, qk_scale=None, **kwargs):
            if qk_scale is not None:
                raise ValueError("qk_scale other than None is not supported by current timm")
            super().__init__(*args, **kwargs)

    sys.path.insert(0, str(ref_dir))
    tvt.Block = BlockWithQkScale
    try:
        sys.modules.pop("models_mae", None)
        return importlib.import_module("models_mae")
    finally:
        tvt.Block = block                 # our models keep timm's own class
        sys.path.remove(str(ref_dir))


def build_pair(official, arch: str, img_size: int, norm_pix_loss: bool = True):
    """(ours, theirs) with identical configuration and weights (ours loaded into theirs)."""
    import torch
    import torch.nn as nn

    from maebench.backbones.mae import MaskedAutoencoderViT

    dim, depth, heads = ARCH[arch]
    kw = dict(img_size=img_size, patch_size=16 if arch != "vit-micro" else 4, in_chans=3, embed_dim=dim,
              depth=depth, num_heads=heads, decoder_embed_dim=512, decoder_depth=8, decoder_num_heads=16,
              mlp_ratio=4, norm_layer=partial(nn.LayerNorm, eps=1e-6), norm_pix_loss=norm_pix_loss)
    torch.manual_seed(0)
    ours = MaskedAutoencoderViT(**kw)
    theirs = official.MaskedAutoencoderViT(**kw)
    theirs.load_state_dict(ours.state_dict(), strict=True)
    return ours, theirs


def agreement(ours, theirs, imgs, mask_ratio: float, seed: int = 1) -> dict:
    """One forward + backward of each on the same images and noise: loss and gradient gaps.
    (This is also each model's warm-up step.)"""
    import torch

    n, L = imgs.shape[0], ours.patch_embed.num_patches
    torch.manual_seed(seed)
    noise = torch.rand(n, L)
    loss_a, _, mask_a = ours(imgs, mask_ratio=mask_ratio, noise=noise)
    torch.manual_seed(seed)                     # the official random_masking draws this same noise
    loss_b, _, mask_b = theirs(imgs, mask_ratio=mask_ratio)
    loss_a.backward()
    loss_b.backward()
    ga = dict(ours.named_parameters())
    worst, worst_rel, name = 0.0, 0.0, ""
    for k, pb in theirs.named_parameters():
        if pb.grad is None:
            continue
        d = (ga[k].grad - pb.grad).abs().max().item()
        rel = d / max(pb.grad.abs().max().item(), 1e-30)
        if rel > worst_rel:
            worst, worst_rel, name = d, rel, k
    # the other target: raw pixels (both models read their norm_pix_loss flag at loss time)
    pixel = {}
    with torch.no_grad():
        for which, model in (("ours", ours), ("official", theirs)):
            saved = model.norm_pix_loss
            model.norm_pix_loss = False
            torch.manual_seed(seed)
            pixel[which] = model(imgs, mask_ratio=mask_ratio, **({"noise": noise} if model is ours else {}))[0].item()
            model.norm_pix_loss = saved
    return {"loss_pixel_abs_diff": abs(pixel["ours"] - pixel["official"]),
            "loss_ours": loss_a.item(), "loss_official": loss_b.item(),
            "loss_abs_diff": abs(loss_a.item() - loss_b.item()), "masks_equal": bool(torch.equal(mask_a, mask_b)),
            "grad_max_abs_diff": worst, "grad_max_rel_diff": worst_rel, "grad_worst_param": name}


def flop_split(model, img_size: int, mask_ratio: float) -> dict[str, float]:
    """Forward GFLOP of one image in the encoder and in the decoder (the decoder sees every token)."""
    import torch

    from maebench.flops import count_flops

    x = torch.zeros(1, 3, img_size, img_size)
    with torch.no_grad():
        latent, _, ids_restore = model.forward_encoder(x, mask_ratio)
        enc = count_flops(lambda: model.forward_encoder(x, mask_ratio))
        dec = count_flops(lambda: model.forward_decoder(latent, ids_restore))
    return {"encoder_gflop": enc / 1e9, "decoder_gflop": dec / 1e9}


def compare(ref_dir, *, arch: str = "vit-base", img_size: int = 224, batch_size: int = 8, steps: int = 5,
            mask_ratio: float = 0.75, norm_pix_loss: bool = True, compile: bool = False, device: str = "cpu",
            log=print) -> dict:
    """device cuda (written, not run here: no GPU was lent): ours under bf16 autocast (maebench.amp,
    SDPA picks flash attention) against the official step under fp16 autocast + GradScaler, as its
    main_pretrain.py runs; MFU against a bf16 matmul peak measured in this run."""
    import contextlib

    import torch

    from benchmarks.pretrain_speed import _PeakMemory
    from benchmarks.timing import count_cost
    from maebench.optim import param_groups

    official = import_official(ref_dir)
    ours, theirs = build_pair(official, arch, img_size, norm_pix_loss)
    torch.manual_seed(2)
    imgs = torch.randn(batch_size, 3, img_size, img_size)
    check = agreement(ours, theirs, imgs, mask_ratio)
    log(f"  agreement: loss {check['loss_ours']:.6f} vs {check['loss_official']:.6f} "
        f"(|diff| {check['loss_abs_diff']:.1e}), max grad diff {check['grad_max_abs_diff']:.1e}")
    dev = torch.device(device)
    ours.to(dev), theirs.to(dev)
    imgs = imgs.to(dev)
    cuda = dev.type == "cuda"
    amp = {"ours": (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if cuda else contextlib.nullcontext,
           "official": (lambda: torch.autocast("cuda", dtype=torch.float16)) if cuda else contextlib.nullcontext}
    scaler = torch.amp.GradScaler("cuda", enabled=cuda)          # the official step's loss scaling (fp16)

    def sync():
        if cuda:
            torch.cuda.synchronize(dev)

    def train_step(model, compiled=False):
        opt = torch.optim.AdamW(param_groups(model, weight_decay=0.05), lr=1.5e-4, betas=(0.9, 0.95), fused=True)
        # ours with compile: the forward + loss through torch.compile, as engine.fit runs it with compile: true
        loss_fn = torch.compile(lambda x: model(x, mask_ratio=mask_ratio)[0]) if compiled else \
            (lambda x: model(x, mask_ratio=mask_ratio)[0])
        official_model = model is theirs
        ctx = amp["official" if official_model else "ours"]

        def fwd_bwd():
            with ctx():
                loss = loss_fn(imgs)
            (scaler.scale(loss) if official_model and cuda else loss).backward()

        def step():
            fwd_bwd()
            if official_model and cuda:
                scaler.step(opt)
                scaler.update()
            else:
                opt.step()
            opt.zero_grad(set_to_none=True)
            sync()
        return fwd_bwd, step, opt

    (f_ours, s_ours, opt_ours), (f_theirs, s_theirs, _) = train_step(ours, compile), train_step(theirs)
    for m in (ours, theirs):
        m.zero_grad(set_to_none=True)
    flops = {"ours": count_cost(train_step(ours)[0], ours).flops, "official": count_cost(f_theirs, theirs).flops}
    compile_s = None
    if compile:                                  # compile + first step, reported, never timed as a step
        from maebench.compiling import cache_dir
        cache_dir()
        t0 = time.perf_counter()
        f_ours()
        compile_s = time.perf_counter() - t0
        log(f"  compile + first step of ours: {compile_s:.1f} s")
        ours.zero_grad(set_to_none=True)
    opt_ours.step()                              # warm-up of the optimizer state (both)
    opt_ours.zero_grad(set_to_none=True)
    s_theirs()
    times: dict[str, list[float]] = {"ours": [], "official": []}
    mem = {"ours": 0.0, "official": 0.0}
    order = [("ours", s_ours), ("official", s_theirs)]
    for i in range(steps):
        for name, step in (order if i % 2 == 0 else order[::-1]):      # A B, B A, A B ...
            with _PeakMemory(dev) as pm:
                sync()
                t0 = time.perf_counter()
                step()
                times[name].append(time.perf_counter() - t0)
            mem[name] = max(mem[name], pm.mb)
        log(f"  pair {i + 1}: ours {times['ours'][-1]:.2f} s, official {times['official'][-1]:.2f} s")
    pair_ratios = [t_off / t_ours for t_ours, t_off in zip(times["ours"], times["official"])]

    # the optimizer of the official script (default AdamW: for-loop on CPU) vs fused, same gradients
    f_theirs()
    opts = {name: torch.optim.AdamW(param_groups(theirs, weight_decay=0.05), lr=1.5e-4, betas=(0.9, 0.95), **kw)
            for name, kw in (("fused", {"fused": True}), ("default (official script)", {}))}
    opt_times: dict[str, list[float]] = {k: [] for k in opts}
    for o in opts.values():
        o.step()                                 # state allocation, untimed
    for i in range(max(3, steps)):
        for k, o in (list(opts.items()) if i % 2 == 0 else list(opts.items())[::-1]):
            t0 = time.perf_counter()
            o.step()
            opt_times[k].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    bf16_peak = None
    if cuda:                                     # MFU of each against the bf16 matmul peak measured now
        from maebench.flops import matmul_peak
        bf16_peak = matmul_peak(dev, dtype=torch.bfloat16, n=8192, seconds=2.0)
        log("  MFU (bf16 peak {:.0f} TFLOP/s): ".format(bf16_peak / 1e12) + ", ".join(
            f"{k} {100 * flops[k] / min(v) / bf16_peak:.1f}%" for k, v in times.items()))
    return {"arch": arch, "img_size": img_size, "batch_size": batch_size, "steps": steps, "mask_ratio": mask_ratio,
            "split": flop_split(ours, img_size, mask_ratio),
            "norm_pix_loss": norm_pix_loss, "threads": torch.get_num_threads(),
            "params_m": sum(p.numel() for p in ours.parameters() if p.requires_grad) / 1e6,
            "times": times, "median_s": med, "images_per_s": {k: batch_size / v for k, v in med.items()},
            "gflop_per_step": {k: v / 1e9 for k, v in flops.items()}, "peak_rss_mb": mem,
            "min_s": {k: min(v) for k, v in times.items()},
            "pair_ratios": pair_ratios, "ratio": statistics.median(pair_ratios),
            "ratio_of_min": min(times["official"]) / min(times["ours"]), "agreement": check,
            "optimizer_s": {k: statistics.median(v) for k, v in opt_times.items()},
            "reference": str(Path(ref_dir).expanduser().resolve()), "compile": compile, "compile_s": compile_s,
            "device": str(dev), "bf16_peak_flop_s": bf16_peak}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reference-mae", required=True, metavar="DIR", help="a facebookresearch/mae checkout")
    p.add_argument("--arch", default="vit-base", choices=sorted(ARCH))
    p.add_argument("--img-size", type=int, default=224)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--steps", type=int, default=5, help="timed steps of each (alternating)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--compile", action="store_true", help="our step through torch.compile (the official stays eager)")
    p.add_argument("--device", default="cpu", help="cpu, or cuda: ours bf16 + compile vs official fp16 AMP "
                   "(written, not run here: no GPU was lent)")
    args = p.parse_args(argv)
    import torch
    if args.threads:
        torch.set_num_threads(args.threads)
    r = compare(args.reference_mae, arch=args.arch, img_size=args.img_size, batch_size=args.batch_size,
                steps=args.steps, compile=args.compile, device=args.device)
    a = r["agreement"]
    print(f"ours {r['images_per_s']['ours']:.2f} images/s, official {r['images_per_s']['official']:.2f} images/s: "
          f"ratio {r['ratio']:.3f} (per pair: {', '.join(f'{x:.3f}' for x in r['pair_ratios'])}; "
          f"fastest step vs fastest step: {r['ratio_of_min']:.3f})")
    print(f"loss {a['loss_ours']:.7f} vs {a['loss_official']:.7f}, masks equal {a['masks_equal']}, "
          f"max grad diff {a['grad_max_abs_diff']:.2e} (relative {a['grad_max_rel_diff']:.2e}, {a['grad_worst_param']})")
    print("optimizer step: " + ", ".join(f"{k} {v:.3f} s" for k, v in r["optimizer_s"].items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
