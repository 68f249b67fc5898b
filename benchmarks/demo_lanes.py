"""Why `maebench demo` runs two single-thread stages side by side on a 2-core machine.

Two real demo stages (the same `maebench run` command line for two seeds) are timed three ways,
each stage in its own fresh process, all in one run:
    A  one after the other, 2 torch threads each  (what a sequential demo does)
    B  both at once, 1 torch thread each           (the demo's lanes)
    C  one after the other, 1 torch thread each    (how much one process loses without its 2nd thread)
A / B is the wall-time gain of the lanes for that stage kind.

    python benchmarks/demo_lanes.py --world DIR [--json FILE] [--stages finetune,knn]

DIR is a prepared fashion world (`maebench data prepare fashion --out DIR`). The stages run on
the random-init `scratch-vit-micro` with the demo's vit-micro recipes, shortened where noted.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STAGES = {   # name -> (maebench argv after --data DIR, what it is)
    "finetune": (["run", "--task", "finetune", "--backbone", "scratch-vit-micro", "--labels-per-class", "100",
                  "--epochs", "5"], "fine-tuning, 100 labels/class, 5 of the demo's 20 epochs"),
    "knn": (["run", "--task", "knn", "--backbone", "scratch-vit-micro", "--labels-per-class", "1000",
             "--set", "feature_cache=false"], "k-NN, 1000 labels/class: encodes 20k images"),
    "pretrain": (["pretrain", "--method", "mae", "--arch", "vit-micro", "--set", "epochs=1",
                  "--set", "batch_size=256"], "MAE pretraining, one 60k epoch at batch 256"),
}


def _cmd(stage: str, world: Path, seed: int, tmp: Path) -> list[str]:
    argv, _ = STAGES[stage]
    data = world / "classification"
    extra = ["--name", f"lanes-{seed}"] if argv[0] == "pretrain" else []
    return [sys.executable, "-m", "maebench", *argv, "--data", str(data), *extra, "--seed", str(seed),
            "--results", str(tmp / f"r{seed}.sqlite"), "--out", str(tmp / f"run{seed}")] + \
           (["--force"] if argv[0] == "run" else [])


def _launch(cmd: list[str], threads: int, home: Path) -> subprocess.Popen:
    env = {**os.environ, "MAEBENCH_THREADS": str(threads), "MAEBENCH_HOME": str(home)}
    env.pop("OMP_NUM_THREADS", None)
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _wait(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        _, err = p.communicate()
        if p.returncode != 0:
            raise RuntimeError(f"stage failed (exit {p.returncode}): {err.strip().splitlines()[-1:]}")


def measure(world: Path, stages: list[str], log=print) -> list[dict]:
    rows = []
    for stage in stages:
        times = {}
        for mode, threads, together in (("A", 2, False), ("B", 1, True), ("C", 1, False)):
            with tempfile.TemporaryDirectory() as d:
                tmp, home = Path(d), Path(d) / "home"
                warm = _launch(_cmd(stage, world, 99, tmp), 1, home)      # imports, the tensor cache, the registry
                _wait([warm])
                t0 = time.time()
                if together:
                    _wait([_launch(_cmd(stage, world, s, tmp), threads, home) for s in (0, 1)])
                else:
                    for s in (0, 1):
                        _wait([_launch(_cmd(stage, world, s, tmp), threads, home)])
                times[mode] = time.time() - t0
            log(f"  {stage} {mode}: {times[mode]:.1f} s")
        rows.append({"stage": stage, "what": STAGES[stage][1], "sequential_2_threads_s": times["A"],
                     "side_by_side_1_thread_s": times["B"], "sequential_1_thread_s": times["C"],
                     "lanes_gain": times["A"] / times["B"], "second_thread_gain": times["C"] / times["A"],
                     "load": os.getloadavg()})
    return rows


def table(rows: list[dict]) -> str:
    out = ["| stage (2 runs) | A: one after the other, 2 threads s | B: side by side, 1 thread each s | "
           "C: one after the other, 1 thread s | lanes gain A/B | 2nd thread gain C/A |", "|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['what']} | {r['sequential_2_threads_s']:.1f} | {r['side_by_side_1_thread_s']:.1f} | "
                   f"{r['sequential_1_thread_s']:.1f} | **{r['lanes_gain']:.2f}x** | {r['second_thread_gain']:.2f}x |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--world", required=True, type=Path, help="a prepared fashion world")
    p.add_argument("--stages", default="finetune,knn,pretrain")
    p.add_argument("--json", type=Path, help="also write the rows as JSON")
    args = p.parse_args(argv)
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    rows = measure(args.world, args.stages.split(","))
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps({"started": started, "command": " ".join(sys.argv), "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
