"""The cost of a leaderboard row: the demo's whole transfer suite for one vit-micro backbone,
eager vs compiled vs compiled + tensor loader, and the MAE pretraining stage that feeds it.

Every stage is the demo's own command line (maebench/demo/stages.py `_transfer`, the quick
recipe by default: the reduced fashion world and 1-2 epochs per stage; --full: the demo's
recipe) for the random-init `scratch-vit-micro` backbone, run as `python -m maebench ...` in a
fresh process, with `--set compile=...` / `--set tensor_loader=...` where the task's protocol
has the key. Each setting gets its own empty MAEBENCH_HOME (the tensor loader pays its one
decode); the two compiled settings share one inductor cache, empty at the start: the compiled
setting, which runs first, pays the cold compile of a first run, and compiled + tensor loader
compiles from what that left in the cache, as every later run does. Wall seconds per stage are the process's; images/s is the results row's
(images/s of optimizer steps; k-NN takes none). The settings run stage by stage in rotation
(eager, compiled, compiled + tensor, then the next stage) so that the machine's load moves
all three alike.

    python benchmarks/leaderboard_row.py --world DIR [--full] [--settings eager,compiled,compiled+tensor] [--json FILE]
    (--json: the measurement with its command, start time and load, for run_all.py --row-json FILE)
    (DIR: a fashion world, `maebench data prepare fashion --out DIR` [with the demo's quick sizes])
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SETTINGS = {"eager": {"compile": False, "tensor_loader": False},
            "compiled": {"compile": True, "tensor_loader": False},
            "compiled+tensor": {"compile": True, "tensor_loader": True}}
PROTOCOL_OF = {"finetune": "finetune", "partial": "partial", "linprobe": "linprobe", "knn": "knn", "coco": "coco",
               "ade20k": "ade20k", "pretrain": "pretrain_mae"}


def stages(world: Path, quick: bool) -> list[tuple[str, list[str]]]:
    """(label, argv without --results) for the MAE pretraining stage and every transfer stage."""
    from maebench.demo import stages as demo
    from maebench.tasks.table import TASKS
    pre = ["pretrain", "--method", "mae", "--target", "norm-pixel", "--arch", "vit-micro", "--data",
           str(world / "classification"), "--name", "bench-mae", "--seed", "0"]
    if quick:
        pre += ["--epochs", demo.QUICK_EPOCHS["pretrain"]]
    out = [("pretrain mae (vit-micro)", pre)]
    for task in TASKS:
        for k in (demo.PARTIAL_K if task == "partial" else (None,)):
            s = demo._transfer(task, "scratch", k, 0, world, [], quick)
            out.append((s.label.replace(" scratch (seed 0)", ""), s.argv))
    return out


def _keys(protocol: str) -> set[str]:
    from maebench import config
    return set(config.protocol_defaults(protocol))


def run_stage(argv: list[str], setting: dict, home: Path, log_path: Path, inductor: Path) -> dict:
    from maebench.results import ResultsStore
    kind = argv[0] if argv[0] == "pretrain" else argv[argv.index("--task") + 1]
    keys = _keys(PROTOCOL_OF["pretrain" if kind == "pretrain" else kind])
    sets = [x for k, v in setting.items() if k in keys for x in ("--set", f"{k}={str(v).lower()}")]
    results = home / "results.sqlite"
    env = {**os.environ, "MAEBENCH_HOME": str(home), "OMP_WAIT_POLICY": "PASSIVE"}
    env["TORCHINDUCTOR_CACHE_DIR"] = str(inductor)
    t0 = time.perf_counter()
    with open(log_path, "a") as f:
        code = subprocess.call([sys.executable, "-m", "maebench", *argv, *sets, "--results", str(results)],
                               env=env, stdout=f, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - t0
    rows = ResultsStore(results).rows() if results.exists() else []
    ips = rows[-1].images_per_s if rows and code == 0 else None
    return {"wall_s": wall, "images_per_s": ips, "exit": code, "applied": sets}


def measure(world: str | Path, *, quick: bool = True, settings=tuple(SETTINGS), log=print) -> dict:
    world = Path(world)
    homes = {s: Path(tempfile.mkdtemp(prefix=f"maebench-row-{s}-")) for s in settings}
    inductor = Path(tempfile.mkdtemp(prefix="maebench-row-inductor-"))
    log_path = Path(tempfile.mkdtemp(prefix="maebench-row-logs-")) / "stages.log"
    rows = []
    load = [os.getloadavg()]
    for label, argv in stages(world, quick):
        row = {"stage": label, "command": "maebench " + " ".join(argv)}
        for s in settings:
            r = run_stage(argv, SETTINGS[s], homes[s], log_path, inductor)
            row[s] = r
            log(f"  {label} [{s}]: {r['wall_s']:.1f} s" + (f", {r['images_per_s']:.0f} images/s" if r["images_per_s"] else "")
                + ("" if r["exit"] == 0 else f" (exit {r['exit']}, see {log_path})"))
        rows.append(row)
    load.append(os.getloadavg())
    totals = {s: sum(r[s]["wall_s"] for r in rows) for s in settings}
    transfer = {s: sum(r[s]["wall_s"] for r in rows[1:]) for s in settings}
    return {"rows": rows, "totals": totals, "transfer_totals": transfer, "settings": list(settings), "quick": quick,
            "world": str(world),
            "load": load, "log": str(log_path)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--world", required=True, help="a fashion world directory")
    p.add_argument("--full", action="store_true", help="the demo's full recipe (default: its quick recipe)")
    p.add_argument("--settings", default=",".join(SETTINGS))
    p.add_argument("--json", metavar="FILE", help="also write the measurement as JSON")
    a = p.parse_args()
    import datetime
    import json
    import shlex
    started = datetime.datetime.now(datetime.timezone.utc)
    r = measure(a.world, quick=not a.full, settings=a.settings.split(","))
    if a.json:
        r["command"] = "python benchmarks/leaderboard_row.py " + " ".join(shlex.quote(x) for x in sys.argv[1:])
        r["started"] = f"{started:%Y-%m-%d %H:%M} UTC"
        Path(a.json).write_text(json.dumps(r, indent=1))
    for s in r["settings"]:
        print(f"{s}: transfer suite {r['transfer_totals'][s]:.0f} s, with MAE pretraining {r['totals'][s]:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
