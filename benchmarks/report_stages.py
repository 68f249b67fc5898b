"""Markdown for REPORT.md's sections on the demo's stages: compile on/off per stage, the loader
against the step it feeds, the cost of a leaderboard row, the demo's lanes; and their lines of
the summary (no measuring here; run_all.py measures, report.py assembles)."""
from __future__ import annotations

from benchmarks.md_tables import pct, table


def compile_section(rows: list[dict] | None, command: str) -> list[str]:
    if not rows:
        return []
    body = [[r["what"], f"{1e3 * r['eager_s']:.1f}", f"{1e3 * r['compiled_s']:.1f}", f"{r['step_ratio']:.2f}x",
             f"{r['cold_compile_s']:.0f}", f"{r['warm_compile_s']:.0f}", f"{r['eager_total_s']:.0f}",
             f"{r['compiled_total_s']:.0f}", f"**{r['ratio']:.2f}x**", f"{r['ratio_cached']:.2f}x",
             f"**{r['verdict']}**"] for r in rows]
    return ["## Compile: on or off, per stage", "",
            f"`{command}`: each stage's step at the demo's size, eager and `torch.compile`d steps alternating "
            "(median of each); compile time cold (empty inductor cache) and cached (the FX graph cache, which "
            "maebench keeps under $MAEBENCH_HOME/cache/inductor). Over a demo-sized run, compile is on only "
            "where demo steps x eager s/step over (demo steps x compiled s/step + cold compile) is at least "
            "1.1x. The protocols' `compile:` defaults follow this verdict (CPU; the CUDA path is written but "
            "was not run here: no GPU was lent).", "",
            table(["stage (demo size)", "eager ms/step", "compiled ms/step", "step ratio", "cold compile s",
                   "cached compile s", "demo eager s", "demo compiled s", "demo ratio", "demo ratio, cached compile",
                   "compile"], body), ""]


def loader_section(r: dict | None, command: str) -> list[str]:
    if not r:
        return []
    body = [[x["loader"], f"**{x['images_per_s']:.0f}**", f"{r['step_images_per_s']:.0f}",
             f"**{pct(x['share_of_step'])}**"] for x in r["loaders"]]
    return ["## Loader vs the step it feeds (MAE pretraining at the demo's size)", "",
            f"`{command}`: the fashion world's {r['images']} training images (28 px Fashion-MNIST PNGs), the MAE "
            f"pretraining transform at {r['img_size']} px, batches of {r['batch']}, {r['threads']} torch thread(s). "
            "Share of a step = the step's images/s over the loader's: the time spent loading per image, as a "
            "fraction of the step's time per image (the bar: at most 10%). The tensor loader decodes once: "
            f"{r['decode_cold_s']:.1f} s from the PNGs, {r['decode_warm_s']:.1f} s from its cache file on every "
            "later run.", "",
            table(["loader", "loader images/s", "step needs images/s", "share of a step"], body), ""]


def row_section(r: dict | None, command: str) -> list[str]:
    if not r:
        return []
    settings = r["settings"]
    names = {"eager": "eager", "compiled": "compiled (cold cache)",
             "compiled+tensor": "compiled (cached) + tensor loader"}
    body = []
    for row in r["rows"]:
        cells = [row["stage"]]
        for s in settings:
            x = row[s]
            cells.append(f"{x['wall_s']:.1f}" + ("" if x["exit"] == 0 else f" (exit {x['exit']})"))
        cells += [f"{row[s]['images_per_s']:.0f}" if row[s]["images_per_s"] else "-" for s in settings]
        body.append(cells)
    base = r["transfer_totals"][settings[0]]
    body.append(["**transfer suite (all but the pretraining row)**"]
                + [f"**{r['transfer_totals'][s]:.0f}** ({base / r['transfer_totals'][s]:.2f}x)" for s in settings]
                + [""] * len(settings))
    body.append(["**with the MAE pretraining stage**"] + [f"**{r['totals'][s]:.0f}**" for s in settings]
                + [""] * len(settings))
    load = ", ".join(f"{x[0]:.1f}" for x in r["load"])
    return ["## The cost of a leaderboard row", "",
            f"`{command}`: the demo's {'quick ' if r['quick'] else ''}transfer stages for `scratch-vit-micro` "
            "(their literal command lines from maebench/demo/stages.py) and the MAE pretraining stage, each a "
            "fresh `python -m maebench` process, the three settings in rotation per stage; wall seconds per "
            "process (start-up, data, training, evaluation), images/s from the results row (a compiled run's "
            "includes its compile, which happens inside the first optimizer step). The compiled "
            "settings share one inductor cache: the first pays the cold compile of a first run, the second "
            "compiles from the cache. 1-minute load average at the start and end: " + load + ".", "",
            table(["stage"] + [f"{names.get(s, s)} s" for s in settings] + [f"{names.get(s, s)} images/s" for s in settings],
                  body), ""]


def lanes_section(r: dict | None, command: str) -> list[str]:
    if not r:
        return []
    from benchmarks.demo_lanes import table as lanes_table
    return ["## The demo's lanes: two single-thread stages side by side", "",
            f"`{command}`: two runs of the same demo stage (seeds 0 and 1, each a fresh `python -m maebench` "
            "process, after one warm-up run that fills the tensor cache), one after the other with 2 torch threads "
            "each (A, what a sequential demo does), side by side with 1 thread each (B, what `maebench demo` "
            "does on 2 cores), and one after the other with 1 thread (C). Wall seconds for both runs.", "",
            lanes_table(r["rows"]), ""]


def summary_lines(res: dict) -> list[str]:
    out = []
    if res.get("compile"):
        out.append("- Compile per demo stage (demo-sized run, cold compile included): " + "; ".join(
            f"{r['key']} {r['ratio']:.2f}x -> {r['verdict']} (step {r['step_ratio']:.2f}x)" for r in res["compile"]))
    r = res.get("loader")
    if r:
        out.append(f"- Loader vs the MAE vit-micro step ({r['step_images_per_s']:.0f} images/s): " + "; ".join(
            f"{x['loader'].split(' (')[0]} {x['images_per_s']:.0f} images/s = {pct(x['share_of_step'])} of a step"
            for x in r["loaders"]))
    lanes = res.get("lanes")
    if lanes:
        out.append("- Demo lanes (2 stages side by side, 1 thread each) vs one after the other with 2 threads: " + "; ".join(
            f"{r['stage']} {r['lanes_gain']:.2f}x" for r in lanes["rows"]))
    row = res.get("row")
    if row:
        base = row["transfer_totals"][row["settings"][0]]
        out.append("- Transfer suite for one vit-micro backbone (wall s): " + "; ".join(
            f"{s} {row['transfer_totals'][s]:.0f} ({base / row['transfer_totals'][s]:.2f}x)" for s in row["settings"]))
    return out
