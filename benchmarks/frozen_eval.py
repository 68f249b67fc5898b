"""Frozen-feature evaluation costs (issue 17), measured in one run:

1. the linear-probe sweep: a 20-head grid (5 lrs x [cls]/avg x last 1/4 blocks) trained together
   over cached features against one head on the same features, for the same epochs and batches;
   the single head both through the same batched trainer (tasks/linear_sweep.py) and through
   engine.fit, the loop of the single-lr `--cached-features --no-sweep` probe;
2. the feature cache: `maebench run` of linprobe --sweep, linprobe --head logreg and knn on one
   backbone and dataset with the shared cache (one encoder pass) against feature_cache=false
   (each protocol encodes the dataset itself: three passes).

    .venv/bin/python benchmarks/frozen_eval.py                       # generated shapes set, scratch vit-micro
    .venv/bin/python benchmarks/frozen_eval.py --data DIR --backbone NAME   # (MAEBENCH_HOME as set)
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def sweep_vs_single(n: int, dim: int, classes: int, epochs: int, batch: int, repeats: int) -> dict:
    import torch
    from torch.utils.data import TensorDataset

    from maebench import engine
    from maebench.config import load
    from maebench.tasks.linear_sweep import HeadSpec, train
    from maebench.tasks.linprobe import cross_entropy, lars_groups, make_head
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(n, 2, 4, dim, generator=g)
    y = torch.randint(0, classes, (n,), generator=g)
    cfg = {**load("linprobe"), "epochs": epochs, "batch_size": batch, "warmup_epochs": 1, "num_workers": 0,
           "eval_every": 0, "checkpoint_every": epochs, "log_every": 10_000}
    grid = [HeadSpec(lr, 0.0, p, b) for lr in (0.1, 0.3, 1.0, 3.0, 10.0) for p in ("cls", "avg") for b in (1, 4)]
    one = [HeadSpec(1.0, 0.0, "cls", 1)]
    dev = torch.device("cpu")

    def bank(specs):
        t0 = time.perf_counter()
        train(specs, feats, y, cfg, pooling=("cls", "avg"), num_classes=classes, seed=0, device=dev)
        return time.perf_counter() - t0

    def fit_one():
        head = make_head(dim, classes, 0)
        with tempfile.TemporaryDirectory() as d:
            t0 = time.perf_counter()
            engine.fit(head, TensorDataset(feats[:, 0, -1].contiguous(), y), cross_entropy, {**cfg, "lr": 0.004},
                       out_dir=Path(d), device=dev, seed=0, param_groups=lars_groups(head, 0.0), desc="single")
            return time.perf_counter() - t0

    out = {}
    for name, fn in (("sweep_20", lambda: bank(grid)), ("single_batched", lambda: bank(one)), ("single_engine", fit_one)):
        fn()                                             # warm-up
        out[name] = statistics.median(fn() for _ in range(repeats))
    return out


def cache_vs_three_passes(data: str, backbone: str, epochs: int, batch: int) -> dict:
    from maebench.cli import main
    from maebench.results import ResultsStore
    from maebench.tasks import feature_cache
    common = ["--backbone", backbone, "--data", data, "--set", "num_workers=2"]
    runs = [["run", "--task", "linprobe", "--sweep", "--epochs", str(epochs), "--batch-size", str(batch), *common],
            ["run", "--task", "linprobe", "--head", "logreg", *common],
            ["run", "--task", "knn", *common]]
    out = {}
    for mode, extra in (("three_passes", ["--set", "feature_cache=false"]), ("shared_cache", [])):
        feature_cache.clear()
        results = Path(tempfile.mkdtemp()) / "r.sqlite"
        t0 = time.perf_counter()
        for argv in runs:
            if main([*argv, *extra, "--results", str(results), "--force"]) != 0:
                raise SystemExit(f"failed: {' '.join(argv)}")
        wall = time.perf_counter() - t0
        rows = ResultsStore(results).rows()
        out[mode] = {"wall_s": wall, "extraction_s": sum(r.metrics.get("feature_extraction_s", 0) for r in rows),
                     "cache": [r.metrics.get("feature_cache") for r in rows]}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", help="ImageFolder dataset (default: a generated 10-class shapes set, 32 px)")
    p.add_argument("--backbone", default="scratch-vit-micro")
    p.add_argument("--n", type=int, default=54_000, help="sweep part: training features (Fashion-MNIST's 90 %%)")
    p.add_argument("--dim", type=int, default=96, help="sweep part: feature width (vit-micro)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--train-per-class", type=int, default=300, help="generated set: training images per class")
    args = p.parse_args()
    import torch
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    print(f"threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    t = sweep_vs_single(args.n, args.dim, 10, args.epochs, args.batch_size, args.repeats)
    print(f"sweep part ({args.n} x 2 x 4 x {args.dim} features, {args.epochs} epochs, batch {args.batch_size}; "
          f"median of {args.repeats}):")
    print(f"  20 heads together        {t['sweep_20']:7.2f} s")
    print(f"  1 head, same trainer     {t['single_batched']:7.2f} s   -> 20 heads / 1 = {t['sweep_20'] / t['single_batched']:.2f}x")
    print(f"  1 head, engine.fit       {t['single_engine']:7.2f} s   -> 20 heads / 1 = {t['sweep_20'] / t['single_engine']:.2f}x")
    data = args.data
    if data is None:
        os.environ.setdefault("MAEBENCH_HOME", tempfile.mkdtemp())
        from maebench.data.shapes import ShapesOptions, prepare
        data = str(prepare(Path(tempfile.mkdtemp()), ShapesOptions(img_size=32, classes=10, train_per_class=args.train_per_class,
                                                                   val_per_class=50), kinds=("classification",))["classification"])
    c = cache_vs_three_passes(data, args.backbone, args.epochs, args.batch_size)
    three, shared = c["three_passes"], c["shared_cache"]
    print(f"cache part ({args.backbone} on {data}: linprobe --sweep, --head logreg, knn):")
    for name, r in c.items():
        print(f"  {name:<13} wall {r['wall_s']:7.1f} s, encoder passes {r['extraction_s']:6.1f} s  cache {r['cache']}")
    print(f"  three passes / one: extraction {three['extraction_s'] / max(shared['extraction_s'], 1e-9):.2f}x, "
          f"wall {three['wall_s'] / shared['wall_s']:.2f}x")


if __name__ == "__main__":
    main()
