"""Seed statistics and paired comparisons of two backbones.

Intervals are Student-t 95 % intervals: mean ± t(0.975, n-1) x std / sqrt(n), with the sample
(n-1) standard deviation. With the 3-5 seeds these benchmarks run, a bootstrap over seeds has
too few distinct resamples to mean much; the t interval assumes roughly normal seed noise and
is wide at small n, as it should be. One seed has no interval.

`compare(store, a, b)` (`maebench leaderboard --compare A B`): for every task, dataset and
recipe both backbones were run with, the runs are paired by seed (the newest run per seed), and
the mean of the per-seed differences A − B is given with its t interval (a paired t interval:
seed-to-seed noise shared by both, such as the low-label subset drawn from the seed, cancels).
"""
from __future__ import annotations

import json
import math
import statistics
from collections import defaultdict
from dataclasses import dataclass

from maebench.leaderboards.searched import is_searched

# t(0.975, df) for df = 1..30; beyond, a Cornish-Fisher expansion around the normal quantile
_T975 = (12.706205, 4.302653, 3.182446, 2.776445, 2.570582, 2.446912, 2.364624, 2.306004, 2.262157, 2.228139,
         2.200985, 2.178813, 2.160369, 2.144787, 2.131450, 2.119905, 2.109816, 2.100922, 2.093024, 2.085963,
         2.079614, 2.073873, 2.068658, 2.063899, 2.059539, 2.055529, 2.051831, 2.048407, 2.045230, 2.042272)
INTERVAL = "95% Student-t"

# recipe keys that name a comparison group when they are set (the rest must simply agree); a
# searched run (`search`) groups by its search (space, held-out fraction, budget, pruner), not by
# what it chose or the seed it searched with (recipe_key)
_RECIPE_KEYS = ("search", "sweep", "head", "cached_features", "labels_per_class", "label_fraction", "blocks")
_BACKBONE_KEYS = ("img_size",)      # follow the backbone, not the recipe


def t975(df: int) -> float:
    if df < 1:
        raise ValueError("a t interval needs at least two values")
    if df <= len(_T975):
        return _T975[df - 1]
    z = 1.959964
    return z + (z ** 3 + z) / (4 * df) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * df ** 2)


@dataclass
class Summary:
    values: list[float]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def std(self) -> float | None:
        return statistics.stdev(self.values) if self.n > 1 else None

    @property
    def interval(self) -> tuple[float, float] | None:
        if self.n < 2:
            return None
        half = t975(self.n - 1) * self.std / math.sqrt(self.n)
        return self.mean - half, self.mean + half

    def text(self, signed: bool = False) -> str:
        """'71.20 ± 0.40 [70.21, 72.19] (n=3)'; one value: '71.20 (n=1)'."""
        f = "{:+.2f}" if signed else "{:.2f}"
        out = f.format(self.mean)
        if self.std is not None:
            lo, hi = self.interval
            out += f" ± {self.std:.2f} [{f.format(lo)}, {f.format(hi)}]"
        return out + f" (n={self.n})"

    def as_dict(self) -> dict:
        iv = self.interval
        return {"mean": self.mean, "std": self.std, "n": self.n, "values": list(self.values),
                "ci95": list(iv) if iv else None, "interval": INTERVAL}


def recipe_key(task: str, dataset: str | None, config: dict) -> str:
    """What two runs must share to be compared: task, dataset and config, less the backbone's
    own keys (backbone_*, img_size); for a searched run, less the values its search chose (the
    space's keys) and the search's seed, so that one search setup pairs over seeds and backbones
    whatever each run chose."""
    cfg = {k: v for k, v in config.items() if not k.startswith(("backbone_", "tag_")) and k not in _BACKBONE_KEYS}
    if is_searched(cfg):
        cfg = _without_choice(cfg)
    return json.dumps([task, dataset, cfg], sort_keys=True, default=str)


def _without_choice(cfg: dict) -> dict:
    """A searched config less the values of its space's keys (dotted keys: nested) and its seed."""
    search = {k: v for k, v in cfg["search"].items() if k != "seed"}
    out = {**cfg, "search": search}
    space = search.get("space")
    for key in space if isinstance(space, dict) else ():
        if key in out:
            del out[key]
            continue
        *heads, last = key.split(".")
        node: dict | None = out
        for h in heads:                            # copies the path: the row's config stays as it is
            child = node.get(h)
            if not isinstance(child, dict):
                node = None
                break
            node[h] = node = dict(child)
        if node is not None:
            node.pop(last, None)
    return out


def recipe_label(config: dict) -> str:
    """'searched', 'sweep', 'logreg', 'cached', 'N=10/class', 'F=0.1', 'K=1' or 'protocol'."""
    parts = ["searched"] if is_searched(config) else []
    if config.get("head") == "logreg":
        parts.append("logreg")
    elif config.get("sweep"):
        parts.append("sweep")
    elif config.get("cached_features"):
        parts.append("cached")
    if config.get("blocks") is not None:
        parts.append(f"K={config['blocks']}")
    if config.get("labels_per_class") is not None:
        parts.append(f"N={config['labels_per_class']}/class")
    if config.get("label_fraction") is not None:
        parts.append(f"F={config['label_fraction']}")
    return ", ".join(parts) or "protocol"


def by_seed(rows) -> dict[str, dict[int, object]]:
    """{recipe key: {seed: newest done row}} (rows oldest first, as ResultsStore.rows gives them)."""
    from maebench.results import newest_done
    out: dict[str, dict[int, object]] = defaultdict(dict)
    for r in newest_done(rows):
        out[recipe_key(r.task, r.dataset, r.config)][r.seed or 0] = r
    return out


def compare(store, a: str, b: str, tasks: list[str] | None = None) -> list[dict]:
    """Per task, dataset, recipe and headline metric: A's and B's seed summaries over the shared
    seeds and the paired difference A − B with its interval."""
    from maebench.tasks.table import TASKS
    from maebench.errors import UsageError
    rows = [r for r in store.rows() if r.task in TASKS and (tasks is None or r.task in tasks)]
    have = {r.backbone for r in rows}
    for name in (a, b):
        if name not in have:
            raise UsageError(f"--compare: backbone '{name}' has no finished transfer runs in {store.path}")
    ra = by_seed(r for r in rows if r.backbone == a)
    rb = by_seed(r for r in rows if r.backbone == b)
    out = []
    for key in sorted(set(ra) & set(rb)):
        seeds = sorted(set(ra[key]) & set(rb[key]))
        if not seeds:
            continue
        first = ra[key][seeds[0]]
        for metric in TASKS[first.task].headline:
            va = [ra[key][s].metrics.get(metric) for s in seeds]
            vb = [rb[key][s].metrics.get(metric) for s in seeds]
            if any(not isinstance(v, (int, float)) for v in va + vb):
                continue
            out.append({"task": first.task, "dataset": first.dataset, "recipe": recipe_label(first.config),
                        "metric": metric, "seeds": seeds, "a": Summary(va).as_dict(), "b": Summary(vb).as_dict(),
                        "difference": Summary([x - y for x, y in zip(va, vb)]).as_dict(),
                        "run_ids": {"a": [ra[key][s].run_id for s in seeds], "b": [rb[key][s].run_id for s in seeds]}})
    return out


def _text(d: dict, signed: bool = False) -> str:
    return Summary(d["values"]).text(signed)


def render(results: list[dict], a: str, b: str, fmt: str = "github") -> str:
    """The comparison as a table (github/markdown, csv) or JSON."""
    if fmt == "json":
        return json.dumps({"a": a, "b": b, "interval": INTERVAL, "comparisons": results}, indent=1)
    head = ["task", "dataset", "recipe", "metric", "seeds", f"{a}", f"{b}", f"{a} − {b}"]
    body = [[r["task"], r["dataset"] or "", r["recipe"], r["metric"], ",".join(map(str, r["seeds"])),
             _text(r["a"]), _text(r["b"]), _text(r["difference"], signed=True)] for r in results]
    note = (f"Cells: mean ± sample std [{INTERVAL} interval] (n = shared seeds); the last column is "
            f"the paired difference over the same seeds.")
    if fmt == "csv":
        import csv
        import io
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(head)
        w.writerows(body)
        return buf.getvalue()
    if not body:
        return f"No task, dataset and recipe with runs of both {a} and {b} on a shared seed.\n"
    from tabulate import tabulate
    return tabulate(body, headers=head, tablefmt="github") + "\n\n" + note + "\n"


def compare_text(store, a: str, b: str, *, tasks: list[str] | None, fmt: str | None, out: str | None) -> str:
    """`maebench leaderboard --compare A B` as text: github (markdown, the default), csv or json,
    the format taken from the --out suffix when not given."""
    from pathlib import Path
    from maebench.errors import UsageError
    if fmt is None and out:
        fmt = {".json": "json", ".csv": "csv"}.get(Path(out).suffix.lower(), "github")
    fmt = {"markdown": "github", "terminal": "github", None: "github"}.get(fmt, fmt)
    if fmt not in ("github", "csv", "json"):
        raise UsageError(f"--compare writes github (markdown), csv or json, not {fmt}")
    text = render(compare(store, a, b, tasks), a, b, fmt)
    return text if text.endswith("\n") else text + "\n"
