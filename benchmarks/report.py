"""Markdown for benchmarks/REPORT.md from run_all.py's measurements (no measuring here): the
document, the summary and the sections on training steps; the sections on the demo's stages
come from report_stages.py."""
from __future__ import annotations

from benchmarks import report_stages
from benchmarks.md_tables import pct, table

THROUGHPUT = ("Throughput, everywhere in maebench (the results row's images_per_s, the progress line, the "
              "leaderboard's cost table, this report): images per second of optimizer steps, forward + backward + "
              "optimizer, evaluation and feature extraction excluded (maebench/progress.py); a task without "
              "optimizer steps (k-NN) has none. Every MFU / \"% of peak\" is against a matmul peak measured in "
              "the same run.")


def _threads(res) -> list[str]:
    rows = res.get("threads")
    if not rows:
        return []
    base = next((r["step_s"] for r in rows if r.get("step_s") and r["threads"] == 1), None)
    body = []
    for r in rows:
        if r.get("step_s"):
            body.append([r["config"], f"{r['step_s']:.2f}", f"{r['step_s'] / base:.1f}x" if base else "",
                         f"{r['matmul_peak_gflop_s']:.1f}"])
        else:
            body.append([r["config"], r.get("error", "failed"), "", ""])
    return ["## Threads: why this run uses the thread count it does", "",
            "The same MAE train step (see benchmarks/threads.py for the configuration) in fresh processes. "
            "torch's default OpenMP wait policy spins; on a machine whose cores are held by other jobs the "
            "spinning threads wait for a thread that is not running.", "",
            table(["configuration", "s/step (median)", "vs 1 thread", "matmul peak GFLOP/s (same process)"], body), ""]


def _table2(res, peak) -> list[str]:
    rows = res["table2"]
    r0 = rows[0]
    body = [[r["encoder"], r["decoder_depth"], r["encoder_tokens"], f"{r['gflop_per_step']:.1f}",
             f"{r['flop_ratio']:.2f}x", f"{r['step_s']:.2f}", f"{r.get('optimizer_s', 0):.2f}",
             f"{r['images_per_s']:.2f}", f"**{r['speedup']:.2f}x**", f"{r['fwd_bwd_speedup']:.2f}x",
             f"{r['paper_speedup']:.1f}x", pct(r["achieved_gflop_s"] / r["matmul_peak_gflop_s"]), f"{r['peak_mem_mb']:.0f}"]
            for r in rows]
    return ["## 1. MAE Table 2: mask tokens in the encoder, decoder depth", "",
            f"`benchmarks/pretrain_speed.py` `measure()`: {r0['encoder'].split(' ')[0]}, {r0['img_size']} px "
            f"(patch 16), batch {r0['batch_size']}, mask 0.75, 512-d decoder, fused AdamW; mean of the timed steps. "
            "The paper's batch is 32 per TPU core (4,096 on 128 cores); a batch of 2 leaves the 50-token encoder's "
            "matmuls too small to run at the 197-token encoder's share of the peak (measured 67 % vs 76 %, "
            "speedups 2.6-2.7x / 3.1-3.6x), a regime the paper's timing is not in. "
            "Speedups against the first row; FLOPs are forward + backward (torch.utils.flop_counter); "
            "% of peak uses forward + backward time, against the matmul peak pretrain_speed measures before and "
            f"after its rows ({r0['matmul_peak_gflop_s']:.1f} GFLOP/s); peak memory is the process's peak RSS "
            "(VmHWM) during the "
            "timed steps. " + ("The three models are built side by side and their forward + backward steps run "
            "in rotating order (A B C, B C A, ...), so a change of the machine's load hits all three alike; each "
            "AdamW step is timed after, one optimizer at a time. " if r0.get("alternating") else "")
            + ("The paper's speedups are ViT-L at 224 px on TPUs, the resolution measured here; the FLOP ratio "
               "is the bound a machine that runs every FLOP at one rate would reach." if r0["img_size"] >= 224 else
               "The paper's speedups are ViT-L at 224 px on TPUs, where the encoder's share of the "
               "work (and so the gain from dropping the masked tokens) is larger than at this small size."), "",
            table(["encoder", "dec. depth", "enc. tokens", "GFLOP/step", "FLOP ratio", "s/step", "AdamW s",
                   "images/s", "speedup", "fwd+bwd speedup", "paper speedup", "% of peak", "peak RSS MB"], body), ""]


def _steps(res, peak, s) -> list[str]:
    rows = res["steps"]
    body = []
    for r in rows:
        t, c = r["timing"], r["cost"]
        body.append([r["name"], r["batch"], f"{t.median_s:.3f} ({t.min_s:.3f})", f"**{r['images_per_s']:.1f}**",
                     f"{t.compute_s:.3f}", f"{t.optimizer_s:.3f}", f"{r['gflop_per_image']:.2f}",
                     f"{r['flop_s'] / 1e9:.1f}", f"**{pct(peak.share(r['flop_s']))}**",
                     f"{c.saved_activation_mb:.0f}",
                     f"{c.state_mb:.0f}", f"{t.rss_growth_mb:.0f}", f"{t.peak_rss_mb:.0f}"])
    lines = ["## 2. Train steps: throughput, FLOPs, share of the matmul peak, memory", "",
             f"One training batch read once through the task's own dataset and transforms, then forward + "
             f"backward + fused AdamW step, {s.steps} timed steps after {s.warmup} warm-up. "
             "GFLOP/image counts forward + backward (torch.utils.flop_counter: matmuls, convolutions, attention); "
             "GFLOP/s and % of peak: FLOPs over the whole fastest timed step (optimizer included, as in the engine's "
             "progress line), against the best matmul-peak sample of the run: both are the machine at its least "
             "disturbed. "
             "Memory, counted: tensors autograd saved for backward (parameters excluded) and weights + "
             "gradients + AdamW moments; measured: how much the process's resident set grew during the timed steps "
             "(freed heap handed back to the OS first, so it starts from what is live: model, optimizer state, batch) "
             "and its peak (includes the Python/torch runtime, about 0.5-1 GB).", "",
             table(["train step", "batch", "s/step median (fastest)", "images/s (median)", "fwd+bwd s", "AdamW s",
                   "GFLOP/image",
                    "GFLOP/s (fastest)", "% of peak", "saved act. MB", "params+grads+AdamW MB", "step RSS growth MB",
                    "peak RSS MB"], body), "",
             "Settings:", ""]
    lines += [f"- **{r['name']}**: {r['setting']}" for r in rows]
    return lines + [""]


EVAL_NAMES = {"finetune": "classification (ViT + linear head)", "coco": "COCO Mask R-CNN", "ade20k": "ADE20K UperNet"}


def _eval(res, peak) -> list[str]:
    body = []
    for r in res["steps"]:
        e = r.get("eval")
        if not e:
            continue
        body.append([EVAL_NAMES.get(r["key"], r["name"]), e["batch"], f"**{e['images_per_s']:.1f}**",
                     f"{e['gflop_per_image']:.2f}", pct(peak.share(e["flop_s"])),
                     f"{e['end_to_end_images_per_s']:.1f} ({e['end_to_end_images']} images)"])
    return ["## 4. Evaluation throughput (eval mode, no grad)", "",
            "Forward only: the model in eval mode on an in-memory batch of val images (ADE20K: one image per "
            "forward, as its evaluate() feeds them; COCO: detection post-processing and mask pasting included). "
            "End to end: the task's own evaluation function (maebench.classification.evaluate, "
            "maebench.tasks.coco.evaluate.predict + COCOeval, tasks.ade20k.evaluate.evaluate) on the first val images, "
            "0 loader workers: reading, transforms, forward, metrics.", "",
            table(["model", "batch", "forward images/s (median)", "GFLOP/image", "% of peak (fastest)",
                   "end to end images/s"], body), ""]


def _loading(res) -> list[str]:
    step_ips = {r["key"]: r["images_per_s"] for r in res["steps"]}
    consumer = {"classification, pretraining transform": ("mae", "MAE step"),
                "classification, fine-tuning transform": ("finetune", "fine-tuning step"),
                "COCO, LSJ + masks": ("coco", "COCO step"), "ADE20K, train transform": ("ade20k", "ADE20K step")}
    body = []
    for r in res["loading"]:
        key, label = consumer.get(r.reader, (None, ""))
        need = step_ips.get(key)
        body.append([r.reader, r.workers, f"**{r.images_per_s:.0f}**", f"{r.per_worker:.0f}", f"{r.startup_s:.2f}",
                     f"{need:.1f} ({label})" if need else ""])
    return ["## 3. Data loading per worker", "",
            "DataLoader over the embedded generated sets with each task's training transforms at the report's "
            "image size (first batch excluded from the rate; its time is the start-up column). The last column is "
            "what the matching train step consumes (section 2): a loader slower than that would starve it.", "",
            table(["reader + transform", "workers", "images/s", "per worker", "start-up s", "train step needs images/s"],
                  body), ""]


def _official(res, peak) -> list[str]:
    o = res.get("official")
    if not o:
        return ["## 5. Ours vs the official MAE", "",
                "Not measured in this run: pass `--reference-mae DIR` (a facebookresearch/mae checkout).", ""]
    a = o["agreement"]
    body = []
    for k in ("ours", "official"):
        body.append([k, f"{o['median_s'][k]:.2f}", f"{o['min_s'][k]:.2f}", ", ".join(f"{x:.2f}" for x in o["times"][k]),
                     f"**{o['batch_size'] / o['min_s'][k]:.2f}**", f"{o['gflop_per_step'][k]:.0f}",
                     pct(peak.share(o["gflop_per_step"][k] * 1e9 / o["min_s"][k])), f"{o['peak_rss_mb'][k]:.0f}"])
    opt = o["optimizer_s"]
    fused, default = opt["fused"], opt["default (official script)"]
    return ["## 5. Ours vs the official MAE (facebookresearch/mae)", "",
            f"`benchmarks/compare_official_mae.py` against `{o['reference']}` (imported at run time with the "
            f"`np.float` and timm `Block(qk_scale=)` shims; no code copied). Both: {o['arch']}/16 encoder, "
            f"512-d x 8 decoder, norm-pixel loss, {o['img_size']} px, batch {o['batch_size']}, mask "
            f"{o['mask_ratio']}, fp32 on CPU, {o['threads']} thread(s), {o['params_m']:.1f} M trainable "
            "parameters; train step = forward + backward + fused AdamW with the same parameter groups; "
            f"{o['steps']} steps each, alternating (A B, B A, ...)."
            + (f" Ours runs through `torch.compile` (forward + loss, as engine.fit runs a protocol with "
               f"`compile: true`); the official code runs eagerly, as released. Our compile + first step took "
               f"{o['compile_s']:.0f} s, outside the timed steps." if o.get("compile") else ""), "",
            table(["implementation", "s/step (median)", "fastest s/step", "each step s (in order)",
                   "images/s (fastest)", "GFLOP/step", "% of peak (fastest)", "peak RSS MB (process)"], body), "",
            f"**Ratio ours / official images/s: {o['ratio']:.3f}** (median over the {len(o['pair_ratios'])} "
            f"alternating pairs; per pair {', '.join(f'{x:.3f}' for x in o['pair_ratios'])}); fastest step over "
            f"fastest step: {o['ratio_of_min']:.3f}. A step that another job interrupted shows up as one slow "
            "entry in the per-step column; the per-pair median and the fastest steps are not moved by it.", "",
            f"**Numerical agreement** (our state dict loaded into the official model, same {o['batch_size']} "
            f"images, same masking noise; masks equal: {a['masks_equal']}): loss {a['loss_ours']:.7f} vs "
            f"{a['loss_official']:.7f}, |difference| {a['loss_abs_diff']:.1e}; largest gradient difference over "
            f"all parameters {a['grad_max_abs_diff']:.1e} (relative {a['grad_max_rel_diff']:.1e}"
            f"{', ' + a['grad_worst_param'] if a['grad_worst_param'] else ''}); with the raw-pixel target instead "
            f"of norm-pixel the losses differ by {a['loss_pixel_abs_diff']:.1e}.", "",
            f"The official training script (main_pretrain.py) steps `torch.optim.AdamW` with default arguments, "
            f"the per-parameter for-loop implementation on CPU: {default:.3f} s per step on these gradients, "
            f"against {fused:.3f} s fused ({default / fused:.1f}x); with it the official step would take "
            f"{o['min_s']['official'] - fused + default:.2f} s instead of {o['min_s']['official']:.2f} s (fastest steps).",
            "", f"Forward FLOPs of one image at this configuration: encoder {o['split']['encoder_gflop']:.1f} GFLOP "
            f"(visible tokens only), decoder {o['split']['decoder_gflop']:.1f} GFLOP (all tokens).", ""]


def _grid(res) -> list[str]:
    cells, f = res["grid"], res["grid_fit"]
    base = {}
    body = []
    for c in cells:
        b = base.setdefault(c.img_size, c)
        body.append([c.img_size, c.mask_ratio, c.patches, c.visible, f"{c.gflop:.1f}", f"{c.step_s:.3f}",
                     f"{c.step_s / b.step_s:.2f}", f"{c.visible / b.visible:.2f}", f"{c.gflop / b.gflop:.2f}",
                     f"{c.ms_per_visible_token:.2f}",
                     f"{1000 * c.step_s / c.gflop:.1f}"])
    alt = f["r2_alternatives"]
    return ["## 6. MAE step time vs image size and mask ratio", "",
            f"`benchmarks/mae_scaling.py`: {res['grid_arch']} MAE, {res['grid'][0].batch_size} images per step, "
            "norm-pixel, 512-d x 8 decoder, fused AdamW; s/step is the fastest of the timed steps. The encoder "
            "sees K visible patches (+ [cls]), the decoder all L (+ [cls]). Time, K and GFLOP ratios are against "
            "the first mask ratio of the same image size: time falls with K, but less than K does, because the "
            "decoder's work on all L tokens stays.", "",
            table(["img px", "mask", "L patches", "K visible", "GFLOP/step", "s/step", "time ratio", "K ratio",
                   "GFLOP ratio", "ms / visible token", "ms / GFLOP"], body), "",
            f"Least-squares fit over the grid, s/step = a x (visible tokens) + b x (all tokens) + c: "
            f"a = {1000 * f['per_visible_token_s']:.2f} ms per visible token (encoder), "
            f"b = {1000 * f['per_token_decoder_s']:.2f} ms per token (decoder), c = {1000 * f['const_s']:.0f} ms; "
            f"R^2 = {f['r2']:.3f} (visible tokens alone: {alt['visible tokens only']:.3f}; all tokens alone: "
            f"{alt['all tokens only']:.3f}; FLOPs alone: {alt['FLOPs only']:.3f}).", ""]


def _profiles(res) -> list[str]:
    lines = ["## 7. Where the time goes", ""]
    mae = next((r for r in res["steps"] if r["key"] == "mae"), None)
    if mae and "breakdown" in mae:
        b = mae["breakdown"]
        total = sum(b.values())
        lines += ["MAE train step, part by part (median of 2; the backward is split where the gradient reaches "
                  "the encoder's output):", "",
                  table(["part", "s", "share"], [[k, f"{v:.3f}", pct(v / total)] for k, v in b.items()]), ""]
    for r in res["steps"]:
        ops, groups, total_ms = r["profile"]
        lines += [f"**{r['name']}** step, torch.profiler, {total_ms:.0f} ms of op self time: "
                  + "; ".join(f"{k} {pct(v)}" for k, v in groups.items()), "",
                  table(["op", "self ms", "calls", "share"],
                        [[f"`{o.name}`", f"{o.self_ms:.1f}", o.calls, pct(o.share)] for o in ops[:8]]), ""]
    return lines


def slowest_places(res, peak) -> list[str]:
    """The two places this run found slowest, each with the measurement that shows it and what
    would speed it up. Ranked by how much time they cost in the measured runs."""
    out = ["## 8. The two slowest places and what would speed them up", ""]
    items = []
    th = res.get("threads") or []
    one = next((r["step_s"] for r in th if r.get("step_s") and r["threads"] == 1), None)
    two = next((r for r in th if r["config"] == "2 threads"), None)
    passive = next((r for r in th if "PASSIVE" in r["config"]), None)
    if one and two:
        slow = (two["step_s"] / one) if two.get("step_s") else float("inf")
        if slow > 1.5:
            p = f"{passive['step_s'] / one:.1f}x" if passive and passive.get("step_s") else "n/a"
            items.append((0, "**OpenMP spin-waiting on a shared CPU.** With torch's default 2 threads the MAE "
                          f"step took {'over the time limit' if slow == float('inf') else f'{slow:.1f}x'} as long "
                          f"as with 1 thread (section Threads); with `OMP_WAIT_POLICY=PASSIVE` 2 threads took "
                          f"{p}. maebench's training commands and engine.fit leave torch's thread count and wait "
                          "policy as they are, so every run on a busy machine pays this. Fix: start runs with "
                          "`OMP_WAIT_POLICY=PASSIVE` (the CLI could set it before torch loads) or use "
                          "`torch.set_num_threads` no larger than the cores actually free (several test modules "
                          "already pin torch to one thread for this reason)."))
    steps = [r for r in res["steps"]]
    worst = min(steps, key=lambda r: r["flop_s"])
    ops, groups, _ = worst["profile"]
    other = groups.get("other", 0.0)
    top = ", ".join(f"`{o.name}` {pct(o.share)}" for o in ops[:4])
    dense_name = "dense math (matmul, conv, attention)"
    items.append((2, f"**The {worst['name']} step: the lowest share of the matmul peak "
                  f"({pct(peak.share(worst['flop_s']))}, {worst['images_per_s']:.1f} images/s).** Its profile "
                  f"(section 7) spends {pct(groups.get(dense_name, 0))} of op time in dense math and {pct(other)} "
                  f"elsewhere; top ops: {top}. " + _advice(worst)))
    mae = next((r for r in steps if r["key"] == "mae"), None)
    if mae and "breakdown" in mae:
        b = mae["breakdown"]
        dec = b["decoder forward"] + b["decoder backward"]
        enc = b["encoder forward"] + b["encoder backward"]
        total = sum(b.values())
        t2 = res.get("table2") or []
        one_block = next((r for r in t2 if r["decoder_depth"] == 1), None)
        eight = next((r for r in t2 if r["decoder_depth"] == 8 and not r["mask_tokens_in_encoder"]), None)
        gain = (f" Section 1 measures what one decoder block instead of eight gives: "
                f"{eight['step_s'] / one_block['step_s']:.2f}x per step at its settings (paper: 1.3x for ViT-L).") \
            if one_block and eight else ""
        o = res.get("official")
        if o:
            sp = o["split"]
            share = sp["decoder_gflop"] / (sp["encoder_gflop"] + sp["decoder_gflop"])
            gain += (f" At section 5's configuration ({o['arch']}, {o['img_size']} px, mask {o['mask_ratio']}) the "
                     f"decoder is {pct(share)} of the forward FLOPs ({sp['decoder_gflop']:.1f} vs "
                     f"{sp['encoder_gflop']:.1f} GFLOP per image)"
                     + (", so this is not only a small-encoder effect." if share > 0.4 else "."))
        items.append((1 if dec / total > 0.5 else 3, f"**The MAE decoder: {pct(dec / total)} of the MAE step** (encoder "
                      f"{pct(enc / total)}, optimizer {pct(b['optimizer'] / total)}; section 7). The decoder runs on "
                      "all tokens (visible + mask tokens) while the encoder sees a quarter of them, and at "
                      f"{mae['setting'].split(' MAE')[0]} the encoder is narrower than the 512-d x 8 decoder, so the "
                      "decoder dominates. Fix: a decoder sized to the encoder (fewer or narrower blocks: in the paper's "
                      "Table 1a/1b fine-tuning accuracy is flat from depth 1 to 8 and width 128 to 512, while linear "
                      "probing falls with depth)." + gain))
    # fixed order of importance: a configuration that multiplies every step's time, then the core
    # method's own step, then the least efficient transfer step
    items.sort(key=lambda x: x[0])
    for i, (_, text) in enumerate(items[:2], 1):
        out.append(f"{i}. {text}")
    for _, text in items[2:]:
        out += ["", "Also measured, third: " + text]
    return out + [""]


def _advice(row) -> str:
    """What the profile of the least efficient step suggests (from its top ops)."""
    ops = row["profile"][0]
    names = [o.name for o in ops[:6]]
    tips = []
    if any("roi_align" in n for n in names):
        share = sum(o.share for o in ops if "roi_align" in o.name.lower())
        tips.append(f"RoIAlign forward + backward take {pct(share)}: its cost grows with the RoIs sampled per image "
                    "(`model.box_batch_size_per_image`) and with the positives reaching the mask head")
    if any("convolution_backward" in n for n in names):
        share = sum(o.share for o in ops if "convolution" in o.name)
        tips.append(f"the convolutions (neck deconvolutions, FPN, heads) take {pct(share)}, at small channel counts "
                    "where oneDNN runs far below the matmul peak; channels-last inputs or wider, fewer convolutions "
                    "would use it better")
    if any(n in ("aten::mm", "aten::addmm") for n in names):
        share = sum(o.share for o in ops if o.name in ("aten::mm", "aten::addmm"))
        tips.append(f"the ViT's matmuls are {pct(share)} and already near the peak")
    return ("Reading the profile: " + "; ".join(tips) + ".") if tips else \
        "Larger batches per step would raise the dense-math share."


def render(res, *, peak, machine, threads, threads_why, settings, args, started, finished, wall, device) -> str:
    m = machine
    samples = ", ".join(f"{x / 1e9:.1f}" for x in peak.samples)
    lines = [
        "# maebench performance report", "",
        f"Generated by `{args.command}` on {started:%Y-%m-%d %H:%M %Z} "
        f"({(finished - started).total_seconds() / 60:.1f} min). Every number below comes from this one run "
        "on this one machine; re-running prints new numbers (the machine is shared), so compare ratios within "
        "a run, not across runs.", "",
        "## Machine", "",
        f"- CPU: {m['cpu']}, {m['cores']} cores (`os.cpu_count()`); device: {device}",
        f"- torch {m['torch']}, timm {m['timm']}, Python {m['python']}",
        f"- torch threads: **{threads}** ({threads_why})",
        f"- load average (1, 5, 15 min) at the start: {', '.join(f'{x:.1f}' for x in m['load'])}; at the end: "
        f"{', '.join(f'{x:.1f}' for x in m['load_end'])} "
        f"({'other jobs on the same cores' if m['load'][0] >= 1 else 'this run alone: its own threads'})",
        f"- **fp32 matmul peak** (maebench.flops.matmul_peak, 1024 x 1024, {threads} thread(s)), sampled before "
        f"and after the measurements: best **{peak.best / 1e9:.1f} GFLOP/s**, samples in order {samples} GFLOP/s "
        "(the spread: other jobs, or this run's own processes, taking a core). Every \"% of peak\" below (except Table 2's, which "
        "pretrain_speed computes itself) sets a workload's fastest step against the best sample.", "",
        "Section wall times: " + ", ".join(f"{k} {v:.0f} s" for k, v in wall.items()) + ".", "",
    ]
    lines += _summary(res, peak)
    lines += _threads(res)
    lines += _table2(res, peak)
    lines += _steps(res, peak, settings)
    lines += _loading(res)
    cmds = res.get("commands", {})
    lines += report_stages.loader_section(res.get("loader"), cmds.get("loader", ""))
    lines += report_stages.compile_section(res.get("compile"), cmds.get("compile", ""))
    lines += report_stages.row_section(res.get("row"), cmds.get("row", ""))
    lines += report_stages.lanes_section(res.get("lanes"), cmds.get("lanes", ""))
    lines += _eval(res, peak)
    lines += _official(res, peak)
    lines += _grid(res)
    lines += _profiles(res)
    lines += slowest_places(res, peak)
    lines += ["## Method notes", "",
              "- On a shared machine one step often loses its core to another job: train and eval steps report the "
              "median of the timed steps; the official comparison alternates the two implementations and takes the "
              "median of per-pair ratios; the size x ratio grid, whose cells differ little, uses the fastest step.",
              "- Memory \"peak RSS\" is the process's high-water mark (Linux VmHWM, reset before each measurement); "
              "on a GPU the CUDA allocator's peak would be reported instead.",
              "- FLOPs: torch.utils.flop_counter counts matmuls, convolutions and SDPA (forward + backward); "
              "RoIAlign, NMS, normalisation and elementwise work are not counted, so for the detection and "
              "segmentation steps the \"% of peak\" understates how busy the CPU was.",
              "- Models are random-init (`scratch-*` catalogue entries): speed does not depend on the weights "
              "(detection post-processing does a little: an untrained Mask R-CNN keeps many low-score boxes).",
              "- No timed assertion exists in the tests; this report is the only place these numbers live.",
              "- " + THROUGHPUT, ""]
    return "\n".join(lines)


def _summary(res, peak) -> list[str]:
    out = ["## Key numbers", ""]
    t2 = res.get("table2") or []
    if t2:
        out.append("- Table 2 speedups (" + t2[0]["encoder"].split(" ")[0] + f", {t2[0]['img_size']} px): "
                   + "; ".join(f"{r['encoder']}, {r['decoder_depth']}-block decoder {r['speedup']:.2f}x "
                               f"(FLOP ratio {r['flop_ratio']:.2f}x, paper {r['paper_speedup']:.1f}x)" for r in t2))
    out.append("- Train-step share of the matmul peak: " + "; ".join(
        f"{r['name']} {pct(peak.share(r['flop_s']))} ({r['images_per_s']:.1f} images/s)" for r in res["steps"]))
    o = res.get("official")
    if o:
        a = o["agreement"]
        out.append(f"- Ours{' (compiled)' if o.get('compile') else ''} / official MAE images/s: **{o['ratio']:.3f}** ({o['arch']}, {o['img_size']} px, batch "
                   f"{o['batch_size']}); losses {a['loss_ours']:.6f} vs {a['loss_official']:.6f} "
                   f"(|diff| {a['loss_abs_diff']:.1e}), max gradient difference {a['grad_max_abs_diff']:.1e}")
    per = {}
    for r in res["loading"]:
        per.setdefault(r.reader, []).append(f"{r.workers}w {r.per_worker:.0f}")
    out.append("- Data loading, images/s per worker: " + "; ".join(f"{k}: {', '.join(v)}" for k, v in per.items()))
    out += report_stages.summary_lines(res)
    f = res.get("grid_fit")
    if f:
        out.append(f"- MAE step time over the size x ratio grid: fit on visible + all tokens R^2 {f['r2']:.3f}, "
                   f"visible tokens alone {f['r2_alternatives']['visible tokens only']:.3f}")
    return out + [""]

