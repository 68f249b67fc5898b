"""Memory for big models: what strategy=fsdp and grad_checkpointing=true save at ViT-L/16.

1. Per-process bytes of parameters + gradients + AdamW state of ViT-L/16 (timm
   vit_large_patch16_224, 1000 classes) fine-tuning under FSDP (maebench/sharding.py: FSDP2
   per block, then the root) and under DDP, 2 gloo processes on CPU: one real training step
   (fused AdamW over maebench's weight-decay groups, batch 1 per process, 224 px), then the
   bytes of the local tensors each process holds (a DTensor counts its local shard). The
   process's peak resident memory during the step (VmHWM, reset before it) is shown beside
   it; it also holds activations, all-gathered blocks and DDP's gradient buckets, and freed
   memory the allocator keeps.
2. Gradient checkpointing (maebench/grad_ckpt.py: timm's set_grad_checkpointing) at ViT-L/16,
   224 px, batch 2, one process: the activation bytes autograd keeps for the backward after
   one forward (saved tensors, each storage once, parameters excluded, plus the block inputs
   a checkpoint keeps by reference), the peak resident memory of a forward + backward, and the
   forward + backward time with and without, alternated over the repeats (median).

    .venv/bin/python benchmarks/fsdp_memory.py --report benchmarks/REPORT.md

Nothing here asserts a time or a size.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

SECTION = "## 10. Memory for big models: FSDP and gradient checkpointing (benchmarks/fsdp_memory.py)"
MODEL = "vit_large_patch16_224"


def local_bytes(t: torch.Tensor) -> int:
    t = t.to_local() if hasattr(t, "to_local") else t
    return t.numel() * t.element_size()


def held_bytes(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, int]:
    params = list(model.parameters())
    return {"params": sum(local_bytes(p) for p in params),
            "grads": sum(local_bytes(p.grad) for p in params if p.grad is not None),
            "optimizer": sum(local_bytes(v) for s in optimizer.state.values() for v in s.values()
                             if torch.is_tensor(v))}


def _strategy_step(strategy: str, img: int) -> dict:
    import timm
    from maebench import optim, sharding
    from maebench.microbatch import peak_rss_of
    torch.manual_seed(0)
    model = timm.create_model(MODEL, img_size=img)
    groups = optim.param_groups(model, weight_decay=0.05)
    train = sharding.wrap(model, strategy, torch.device("cpu"), False, groups)
    opt = torch.optim.AdamW(groups, lr=1e-4, fused=True)
    x, y = torch.randn(1, 3, img, img), torch.tensor([1])

    def step():
        nn.functional.cross_entropy(train(x), y).backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    t0 = time.perf_counter()
    peak = peak_rss_of(step)
    out = {**held_bytes(model, opt), "peak_rss": peak, "step_s": time.perf_counter() - t0}
    out["total"] = out["params"] + out["grads"] + out["optimizer"]
    return out


def _worker(rank: int, rendezvous: str, strategy: str, img: int, out: str) -> None:
    import warnings
    import torch.distributed as tdist
    warnings.filterwarnings("ignore", message="Grad strides do not match")   # timm's cls/pos tokens under DDP
    torch.set_num_threads(1)
    tdist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=2)
    Path(f"{out}.{rank}").write_text(json.dumps(_strategy_step(strategy, img)))
    tdist.destroy_process_group()


def strategies(img: int) -> dict:
    """{rank: {strategy: bytes...}}; each strategy in a fresh pair of processes (fits in less memory,
    and neither's peak holds the other's freed memory)."""
    out: dict = {0: {}, 1: {}}
    ctx = torch.multiprocessing.get_context("spawn")
    for strategy in ("fsdp", "ddp"):
        tmp = tempfile.mkdtemp()
        procs = [ctx.Process(target=_worker, args=(r, f"{tmp}/rv", strategy, img, f"{tmp}/out")) for r in range(2)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        if [p.exitcode for p in procs] != [0, 0]:
            raise SystemExit(f"{strategy}: a process failed: exit codes {[p.exitcode for p in procs]}")
        for r in range(2):
            out[r][strategy] = json.loads(Path(f"{tmp}/out.{r}").read_text())
        print(f"{strategy}: rank 0 {out[0][strategy]}", file=sys.stderr, flush=True)
    return out


def activations(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[int, torch.Tensor]:
    """(bytes autograd keeps for the backward after one forward, the loss)."""
    from benchmarks.timing import SavedForBackward
    saved = SavedForBackward(model)

    def block_input(_m, args):                      # a checkpoint keeps its input by reference
        if model.grad_checkpointing:
            saved.add(args[0])
    hooks = [b.register_forward_pre_hook(block_input) for b in model.blocks]
    with saved:
        loss = nn.functional.cross_entropy(model(x), y)
    for h in hooks:
        h.remove()
    return saved.bytes, loss


def checkpointing(repeats: int, batch: int) -> dict:
    import timm
    from maebench import grad_ckpt
    from maebench.microbatch import peak_rss_of
    torch.manual_seed(0)
    model = timm.create_model(MODEL)
    x, y = torch.randn(batch, 3, 224, 224), torch.randint(0, 1000, (batch,))
    out = {}
    for on in (False, True):
        model.set_grad_checkpointing(False)
        if on:
            grad_ckpt.enable(model)
        saved, loss = activations(model, x, y)
        loss.backward()
        model.zero_grad(set_to_none=True)
        out[on] = {"saved": saved, "times": [],
                   "peak_rss": peak_rss_of(lambda: nn.functional.cross_entropy(model(x), y).backward())}
        model.zero_grad(set_to_none=True)
    for _ in range(repeats):                        # alternated: a load change hits both alike
        for on in (False, True):
            model.set_grad_checkpointing(on)
            t0 = time.perf_counter()
            nn.functional.cross_entropy(model(x), y).backward()
            out[on]["times"].append(time.perf_counter() - t0)
            model.zero_grad(set_to_none=True)
    return {"off": out[False], "on": out[True]}


def gb(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def markdown(r: dict) -> str:
    from md_tables import table
    s = r["strategies"]["0"]
    rows = [[k, *(gb(s[st][k]) for st in ("ddp", "fsdp")), f"{s['fsdp'][k] / s['ddp'][k]:.3f}"]
            for k in ("params", "grads", "optimizer", "total")]
    rows.append(["peak RSS during the step", *(gb(s[st]["peak_rss"]) for st in ("ddp", "fsdp")),
                 f"{s['fsdp']['peak_rss'] / s['ddp']['peak_rss']:.3f}"])
    rows.append(["step time (s, one step, 1 thread)", *(f"{s[st]['step_s']:.1f}" for st in ("ddp", "fsdp")),
                 f"{s['fsdp']['step_s'] / s['ddp']['step_s']:.2f}"])
    one = table(["rank 0, per process", "DDP (2 processes)", "FSDP (2 processes)", "FSDP / DDP"], rows)
    c = r["checkpointing"]
    t_off, t_on = statistics.median(c["off"]["times"]), statistics.median(c["on"]["times"])
    two = table(["ViT-L/16, 224 px, batch %d" % r["batch"], "no checkpointing", "grad_checkpointing=true", "ratio"], [
        ["activations kept for the backward", gb(c["off"]["saved"]), gb(c["on"]["saved"]),
         f"{c['on']['saved'] / c['off']['saved']:.3f}"],
        ["peak RSS of forward + backward", gb(c["off"]["peak_rss"]), gb(c["on"]["peak_rss"]),
         f"{c['on']['peak_rss'] / c['off']['peak_rss']:.3f}"],
        [f"forward + backward s (median of {len(c['on']['times'])})", f"{t_off:.2f}", f"{t_on:.2f}",
         f"{t_on / t_off:.2f}"]])
    rank1 = r["strategies"]["1"]
    note = (f"Rank 1 holds {gb(rank1['fsdp']['total'])} under FSDP and {gb(rank1['ddp']['total'])} under DDP "
            "(FSDP2 pads each parameter's dim-0 split to equal shards, so the two ranks' shares differ slightly).")
    return f"{one}\n\n{note}\n\n{two}"


def write_section(path: Path, r: dict) -> None:
    """SECTION of `path`, replaced (up to the next `## ` heading) or appended."""
    intro = " ".join(__doc__.split("\n\n")[1:3]).replace("\n", " ")
    body = (f"Measured by `{r['command']}` on {r['date']} ({r['wall_s'] / 60:.1f} min); "
            f"{r['machine']}; torch {torch.__version__}. {' '.join(intro.split())}\n\n{markdown(r)}\n")
    from benchmarks.md_tables import write_section as write_md_section
    write_md_section(path, SECTION, body)


def machine() -> str:
    try:
        model = next(line.split(":", 1)[1].strip() for line in subprocess.run(
            ["lscpu"], capture_output=True, text=True).stdout.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration):
        model = platform.processor() or "unknown CPU"
    return (f"{model}, {os.cpu_count()} cores; torch threads: 1 per process in part 1 (2 processes), "
            f"{torch.get_num_threads()} in part 2")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--img-size", type=int, default=224, help="part 1's image size (parameters do not depend on it)")
    ap.add_argument("--batch", type=int, default=2, help="part 2's batch")
    ap.add_argument("--repeats", type=int, default=3, help="part 2's timed steps per setting")
    ap.add_argument("--json", help="also write the numbers here")
    ap.add_argument("--report", help="write (or replace) this benchmark's section in this markdown file")
    args = ap.parse_args(argv)
    t0 = time.time()
    r = {"command": "python benchmarks/fsdp_memory.py " + " ".join(argv if argv is not None else sys.argv[1:]),
         "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
         "batch": args.batch}
    r["strategies"] = {str(k): v for k, v in strategies(args.img_size).items()}
    r["checkpointing"] = checkpointing(args.repeats, args.batch)
    r["machine"], r["wall_s"] = machine(), time.time() - t0
    print(markdown(r))
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=1))
    if args.report:
        write_section(Path(args.report), r)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    raise SystemExit(main())
