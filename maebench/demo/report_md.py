"""The demo's report, read from its results store: one table of every backbone x stage (mean ±
std over seeds, by the leaderboard's Summary; "left out for time" where a stage did not run; a
cell marked † where the leaderboard marks it, by the one rule of leaderboards/label_mark.py) and
a short summary of the signal as measured.
Also the one-line result printed as each stage ends, and the rows a rerun stage supersedes."""
from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

from maebench.leaderboards import families, label_mark
from maebench.leaderboards.compare import Summary
from maebench.results import newest_done

LABELS = {"mae-norm-pixel": "MAE norm-pixel", "mae-pixel": "MAE pixel", "mocov3": "MoCo v3",
          "supervised": "supervised", "scratch": "scratch"}
# report columns: (header, task, metric, partial K or None)
COLUMNS = (("fine-tune top-1 (100/class)", "finetune", "top1", None),
           ("partial K=0", "partial", "top1", "0"), ("K=0.5", "partial", "top1", "0.5"),
           ("K=1", "partial", "top1", "1"), ("K=2", "partial", "top1", "2"),
           ("linear top-1", "linprobe", "top1", None), ("k-NN top-1", "knn", "top1", None),
           ("APbox", "coco", "bbox/AP", None), ("APmask", "coco", "segm/AP", None),
           ("mIoU", "ade20k", "mIoU", None))


def _rows(results: Path):
    from maebench.results import ResultsStore
    return ResultsStore(results).rows(status="done")


def newest_summary(results: Path, task: str | None = None, backbone: str | None = None,
                   seed: int | None = None, blocks: str | None = None) -> str:
    """The headline metrics of the newest finished row of this task and backbone (and seed and
    partial K, when given: stages of the same backbone may finish side by side)."""
    rows = [r for r in _rows(results) if (task is None or r.task in (task, f"pretrain-{task}"))
            and (backbone is None or r.backbone == backbone)
            and (seed is None or (r.seed or 0) == seed)
            and (blocks is None or _blocks(r.config.get("blocks")) == blocks)]
    if not rows:
        return "no result row"
    row = max(rows, key=lambda r: r.created)
    shown = {k: v for k, v in row.metrics.items() if isinstance(v, (int, float))}
    keys = [k for k in ("top1", "bbox/AP", "segm/AP", "mIoU", "loss") if k in shown] or list(shown)[:3]
    return ", ".join(f"{k} {shown[k]:.2f}" for k in keys)


def _blocks(value) -> str | None:
    if value is None:
        return None
    f = float(value)
    return str(int(f)) if f.is_integer() else str(f)


def _stage_key(r) -> tuple:
    """What one demo stage measures: (backbone, dataset, task, partial K, seed, probe variant). A
    newer row with the same key is the stage's rerun and replaces the older one."""
    return (r.backbone, r.dataset, r.task, _blocks(r.config.get("blocks")) if r.task == "partial" else None, r.seed or 0,
            _variant(r))


def superseded(results: Path) -> list[str]:
    """Run ids of finished rows that a newer row of the same stage with another recipe replaces
    (a stage rerun because its protocol file changed), so that the demo's leaderboard does not
    pool two recipes in one cell."""
    rows = _rows(results)
    newest = {_stage_key(r): r for r in newest_done(rows, key=_stage_key)}
    return [r.run_id for r in rows if newest[_stage_key(r)].config_hash != r.config_hash]


def marked(results: Path, names: dict[str, str]) -> set[tuple[str, str]]:
    """(backbone key, task) pairs whose cells carry the † mark: the leaderboard's rule
    (leaderboards/label_mark.py) applied to the backbone's rows (its recorded family, the dataset
    of its pretraining rows) and each task's rows."""
    by_name = {v: k for k, v in names.items()}
    rows = [r for r in _rows(results) if r.backbone in by_name]
    out = set()
    for name, key in by_name.items():
        own = [r for r in rows if r.backbone == name]
        family = families.lookup(name, [r.config for r in own]).family
        pretrained_on = label_mark.pretraining_datasets(own)
        out |= {(key, r.task) for r in own if label_mark.seen_all_labels(family, r.task, r.dataset, pretrained_on)}
    return out


def collect(results: Path, names: dict[str, str]) -> tuple[dict, dict]:
    """({(backbone key, task, metric, K): [values, one per seed]}, {backbone key: pretraining s})."""
    by_name = {v: k for k, v in names.items()}
    rows = [r for r in _rows(results) if r.backbone in by_name]
    pretrain_s = {by_name[r.backbone]: r.wall_time_s or 0.0 for r in rows if r.task.startswith("pretrain-")}
    # a rerun of a stage replaces its older row
    newest = newest_done((r for r in rows if not r.task.startswith("pretrain-")), key=_stage_key)
    # partial K=0 writes a single-lr linprobe row of its own: the linear column shows one protocol,
    # the linear-probe stage's (the variant run for the most backbones)
    lin = _linear_variant(r for r in newest if r.task == "linprobe")
    cells: dict[tuple, list[float]] = {}
    for r in newest:
        key, (_name, _dataset, task, k, _seed, variant) = by_name[r.backbone], _stage_key(r)
        if task == "linprobe" and variant != lin:
            continue
        for _h, t, metric, col_k in COLUMNS:
            if t == task and col_k == k and isinstance(r.metrics.get(metric), (int, float)):
                cells.setdefault((key, task, metric, k), []).append(float(r.metrics[metric]))
    return cells, pretrain_s


def _mean(values):
    return Summary(values).mean if values else None


def _cell(values) -> str:
    if not values:
        return ""
    s = Summary(values)
    return f"{s.mean:.1f}" if s.std is None else f"{s.mean:.1f} ± {s.std:.1f}"


@dataclass
class Report:
    text: str
    summary_text: str


def _variant(r) -> tuple[str, str]:
    """(protocol, label budget) of a row, by the leaderboard's rules: ('sweep', 'N=1000')."""
    from maebench.leaderboards.columns import labels_of, protocol_of
    return protocol_of(r.task, r.config), labels_of(r.config)


def _linear_variant(rows) -> tuple[str, str] | None:
    """The linear probe's variant run for the most backbones (the swept one on a tie)."""
    backbones: dict[tuple, set] = {}
    for r in rows:
        backbones.setdefault(_variant(r), set()).add(r.backbone)
    return max(backbones, key=lambda v: (len(backbones[v]), v[0] == "sweep")) if backbones else None


def protocols(results: Path, names: dict[str, str]) -> dict[str, str]:
    """Task -> how the demo's runs of it shown in the report were measured, read from their
    configs with the leaderboard's rules: 'swept, 1000/class' (linear probe), '1000/class' (k-NN)."""
    rows = [r for r in _rows(results) if r.backbone in names.values() and r.task in ("finetune", "linprobe", "knn")]
    lin = _linear_variant(r for r in rows if r.task == "linprobe")
    seen: dict[str, set] = {}
    for r in rows:
        if r.task != "linprobe" or _variant(r) == lin:
            seen.setdefault(r.task, set()).add(_variant(r))
    out = {}
    for task, found in seen.items():
        words = []
        for p, lab in sorted(found):
            how = {"sweep": "swept", "logreg": "logreg", "searched": "searched",
                   "searched-logreg": "logreg, searched"}.get(p, "single lr" if task == "linprobe" else "")
            n = f"{lab[2:]}/class" if lab.startswith("N=") else f"{lab[2:]} of the labels" if lab else ""
            words.append(", ".join(x for x in (how, n) if x))
        out[task] = "; ".join(w for w in words if w)
    return out


PROTOCOL_NOTE = ("the swept linear probe (`--cached-features` runs the sweep, the linear probe's search: every head of a learning-rate x "
                 "weight-decay x input grid trained on cached features, the best on a held-out 10 % of the training "
                 "labels retrained on all of them and scored once), not the paper's single-lr protocol "
                 "(`maebench run --task linprobe --cached-features --no-sweep`); nothing here is compared with the "
                 "paper's numbers: the fashion world is not its dataset.")


def table(cells: dict, pretrain_s: dict, left_out: list[tuple[str, str]], keys: list[str],
          how: dict[str, str] | None = None, seen: set[tuple[str, str]] = frozenset()) -> str:
    """`how`: task -> what its runs measured (protocols()), named in the column header; `seen`:
    the (backbone key, task) cells marked † (marked())."""
    how = how or {}
    head = ["backbone", "pretraining", *(f"{h.split(' (')[0]} ({how[t]})" if how.get(t) else h
                                         for h, t, *_ in COLUMNS)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key in keys:
        row = [LABELS[key], f"{pretrain_s[key] / 60:.1f} min" if key in pretrain_s else "none (random init)"]
        for _h, task, metric, k in COLUMNS:
            text = _cell(cells.get((key, task, metric, k)))
            if not text:
                if (task, key) in left_out:
                    text = "left out for time"
                elif task == "partial":
                    text = "n/a ‡"
                else:
                    text = "missing"
            elif (key, task) in seen:
                text += f" {label_mark.MARK}"
            row.append(text)
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def summary(cells: dict, seeds: list[int], seen: set[tuple[str, str]] = frozenset()) -> list[str]:
    """The measured signal in a few sentences; every comparison states what was measured; `seen`:
    the (backbone key, task) results marked † (marked())."""
    def m(key, task, metric="top1", k=None):
        return _mean(cells.get((key, task, metric, k), []))

    out = []
    mae, scr = m("mae-norm-pixel", "finetune"), m("scratch", "finetune")
    if mae is not None and scr is not None:
        out.append(f"Low-label fine-tuning (100 labels/class): MAE norm-pixel {mae:.1f} vs scratch {scr:.1f} top-1, "
                   f"{mae - scr:+.1f} points (target >= +15: {'met' if mae - scr >= 15 else 'NOT met'}).")
    for task, metric, what in (("coco", "bbox/AP", "APbox"), ("coco", "segm/AP", "APmask"), ("ade20k", "mIoU", "mIoU")):
        a, s = m("mae-norm-pixel", task, metric), m("scratch", task, metric)
        sup = m("supervised", task, metric)
        if a is not None and s is not None:
            digits = 1 if f"{a:.1f}" != f"{s:.1f}" else 2       # a lead that one decimal hides is shown
            extra = f", supervised {sup:.{digits}f}" if sup is not None else ""
            out.append(f"{what}: MAE norm-pixel {a:.{digits}f} vs scratch {s:.{digits}f}{extra} "
                       f"({'MAE above scratch by ' + format(a - s, f'.{digits}f') if a > s else 'MAE NOT above scratch'}).")
    for key in ("mae-norm-pixel", "mocov3"):
        curve = [(k, m(key, "partial", k=k)) for k in ("0", "0.5", "1", "2")] + [("all", m(key, "finetune"))]
        if any(v is not None for _k, v in curve):
            probe, tuned = curve[0][1], [v for k, v in curve[1:-1] if v is not None]
            dip = "" if probe is None or not tuned else (
                f"; tuning the last blocks {'dips below' if min(tuned) < probe else 'stays at or above'} "
                f"its linear probe (lowest K>0: {min(tuned):.1f} vs K=0 {probe:.1f})")
            out.append(f"Partial fine-tuning, {LABELS[key]}: " + ", ".join(
                f"K={k} {v:.1f}" for k, v in curve if v is not None) + f" (K=all = the fine-tuning run){dip}.")
    for task, what in (("linprobe", "Linear probe"), ("knn", "k-NN"), ("finetune", "Fine-tuning")):
        scored = sorted(((m(k, task), k) for k in LABELS if m(k, task) is not None), reverse=True)
        if scored:
            out.append(f"{what} ordering as measured: " + " > ".join(
                f"{LABELS[k]}{f' {label_mark.MARK}' if (k, task) in seen else ''} {v:.1f}" for v, k in scored) + ".")
    lp = {k: m(k, "linprobe") for k in ("mae-norm-pixel", "mocov3")}
    ft = {k: m(k, "finetune") for k in ("mae-norm-pixel", "mocov3")}
    if None not in (*lp.values(), *ft.values()):
        out.append("The paper's pattern (MoCo v3 ahead of MAE in linear probing, behind after fine-tuning): "
                   f"linear probe MoCo v3 {'ahead' if lp['mocov3'] > lp['mae-norm-pixel'] else 'behind'}, "
                   f"fine-tuning MoCo v3 {'ahead' if ft['mocov3'] > ft['mae-norm-pixel'] else 'behind'} here.")
    n = f"mean of {len(seeds)} seeds ({','.join(map(str, seeds))})" if len(seeds) > 1 else f"seed {seeds[0]}"
    out.append(f"Transfer numbers: {n}" + (f"; {label_mark.MARK} = pretrained on all 60k training labels." if seen
                                           else "."))
    return out


def write_report(root: Path, results: Path, *, command: str, quick: bool, seeds: list[int],
                 left_out: list[tuple[str, str]], names: dict[str, str], seconds: float | None,
                 load: tuple, estimates: dict, mae_epochs: int | None = None, search: bool = False) -> Report:
    cells, pretrain_s = collect(results, names)
    seen = marked(results, names)
    runs = _rows(results)
    how = protocols(results, names)
    summary_lines = summary(cells, seeds, seen)
    if how.get("linprobe", "").startswith(("swept", "searched")):
        summary_lines.insert(-1, f"Linear probe: {PROTOCOL_NOTE}")
    keys = list(names)
    machine = f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.system()} {platform.release()}"
    scale = ("the reduced fashion world (--quick: 1,000 training images, 1-2 epochs per stage; a smoke test, "
             "not a measurement)" if quick else
             "the fashion world (60k Fashion-MNIST training images, 64 px canvases for COCO and ADE20K)")
    text = "\n".join([
        f"# maebench demo: {'quick' if quick else 'full'}{', searched' if search else ''}",
        "",
        f"Produced by `{command}` on {machine}, {time.strftime('%Y-%m-%d %H:%M %Z')}: " + (
            f"{seconds / 60:.1f} min wall time for this invocation (stages finished earlier are reused), "
            f"load average {load[0][0]:.1f} at the start and {load[1][0]:.1f} at the end; "
            if seconds is not None else "report written from the stages finished so far (--report-only); ") +
        f"{len(runs)} runs took {sum(r.wall_time_s or 0 for r in runs) / 60:.1f} min of run wall time.",
        "",
        f"vit-micro backbones on {scale}. Recipes: the `vit-micro` entries of maebench/protocols/*.yaml "
        "(docs/cpu-recipes.md)" + (f"; both MAE backbones pretrained for {mae_epochs} epochs (--mae-epochs) "
                                   "instead of the protocol's" if mae_epochs is not None else "") + "." + (
            " Every transfer result is searched per backbone (`--search`, maebench/search.py): the protocol's "
            "`search:` space chosen on a held-out part of the training data, the choice retrained on all of it "
            "and scored once; `maebench runs show RUN` lists a result's trials." if search else ""),
        "",
        table(cells, pretrain_s, left_out, keys, how, seen),
        "",
        *([f"Linear probe: {PROTOCOL_NOTE}", ""] if how.get("linprobe", "").startswith(("swept", "searched")) else []),
        *([f"{label_mark.MARK} pretrained with all 60k training labels (supervised, on the dataset it is scored on): "
           "not a low-label result."] if seen else []),
        "‡ the partial fine-tuning curve (the paper's Fig. 9) is run for MAE norm-pixel and MoCo v3; "
        "K=0 is the linear-probe protocol on the same 100 labels per class, K=all is the fine-tuning column.",
        "",
        "## Summary (as measured)",
        "",
        *(f"- {line}" for line in summary_lines),
        "",
        "## MAE reconstructions of held-out test images",
        "",
        "Original, masked (75%), reconstruction, reconstruction with the visible patches pasted back.",
        "",
        "![MAE reconstructions](reconstructions.png)",
        "",
        "The full leaderboard (`maebench leaderboard`): [leaderboard.md](leaderboard.md), "
        "[leaderboard.html](leaderboard.html).",
        ""])
    if left_out:
        text += "\nLeft out for time: " + ", ".join(f"{t} on {LABELS[k]} (about {estimates.get(t, 60):.0f} s each)"
                                                     for t, k in left_out) + "; `maebench demo --all` runs them.\n"
    (root / "report.md").write_text(text)
    summary_text = "Summary (as measured):\n" + "\n".join(f"  - {line}" for line in summary_lines)
    return Report(text, summary_text)
