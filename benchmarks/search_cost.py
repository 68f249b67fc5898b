"""The cost of `--search` (maebench/search.py) at the demo's scale, and whether a pruned search
picks what the exhaustive grid picks.

Low-label fine-tuning as `maebench demo` runs it (vit-micro MAE norm-pixel backbone pretrained on
the fashion world, 100 labels per class, the protocol's vit-micro recipe), over an 8-point space:
lr_scale {0.5, 1, 2, 4} x layer_decay {0.75, 0.9}. Per seed:

1. the exhaustive grid: every point trained for all its epochs on the training data less the
   search's held-out part, its held-out top-1 recorded after every epoch (its curve);
2. the pruners replayed on those curves: each Optuna pruner (the same objects maebench's search
   builds, fed the same scores at the same epochs, the points in the search's order) decides
   where each trial would have stopped; a stopped trial costs the epochs it ran. The replay is
   exact because a trial is a deterministic function of its seed and point (checked: one real
   search per seed, with the protocol's pruner, reproduces its replay's trials and choice);
3. the chosen point retrained on all the training data: one full run, the unit of cost.

Cost is in full-run equivalents (epochs trained / the recipe's epochs x the fit share of the
training data, summed over trials). Nothing here asserts a time.

    .venv/bin/python benchmarks/search_cost.py --json /tmp/search_cost.json          # prepares + pretrains
    .venv/bin/python benchmarks/search_cost.py --world DIR --backbone NAME --seeds 0,1,2
    .venv/bin/python benchmarks/search_cost.py --from-json /tmp/search_cost.json --report benchmarks/REPORT.md

`--report FILE` writes (or replaces) the section SECTION in FILE; run_all.py does not run this
benchmark (about 30 minutes on 2 cores), so its section is added this way.
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
SECTION = "## 9. The cost of `--search` (benchmarks/search_cost.py)"
# (label, search-table overrides): the pruners replayed on the curves
PRUNERS = (
    ("halving, reduction 3, rungs 1/3/9", {"pruner": "halving", "reduction_factor": 3, "min_epochs": 1}),
    ("halving, reduction 2, rungs 1/2/4/8", {"pruner": "halving", "reduction_factor": 2, "min_epochs": 1}),
    ("halving, reduction 2, rungs 3/6", {"pruner": "halving", "reduction_factor": 2, "min_epochs": 3}),
    ("halving, reduction 3, rungs 3/9", {"pruner": "halving", "reduction_factor": 3, "min_epochs": 3}),
    ("median, rungs 1/3/9", {"pruner": "median", "reduction_factor": 3, "min_epochs": 1}),
    ("median, rungs 2/4/8", {"pruner": "median", "reduction_factor": 2, "min_epochs": 2}),
    ("median, rungs 3/6", {"pruner": "median", "reduction_factor": 2, "min_epochs": 3}),
)


def _spec(backbone: str, world: Path, seed: int, out: Path, config: Path | None):
    from maebench.runspec import RunSpec
    from maebench.tasks.table import TASKS
    return RunSpec(TASKS["finetune"], backbone=backbone, data=str(world / "classification"), seed=seed,
                   out=str(out), results=str(out / "results.sqlite"), config_file=str(config) if config else None,
                   options={"labels_per_class": 100, "label_fraction": None}, search=True,
                   search_space=SPACE, search_budget=1000.0)


def curves(backbone: str, world: Path, seed: int, work: Path) -> dict:
    """The exhaustive grid with every epoch scored: {points, curves: [{epoch: top-1}], epochs, holdout, wall_s}."""
    from maebench import runner, search
    cfg = work / "exhaustive.yaml"
    cfg.write_text("search:\n  pruner: none\n")
    every = search.Settings.rungs
    search.Settings.rungs = lambda self, epochs: list(range(1, epochs))    # score every epoch, stop none
    try:
        t0 = time.perf_counter()
        _final, rec = search.search_trained(_spec(backbone, world, seed, work / f"exhaustive-s{seed}", cfg),
                                            runner.run_recipe)
    finally:
        search.Settings.rungs = every
    return {"points": [t["params"] for t in rec["trials"]], "holdout": rec["holdout"],
            "curves": [{int(e): v for e, v in t["scores"].items()} for t in rec["trials"]],
            "epochs": max(t["epochs"] for t in rec["trials"]), "wall_s": time.perf_counter() - t0,
            "cost": rec["cost"], "chosen": rec["chosen"], "score": rec["score"]}


def replay(grid: dict, overrides: dict, base: dict) -> dict:
    """Where each trial would stop under a pruner: Optuna's own, fed the recorded curves."""
    import optuna

    from maebench import search
    block = {**base, **overrides}
    s = search.Settings("finetune", grid["holdout"], 1000.0, block["reduction_factor"], block["min_epochs"],
                        {}, block.get("pruner", "halving"))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", pruner=s.optuna_pruner())
    epochs, fit = grid["epochs"], 1.0 - grid["holdout"]
    trials = []
    for point, curve in zip(grid["points"], grid["curves"]):
        trial = study.ask()
        stopped = None
        for e in s.rungs(epochs):
            trial.report(curve[e], e)
            if trial.should_prune():
                stopped = e
                break
        if stopped is None:
            trial.report(curve[epochs], epochs)
            study.tell(trial, curve[epochs])
            trials.append({"params": point, "epochs": epochs, "score": curve[epochs], "state": "complete"})
        else:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            trials.append({"params": point, "epochs": stopped, "score": curve[stopped], "state": "pruned"})
    done = [t for t in trials if t["state"] == "complete"]
    best = max(done, key=lambda t: t["score"])
    return {"cost": sum(t["epochs"] for t in trials) / epochs * fit, "chosen": best["params"], "score": best["score"],
            "pruned": len(trials) - len(done)}


def one_seed(backbone: str, world: Path, seed: int, work: Path) -> dict:
    from maebench import config, runner, search
    grid = curves(backbone, world, seed, work)
    base = config.search_block("finetune", arch="vit-micro")
    finals = grid["curves"]
    best = max(range(len(finals)), key=lambda i: (finals[i][grid["epochs"]], -i))
    out = {"grid": grid, "exhaustive": {"chosen": grid["points"][best], "score": finals[best][grid["epochs"]],
                                        "cost": grid["cost"]},
           "replays": {label: replay(grid, o, base) for label, o in PRUNERS}}
    t0 = time.perf_counter()                     # the protocol's search for real: the replay's check
    final, rec = search.search_trained(_spec(backbone, world, seed, work / f"protocol-s{seed}", None), runner.run_recipe)
    out["real"] = {"wall_s": time.perf_counter() - t0, "cost": rec["cost"], "chosen": rec["chosen"]}
    out["protocol"] = next(label for label, o in PRUNERS                  # the protocol's pruner among them
                           if all(base.get(k, "halving" if k == "pruner" else None) == v for k, v in o.items()))
    protocol = out["replays"][out["protocol"]]
    out["replay_exact"] = (abs(protocol["cost"] - rec["cost"]) < 1e-3 and protocol["chosen"] == rec["chosen"])
    t0 = time.perf_counter()                     # one full run: the chosen point on all the training data
    (o,) = [runner.run_recipe(final, r) for r in final.program.recipes()(final)]
    out["full_run_s"], out["final_top1"] = time.perf_counter() - t0, o.metrics["top1"]
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
    p.add_argument("--from-json", metavar="FILE", help="measure nothing: render an earlier --json measurement")
    p.add_argument("--report", metavar="FILE", help="write (or replace) this benchmark's section of a report")
    a = p.parse_args()
    if a.from_json:
        r = json.loads(Path(a.from_json).read_text())
    else:
        r = measure(a)
        if a.json:
            Path(a.json).write_text(json.dumps(r, indent=1, default=str))
    print(markdown(r))
    if a.report:
        write_section(Path(a.report), r)
    return 0


def measure(a) -> dict:
    import datetime
    import platform
    import shlex

    import torch
    started = datetime.datetime.now(datetime.timezone.utc)
    work = Path(tempfile.mkdtemp(prefix="search-cost-"))
    if not os.environ.get("MAEBENCH_HOME"):
        os.environ["MAEBENCH_HOME"] = str(work / "home")
    world, backbone = (Path(a.world), a.backbone) if a.world and a.backbone else prepare(work)
    t0 = time.perf_counter()
    seeds = {int(s): one_seed(backbone, world, int(s), work) for s in a.seeds.split(",")}
    return {"command": "python benchmarks/search_cost.py " + " ".join(shlex.quote(x) for x in sys.argv[1:]),
            "started": f"{started:%Y-%m-%d %H:%M} UTC", "wall_s": time.perf_counter() - t0, "space": list(SPACE),
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
            "torch_threads": torch.get_num_threads(), "seeds": seeds}


def _fmt(c: dict) -> str:
    return ", ".join(f"{k} {v:g}" for k, v in c.items() if k != "global_pool")


def markdown(r: dict) -> str:
    seeds = r["seeds"]
    lines = ["| pruner (replayed on the recorded curves) | cost per seed (full runs) | same winner as the exhaustive grid |",
             "|---|---|---|"]
    for label, _ in PRUNERS:
        got = [seeds[s]["replays"][label] for s in seeds]
        same = [g["chosen"] == seeds[s]["exhaustive"]["chosen"] for g, s in zip(got, seeds)]
        costs = " / ".join(f"{g['cost']:.2f}" for g in got)
        verdicts = ", ".join("yes" if x else "no" for x in same)
        lines.append(f"| {label} | {costs} | {sum(same)} of {len(same)} ({verdicts}) |")
    exhaustive = " / ".join(f"{seeds[s]['exhaustive']['cost']:.2f}" for s in seeds)
    lines.append(f"| exhaustive grid | {exhaustive} | - |")
    per_seed = ["", "| seed | exhaustive winner (held-out top-1) | the protocol's pruner then | its search, run: cost, "
                "winner | replay exact | one full run s | final top-1 |", "|---|---|---|---|---|---|---|"]
    for s, v in seeds.items():
        e, real = v["exhaustive"], v["real"]
        per_seed.append(f"| {s} | {_fmt(e['chosen'])} ({e['score']:.1f}) | {v['protocol']} | "
                        f"{real['cost']:.2f}, {_fmt(real['chosen'])} | "
                        f"{'yes' if v['replay_exact'] else 'NO'} | {v['full_run_s']:.0f} | {v['final_top1']:.1f} |")
    curves = ["", "Held-out top-1 after epochs 1 / 3 / 6 / 10 (the recorded curves):", "",
              "| seed | point | " + " | ".join(f"epoch {e}" for e in (1, 3, 6, 10)) + " |",
              "|---|---|" + "---|" * 4]
    for s, v in seeds.items():
        for point, c in zip(v["grid"]["points"], v["grid"]["curves"]):
            c = {int(k): x for k, x in c.items()}
            curves.append(f"| {s} | {_fmt(point)} | " + " | ".join(f"{c[e]:.1f}" for e in (1, 3, 6, 10)) + " |")
    return "\n".join(lines + per_seed + curves)


def write_section(path: Path, r: dict) -> None:
    """SECTION of `path`, replaced (up to the next `## ` heading) or appended."""
    intro = " ".join(__doc__.split("\n\n")[1:4]).replace("\n", " ")
    body = (f"Measured by `{r['command']}`, started {r['started']}, {r['wall_s'] / 60:.0f} min, "
            f"{r.get('machine', '')}, {r['torch_threads']} torch threads. {intro}\n\n"
            f"{markdown(r)}\n\n{r.get('note', '')}\n")
    from benchmarks.md_tables import write_section as write_md_section
    write_md_section(path, SECTION, body)


if __name__ == "__main__":
    raise SystemExit(main())
