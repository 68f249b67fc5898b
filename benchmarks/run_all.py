"""Every maebench performance measurement in one run, written to benchmarks/REPORT.md.

    python benchmarks/run_all.py [--quick] [--reference-mae DIR] [--world DIR] [--out FILE] [--threads N]

Sections (each module's docstring says what exactly it measures and why):
    threads.py               1 vs 2 torch threads, OpenMP wait policy (fresh processes)
    pretrain_speed.py        the MAE paper's Table 2: mask tokens in the encoder or not, 8- vs 1-block decoder
    train_steps.py           train steps of MAE pretraining, fine-tuning, COCO Mask R-CNN, ADE20K UperNet:
                             images/s, FLOPs, share of the matmul peak, memory; and eval throughput
    data_loading.py          DataLoader images/s with 0, 1, 2 workers for each reader + training transform
    compare_official_mae.py  our MAE ViT-B train step against facebookresearch/mae (--reference-mae DIR)
    mae_scaling.py           MAE step time over image size x mask ratio, against visible tokens
    profile_step.py          torch.profiler top ops of each train step; the MAE step part by part
    compile_stages.py        eager vs torch.compile per demo stage, compile time included: the protocols' defaults
    loader_speed.py          DataLoader vs the tensor loader vs the MAE step they feed (the fashion world, --world)
    leaderboard_row.py       the demo's transfer suite for one vit-micro backbone: eager / compiled / + tensor loader
    demo_lanes.py            demo stages one after the other (2 threads) vs side by side (1 thread each)

The machine is shared and its speed moves with other people's jobs, so everything is measured in
one run, every FLOP/s is a share of the fp32 matmul peak measured in this same run (sampled
between measurements; the best sample, i.e. the machine when it was least disturbed, is the
reference, set against each workload's least disturbed, fastest step), and comparisons are
ratios within the run.
No number here is asserted anywhere: the tests never time things.

--quick runs every section at toy sizes (about a minute or two) to check the script works.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

HERE = Path(__file__).resolve().parent


@dataclass
class Settings:
    arch: str = "vit-small"              # train / eval workloads
    img_size: int = 128
    batches: dict = field(default_factory=lambda: {"mae": 8, "finetune": 8, "coco": 2, "ade20k": 4})
    warmup: int = 1
    steps: int = 3
    eval_images: dict = field(default_factory=lambda: {"finetune": 64, "coco": 16, "ade20k": 16})
    # batch 8: the paper's is 32 per TPU core (4,096 on 128); at batch 2 the 50-token encoder's matmuls
    # are too small to run at the 197-token one's share of the peak (67 % vs 76 %, 2026-11-30)
    table2: dict = field(default_factory=lambda: {"arch": "vit-large", "img_size": 224, "batch_size": 8,
                                                  "steps": 2, "warmup": 1, "alternate": True})
    loader_images: dict | None = None    # per reader; None = data_loading's default
    official: dict = field(default_factory=lambda: {"arch": "vit-base", "img_size": 224, "batch_size": 8, "steps": 5,
                                                    "compile": True})
    grid: dict = field(default_factory=lambda: {"arch": "vit-base", "img_sizes": (64, 96, 128),
                                                "ratios": (0.5, 0.75, 0.9), "batch_size": 4, "steps": 3})
    threads_probe: dict = field(default_factory=lambda: {"arch": "vit-tiny", "img_size": 64, "batch_size": 4,
                                                         "steps": 2})
    compile_stages: dict = field(default_factory=lambda: {"stages": ("mae", "finetune", "supervised", "eval"),
                                                          "pairs": 4})
    loader: dict = field(default_factory=lambda: {"batches": 8, "steps": 5})
    row_quick: bool = True               # the demo's quick recipe for the leaderboard-row section
    row_settings: tuple = ("eager", "compiled", "compiled+tensor")


FULL = Settings()
QUICK = replace(
    FULL, arch="vit-tiny", img_size=64, batches={"mae": 4, "finetune": 4, "coco": 2, "ade20k": 2}, warmup=0, steps=1,
    eval_images={"finetune": 8, "coco": 2, "ade20k": 2},
    table2={"arch": "vit-tiny", "img_size": 64, "batch_size": 2, "steps": 1, "warmup": 0, "alternate": True},
    compile_stages={"stages": ("eval",), "pairs": 2}, loader={"batches": 2, "steps": 2}, row_settings=("eager",),
    loader_images={"classification, pretraining transform": 64, "classification, fine-tuning transform": 64,
                   "COCO, LSJ + masks": 8, "ADE20K, train transform": 16},
    official={"arch": "vit-tiny", "img_size": 64, "batch_size": 2, "steps": 1, "compile": True},
    grid={"arch": "vit-tiny", "img_sizes": (32, 64), "ratios": (0.5, 0.75), "batch_size": 2, "steps": 1},
    threads_probe={"arch": "vit-micro", "img_size": 32, "batch_size": 2, "steps": 1})


# ---- the machine ---------------------------------------------------------------------------------
def machine() -> dict:
    cpu = platform.processor() or "?"
    try:
        cpu = next(x.split(":", 1)[1].strip() for x in Path("/proc/cpuinfo").read_text().splitlines()
                   if x.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import timm
    import torch
    return {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__, "timm": timm.__version__,
            "python": platform.python_version(), "load": os.getloadavg()}


def choose_threads(requested: int | None) -> tuple[int, str]:
    """--threads, else the rule every maebench run uses (maebench/dataloaders.py: the physical
    cores, or MAEBENCH_THREADS / OMP_NUM_THREADS), never the machine's load: the same command
    measures the same configuration whatever else runs; the load is recorded beside it."""
    if requested:
        return requested, "--threads"
    from maebench.dataloaders import choose_threads as cores_rule
    return cores_rule(log=lambda _: None), "physical cores (maebench/dataloaders.py), as a run chooses"


# ---- the sections ----------------------------------------------------------------------------------
def run_train_steps(s: Settings, device, peak, log) -> list[dict]:
    """Build each workload, count its cost, time its train step, its eval forward and its task
    evaluation, and profile one step. Returns one dict per workload."""
    import gc

    from benchmarks import profile_step, train_steps
    from benchmarks.timing import count_cost, time_step

    out = []
    for key in ("mae", "finetune", "coco", "ade20k"):
        t0 = time.perf_counter()
        w = train_steps.BUILDERS[key](s.arch, s.img_size, s.batches[key], device)
        log(f"  {w.name}: {w.setting}")
        cost = count_cost(w.compute, w.model)          # also the first (untimed) step
        w.optimizer_step()
        t = time_step(w.compute, w.optimizer_step, warmup=s.warmup, steps=s.steps, device=device)
        ips = w.batch_size / t.median_s
        row = {"key": key, "name": w.name, "setting": w.setting, "batch": w.batch_size, "timing": t, "cost": cost,
               "images_per_s": ips, "gflop_per_image": cost.flops / w.batch_size / 1e9,
               "flop_s": cost.flops / t.min_s}         # the least disturbed step, for the share of the peak
        log(f"    {t.median_s:.2f} s/step, {ips:.1f} images/s, {cost.flops / 1e9:.1f} GFLOP/step")
        row["profile"] = profile_step.profile(w.compute, w.optimizer_step)
        if key == "mae":
            row["breakdown"] = profile_step.mae_breakdown(w.model, w.extra["images"].to(device),
                                                          w.extra["mask_ratio"], w.extra["optimizer"])
        if w.eval_forward is not None:
            from maebench.flops import count_flops
            w.model.zero_grad(set_to_none=True)
            eflops = count_flops(w.eval_forward)
            et = time_step(w.eval_forward, warmup=s.warmup, steps=s.steps, device=device)
            n = s.eval_images[key]
            t_e = time.perf_counter()
            seen = w.evaluate(n)
            e2e = seen / (time.perf_counter() - t_e)
            row["eval"] = {"batch": w.eval_batch_size, "images_per_s": w.eval_batch_size / et.median_s,
                           "gflop_per_image": eflops / w.eval_batch_size / 1e9, "flop_s": eflops / et.min_s,
                           "end_to_end_images_per_s": e2e, "end_to_end_images": seen}
            log(f"    eval: {row['eval']['images_per_s']:.1f} images/s forward, {e2e:.1f} images/s end to end")
        peak.sample()
        row["wall_s"] = time.perf_counter() - t0
        out.append(row)
        del w
        gc.collect()
    return out


def fashion_world(world: str | None, *, quick: bool, log) -> Path:
    """The fashion world (`maebench data prepare fashion`): --world DIR when given, else one made
    now in a temporary directory (the quick sizes of the demo, or the classification split alone)."""
    import subprocess
    import tempfile
    if world:
        return Path(world)
    from maebench import demo
    out = Path(tempfile.mkdtemp(prefix="maebench-world-")) / "fashion"
    extra = demo.QUICK_WORLD if quick else ["--only", "classification"]
    log(f"  preparing the fashion world in {out}")
    subprocess.run([sys.executable, "-m", "maebench", "data", "prepare", "fashion", "--out", str(out), *extra],
                   check=True, stdout=subprocess.DEVNULL)
    return out


def own_run(path: str, flag: str) -> tuple[dict, str]:
    """A section measured by its own run (`--row-json`, `--lanes-json`): its JSON, and the command
    line the report shows for it (with its start time and the flag that read it)."""
    r = json.loads(Path(path).read_text())
    return r, f"{r['command']}` (its own run, started {r['started']}; read by `{flag} {path}"


def run(args: argparse.Namespace) -> str:
    import torch

    s = QUICK if args.quick else FULL
    threads, why = choose_threads(args.threads)
    torch.set_num_threads(threads)
    device = torch.device(args.device)
    from benchmarks.timing import PeakTracker
    peak = PeakTracker(device)
    log = print
    m = machine()
    started = datetime.datetime.now().astimezone()
    t_run = time.perf_counter()
    wall: dict[str, float] = {}

    def section(name):
        log(f"[{time.perf_counter() - t_run:6.0f} s] {name}")
        return time.perf_counter()

    peak.sample()
    res: dict = {}

    t = section("threads and OpenMP wait policy (fresh processes)")
    if device.type == "cpu":
        from benchmarks import threads as threads_mod
        res["threads"] = threads_mod.measure(**s.threads_probe, log=log)
    wall["threads"] = time.perf_counter() - t

    t = section("Table 2 (benchmarks/pretrain_speed.py)")
    from benchmarks import pretrain_speed
    res["table2"] = pretrain_speed.measure(**s.table2, device=args.device, log=lambda x: log("  " + x.strip()))
    peak.samples.append(res["table2"][0]["matmul_peak_gflop_s"] * 1e9)   # its own before/after best
    wall["table2"] = time.perf_counter() - t

    t = section("train steps, evaluation, profiles")
    res["steps"] = run_train_steps(s, device, peak, log)
    wall["steps"] = time.perf_counter() - t

    t = section("data loading")
    from benchmarks import data_loading
    res["loading"] = data_loading.measure(s.img_size, images=s.loader_images, log=log)
    wall["loading"] = time.perf_counter() - t
    peak.sample()

    if args.reference_mae:
        t = section(f"official MAE at {args.reference_mae}")
        from benchmarks import compare_official_mae
        res["official"] = compare_official_mae.compare(args.reference_mae, **s.official, log=log)
        peak.sample()
        wall["official"] = time.perf_counter() - t

    world = fashion_world(args.world, quick=args.quick, log=log)
    t = section("compile on/off per stage (benchmarks/compile_stages.py)")
    from benchmarks import compile_stages
    res["compile"] = compile_stages.measure(**s.compile_stages, device=args.device, log=log)
    wall["compile"] = time.perf_counter() - t

    t = section("loader vs step (benchmarks/loader_speed.py)")
    from benchmarks import loader_speed
    res["loader"] = loader_speed.measure(world / "classification", **s.loader, log=log)
    wall["loader"] = time.perf_counter() - t

    t = section("the cost of a leaderboard row (benchmarks/leaderboard_row.py)")
    from benchmarks import leaderboard_row
    if args.row_json:                  # measured by its own run (its command and start time go with it)
        res["row"], row_command = own_run(args.row_json, "--row-json")
        quick_world = Path(res["row"].get("world", "?"))
    else:
        quick_world = world if args.quick else fashion_world(None, quick=True, log=log)
        res["row"] = leaderboard_row.measure(quick_world, quick=s.row_quick, settings=s.row_settings, log=log)
    res["commands"] = {
        "compile": "python benchmarks/compile_stages.py --stages " + ",".join(s.compile_stages["stages"])
                   + f" --pairs {s.compile_stages['pairs']}",
        "loader": f"python benchmarks/loader_speed.py --data {world / 'classification'} --batches {s.loader['batches']}",
        "row": f"python benchmarks/leaderboard_row.py --world {quick_world} --settings {','.join(s.row_settings)}"
               + ("" if s.row_quick else " --full")}
    if args.row_json:
        res["commands"]["row"] = row_command
    wall["row"] = time.perf_counter() - t
    peak.sample()

    t = section("the demo's lanes (benchmarks/demo_lanes.py)")
    from benchmarks import demo_lanes
    if args.lanes_json:                # measured by its own run
        res["lanes"], res["commands"]["lanes"] = own_run(args.lanes_json, "--lanes-json")
    elif not args.quick:
        res["lanes"] = {"rows": demo_lanes.measure(world, ["finetune", "knn"], log=log)}
        res["commands"]["lanes"] = f"python benchmarks/demo_lanes.py --world {world} --stages finetune,knn"
    wall["lanes"] = time.perf_counter() - t

    t = section("MAE step time over image size x mask ratio")
    from benchmarks import mae_scaling
    g = dict(s.grid)
    res["grid_arch"] = g.pop("arch")
    res["grid"] = mae_scaling.measure(res["grid_arch"], device=device, log=log, **g)
    res["grid_fit"] = mae_scaling.fit(res["grid"])
    wall["grid"] = time.perf_counter() - t
    peak.sample()

    finished = datetime.datetime.now().astimezone()
    m["load_end"] = os.getloadavg()
    from benchmarks.report import render
    return render(res, peak=peak, machine=m, threads=threads, threads_why=why, settings=s, args=args,
                  started=started, finished=finished, wall=wall, device=device)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="toy sizes: checks that every section runs (~1-2 min)")
    p.add_argument("--reference-mae", metavar="DIR", help="a facebookresearch/mae checkout: adds the side-by-side section")
    p.add_argument("--world", metavar="DIR", help="a fashion world (maebench data prepare fashion); default: "
                   "its classification split prepared now in a temporary directory")
    p.add_argument("--row-json", metavar="FILE", help="the leaderboard-row section from `leaderboard_row.py --json "
                   "FILE` (its own run: that section takes 10-30 minutes) instead of measuring it here")
    p.add_argument("--lanes-json", metavar="FILE", help="the demo-lanes section from `demo_lanes.py --json FILE` "
                   "(its own run, about 8 minutes) instead of measuring it here")
    p.add_argument("--out", default=str(HERE / "REPORT.md"), help="report file (default benchmarks/REPORT.md)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: 1 on a busy machine, else torch's)")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda (untested here: no GPU was available)")
    args = p.parse_args(argv)
    given = argv if argv is not None else sys.argv[1:]
    args.command = "python benchmarks/run_all.py " + " ".join(shlex.quote(a) for a in given)
    text = run(args)
    Path(args.out).write_text(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
