"""compile on or off, per stage of the demo: where does torch.compile pay for itself?

For each stage's step at the demo's size (vit-micro, the protocols' vit-micro batch and image
size), eager and compiled steps alternate (E C, E C, ...) so that the machine's load moves both
alike; the compile time is measured twice: cold (an empty inductor cache) and warm (a second
process-level compile of the same graph, served from the FX graph cache that maebench keeps
under $MAEBENCH_HOME/cache/inductor). The verdict uses the whole demo-sized stage:

    eager_total    = demo steps x eager s/step
    compiled_total = demo steps x compiled s/step + cold compile s
    on  when eager_total / compiled_total >= 1.1, else off

    python benchmarks/compile_stages.py [--pairs 6] [--stages mae,finetune,eval]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

THRESHOLD = 1.1


def _mae(device):
    import torch
    from maebench.backbones.mae import create_mae
    from maebench import config
    c = config.load("pretrain_mae", arch="vit-micro")
    m = create_mae("vit-micro", img_size=c["img_size"], patch_size=c["patch_size"],
                   decoder_embed_dim=c["decoder_embed_dim"], decoder_depth=c["decoder_depth"],
                   decoder_num_heads=c["decoder_num_heads"], target="norm-pixel").to(device)
    x = torch.randn(c["batch_size"], 3, c["img_size"], c["img_size"], device=device)
    steps = c["epochs"] * (60_000 // c["batch_size"])          # the demo: 60k Fashion-MNIST images
    return m, (lambda model: model(x, mask_ratio=c["mask_ratio"])[0]), True, c["batch_size"], steps, \
        f"MAE pretraining, vit-micro {c['img_size']} px, batch {c['batch_size']}, {steps} steps (demo)"


def _classifier(device, batch, steps, what, train=True):
    import torch
    import torch.nn.functional as F
    from maebench.backbones.vit import create_vit
    m = create_vit("vit-micro", img_size=32, num_classes=10).to(device)
    x = torch.randn(batch, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    if train:
        return m, (lambda model: F.cross_entropy(model(x), y)), True, batch, steps, what
    m.eval()
    return m, (lambda model: model(x)), False, batch, steps, what


STAGES: dict[str, Callable] = {
    "mae": _mae,
    # finetune / partial: 100 labels x 10 classes, batch 64, 20 epochs (finetune.yaml vit-micro)
    "finetune": lambda d: _classifier(d, 64, 20 * (1000 // 64), "fine-tuning, vit-micro 32 px, batch 64, "
                                      f"{20 * (1000 // 64)} steps (demo, 100 labels/class)"),
    # supervised pretraining: 60k images, batch 256, 1 epoch (pretrain_supervised.yaml vit-micro)
    "supervised": lambda d: _classifier(d, 256, 60_000 // 256, f"supervised pretraining, vit-micro 32 px, batch 256, "
                                        f"{60_000 // 256} steps (demo)"),
    # evaluation forward: 10k val images in batches of 256 (classification_eval)
    "eval": lambda d: _classifier(d, 256, 10_000 // 256, f"evaluation forward, vit-micro 32 px, batch 256, "
                                  f"{10_000 // 256} batches (10k val images)", train=False),
}


def measure_stage(key: str, pairs: int = 6, device: str = "cpu", log=print) -> dict:
    import torch
    import torch._dynamo
    dev = torch.device(device)
    model, fwd, train, batch, demo_steps, what = STAGES[key](dev)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=dev.type != "mps") if train else None

    def step(fn) -> float:
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        if train:
            fn(model).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        else:
            with torch.no_grad():
                fn(model)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t

    torch._dynamo.reset()
    cold = step(torch.compile(fwd))                     # compile + first step, empty cache
    torch._dynamo.reset()
    compiled = torch.compile(fwd)
    warm = step(compiled)                               # compile from the FX graph cache + first step
    step(fwd)
    eager_s, compiled_s = [], []
    for _ in range(pairs):
        eager_s.append(step(fwd))
        compiled_s.append(step(compiled))
    e, c = statistics.median(eager_s), statistics.median(compiled_s)
    cold_compile = max(0.0, cold - c)
    warm_compile = max(0.0, warm - c)
    eager_total = demo_steps * e
    compiled_total = demo_steps * c + cold_compile
    ratio = eager_total / compiled_total
    row = {"key": key, "what": what, "batch": batch, "demo_steps": demo_steps, "eager_s": e, "compiled_s": c,
           "step_ratio": statistics.median([a / b for a, b in zip(eager_s, compiled_s)]),
           "cold_compile_s": cold_compile, "warm_compile_s": warm_compile, "eager_total_s": eager_total,
           "compiled_total_s": compiled_total, "ratio": ratio, "verdict": "on" if ratio >= THRESHOLD else "off",
           "ratio_cached": eager_total / (demo_steps * c + warm_compile)}     # a later run, compile from the cache
    log(f"  {key}: eager {e * 1e3:.1f} ms, compiled {c * 1e3:.1f} ms per step (x{row['step_ratio']:.2f}); "
        f"compile {cold_compile:.0f} s cold, {warm_compile:.0f} s cached; demo stage {ratio:.2f}x -> {row['verdict']} "
        f"({row['ratio_cached']:.2f}x with a cached compile)")
    return row


def measure(stages=("mae", "finetune", "supervised", "eval"), pairs: int = 6, device: str = "cpu", log=print) -> list[dict]:
    """Every stage in this process, with a fresh (empty) inductor cache for the cold compile."""
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="maebench-inductor-")
    return [measure_stage(k, pairs=pairs, device=device, log=log) for k in stages]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--stages", default="mae,finetune,supervised,eval")
    p.add_argument("--pairs", type=int, default=6)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    import torch
    torch.set_num_threads(a.threads)
    print(f"load {os.getloadavg()}")
    measure(a.stages.split(","), pairs=a.pairs, device=a.device)
    print(f"load {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
