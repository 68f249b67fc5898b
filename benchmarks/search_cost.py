"""The cost of `--search` (maebench/search.py) at the demo's scale, and whether successive halving
picks what the exhaustive grid picks.

Low-label fine-tuning as `maebench demo` runs it (vit-micro MAE norm-pixel backbone pretrained on
the fashion world, 100 labels per class, the protocol's vit-micro recipe), over an 8-point space:
lr_scale {0.5, 1, 2, 4} x layer_decay {0.75, 0.9}. Per seed, two searches of the same space on
the same held-out part of the training data:

- successive halving: the protocol's search (Optuna's SuccessiveHalvingPruner, reduction 3,
  first rung 1 epoch), with an unbounded budget so that the pruner alone sets the cost;
- exhaustive: every point trained for all its epochs (first rung = the recipe's epochs: no
  trial stops early).

Reported per seed: each search's cost in full-run equivalents (epochs trained / the recipe's
epochs x the fit share of the training data, summed over trials) and in wall seconds, one full
run's wall seconds (the chosen point retrained on all the training data), the two winners and
their held-out top-1. Nothing here asserts a time.

    .venv/bin/python benchmarks/search_cost.py --json /tmp/search_cost.json          # prepares + pretrains
    .venv/bin/python benchmarks/search_cost.py --world DIR --backbone NAME --seeds 0,1,2
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SPACE = ("lr_scale=0.5,1,2,4", "layer_decay=0.75,0.9", "global_pool=avg")
TASK_ARGS = ("--labels-per-class", "100")


def _spec(backbone: str, world: Path, seed: int, out: Path, config: Path | None, budget: float):
    from maebench.runspec import RunSpec
    from maebench.tasks.table import TASKS
    return RunSpec(TASKS["finetune"], backbone=backbone, data=str(world / "classification"), seed=seed,
                   out=str(out), results=str(out / "results.sqlite"), config_file=str(config) if config else None,
                   options={"labels_per_class": 100, "label_fraction": None}, search=True,
                   search_space=SPACE, search_budget=budget)


def one_seed(backbone: str, world: Path, seed: int, work: Path) -> dict:
    from maebench import runner, search
    exhaustive_cfg = work / "exhaustive.yaml"
    exhaustive_cfg.write_text("search:\n  min_epochs: 1000   # no rung below the recipe's epochs: no trial stops early\n")
    out = {}
    for name, cfg in (("halving", None), ("exhaustive", exhaustive_cfg)):
        t0 = time.perf_counter()
        final, rec = search.search_trained(_spec(backbone, world, seed, work / f"{name}-s{seed}", cfg, 1000.0),
                                           runner.run_recipe)
        out[name] = {"wall_s": time.perf_counter() - t0, "cost": rec["cost"], "chosen": rec["chosen"],
                     "score": rec["score"], "pruned": rec["pruned"], "completed": rec["completed"],
                     "trials": rec["trials"]}
        if name == "halving":                  # one full run: the chosen point on all the training data
            t0 = time.perf_counter()
            (o,) = [runner.run_recipe(final, r) for r in final.program.recipes()(final)]
            out["full_run_s"] = time.perf_counter() - t0
            out["final_top1"] = o.metrics["top1"]
    out["same_winner"] = out["halving"]["chosen"] == out["exhaustive"]["chosen"]
    return out


def prepare(work: Path) -> tuple[Path, str]:
    """The fashion world and a demo-recipe MAE norm-pixel vit-micro, as `maebench demo` makes them."""
    from maebench.cli import main
    world = work / "world"
    assert main(["data", "prepare", "fashion", "--out", str(world)]) == 0
    assert main(["pretrain", "--method", "mae", "--target", "norm-pixel", "--arch", "vit-micro", "--data",
                 str(world / "classification"), "--name", "bench-mae", "--seed", "0",
                 "--results", str(work / "pretrain.sqlite")]) == 0
    return world, "bench-mae"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--world", help="a fashion world directory (default: prepared in a temporary home)")
    p.add_argument("--backbone", help="a registered vit-micro backbone (default: pretrained here, the demo's MAE)")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--json", metavar="FILE", help="also write the measurement as JSON")
    a = p.parse_args()
    import datetime
    import shlex

    import torch
    started = datetime.datetime.now(datetime.timezone.utc)
    work = Path(tempfile.mkdtemp(prefix="search-cost-"))
    if not os.environ.get("MAEBENCH_HOME"):
        os.environ["MAEBENCH_HOME"] = str(work / "home")
    world, backbone = (Path(a.world), a.backbone) if a.world and a.backbone else prepare(work)
    t0 = time.perf_counter()
    seeds = {int(s): one_seed(backbone, world, int(s), work) for s in a.seeds.split(",")}
    r = {"command": "python benchmarks/search_cost.py " + " ".join(shlex.quote(x) for x in sys.argv[1:]),
         "started": f"{started:%Y-%m-%d %H:%M} UTC", "wall_s": time.perf_counter() - t0, "space": list(SPACE),
         "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "seeds": seeds}
    if a.json:
        Path(a.json).write_text(json.dumps(r, indent=1, default=str))
    print(markdown(r))
    return 0


def markdown(r: dict) -> str:
    rows = ["| seed | halving cost (full runs) | halving wall s | exhaustive cost | exhaustive wall s | one full run s "
            "| halving / full run (wall) | halving winner (held-out top-1) | exhaustive winner | same |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for seed, s in r["seeds"].items():
        h, e = s["halving"], s["exhaustive"]
        fmt = lambda c: ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in c.items() if k != "global_pool")
        rows.append(f"| {seed} | {h['cost']:.2f} | {h['wall_s']:.0f} | {e['cost']:.2f} | {e['wall_s']:.0f} | "
                    f"{s['full_run_s']:.0f} | {h['wall_s'] / s['full_run_s']:.2f}x | {fmt(h['chosen'])} ({h['score']:.1f}) | "
                    f"{fmt(e['chosen'])} ({e['score']:.1f}) | {'yes' if s['same_winner'] else 'no'} |")
    same = sum(s["same_winner"] for s in r["seeds"].values())
    return "\n".join(rows) + f"\n\nSame winner in {same} of {len(r['seeds'])} seeds."


if __name__ == "__main__":
    raise SystemExit(main())
