"""How the number of torch threads, and OpenMP's wait policy, change a train step on this machine.

torch's CPU kernels run in OpenMP parallel regions. By default (GNU OpenMP, active wait
policy) a thread that finishes its share spins waiting for the others; when other processes
hold the cores, the thread it waits for is not running, and a step made of many small
parallel regions (a ViT's layer norms, GELUs, adds) can slow down by an order of magnitude.
Each configuration runs in a fresh process (the wait policy is read once, at start-up):
    1 thread;  2 threads (default policy);  2 threads with OMP_WAIT_POLICY=PASSIVE.

    python benchmarks/threads.py --threads 2       # one configuration, prints JSON
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CONFIGS = [("1 thread", 1, None), ("2 threads", 2, None), ("2 threads, OMP_WAIT_POLICY=PASSIVE", 2, "PASSIVE")]


def one(arch: str, img_size: int, batch_size: int, threads: int, steps: int = 2) -> dict:
    import torch

    from benchmarks import train_steps
    from benchmarks.timing import time_step
    from maebench.flops import matmul_peak

    torch.set_num_threads(threads)
    w = train_steps.mae(arch, img_size, batch_size, torch.device("cpu"))
    t = time_step(w.compute, w.optimizer_step, warmup=1, steps=steps)
    return {"threads": torch.get_num_threads(), "step_s": t.median_s, "times": t.times,
            "matmul_peak_gflop_s": matmul_peak("cpu", seconds=0.5) / 1e9,
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "")}


def measure(arch: str = "vit-tiny", img_size: int = 64, batch_size: int = 4, steps: int = 2,
            timeout: float = 300, log=print) -> list[dict]:
    """Each configuration in a fresh process; a configuration that times out is reported as such."""
    from maebench.errors import first_line

    rows = []
    for label, threads, policy in CONFIGS:
        env = dict(os.environ)
        env.pop("OMP_WAIT_POLICY", None)
        if policy:
            env["OMP_WAIT_POLICY"] = policy
        cmd = [sys.executable, str(Path(__file__).resolve()), "--arch", arch, "--img-size", str(img_size),
               "--batch-size", str(batch_size), "--threads", str(threads), "--steps", str(steps)]
        try:
            out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, check=True)
            row = json.loads(out.stdout.strip().splitlines()[-1])
        except subprocess.TimeoutExpired:
            row = {"threads": threads, "step_s": None, "error": f"over {timeout:.0f} s"}
        except (subprocess.CalledProcessError, ValueError, IndexError) as e:
            row = {"threads": threads, "step_s": None, "error": first_line(e, 200)}
        row["config"] = label
        log(f"  {label}: " + (f"{row['step_s']:.2f} s/step" if row.get("step_s") else row.get("error", "?")))
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default="vit-tiny")
    p.add_argument("--img-size", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=2)
    a = p.parse_args(argv)
    print(json.dumps(one(a.arch, a.img_size, a.batch_size, a.threads, a.steps)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
