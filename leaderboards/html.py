"""The leaderboard as one self-contained HTML page (no server, no external file): the summary,
then one table per task and dataset, then cost, with sticky headers and sortable columns; every
measured cell links to the runs behind it, listed at the end of the page with each run's
effective config; figures embedded as base64 PNG data URIs."""
from __future__ import annotations

import base64
import hashlib
import json
from collections import defaultdict
from html import escape
from pathlib import Path
from typing import Sequence

from maebench.leaderboards.columns import format_blocks
from maebench.leaderboards.html_assets import SCRIPT, STYLE
from maebench.leaderboards.markdown import results_line
from maebench.leaderboards.board import PAPER, Leaderboard
from maebench.leaderboards.view_model import View, group_id
from maebench.leaderboards.views import group_title, views_for
from maebench.results import Row


def _pretrain_id(backbone: str) -> str:
    return "pretrain-" + hashlib.sha1(backbone.encode()).hexdigest()[:10]


def _attr(value: float | None) -> str:
    return "" if value is None else f' data-v="{value!r}"'


def _table(view: View, pretrain_ids: set[str]) -> str:
    heads = "".join(f'<th class="{"num" if num else "text"}">{escape(h)}</th>'
                    for h, num in zip(view.headers, view.numeric))
    bodies = {}
    for row in view.rows:
        label = escape(row.label)
        if row.backbone and _pretrain_id(row.backbone) in pretrain_ids:
            label = f'<a href="#{_pretrain_id(row.backbone)}" title="pretraining runs">{label}</a>'
        tds = [f'<td class="label" title="{escape(row.family)}">{label}</td>']
        for cell, num in zip(row.cells, view.numeric[1:]):
            text = cell.text(lambda s: f"<strong>{escape(s)}</strong>") if cell.best else escape(cell.text())
            if cell.group and row.kind != PAPER:
                text = f'<a href="#{cell.group}">{text}</a>'
            classes = ("num" if num else "text") + (" best" if cell.best else "")
            title = f' title="{escape(cell.title)}"' if cell.title else ""
            tds.append(f'<td class="{classes}"{_attr(cell.value) if num else ""}{title}>{text}</td>')
        bodies.setdefault(row.kind, []).append(f"<tr>{''.join(tds)}</tr>")
    body = f'<tbody class="measured">{"".join(bodies.get("measured", []))}</tbody>'
    if bodies.get(PAPER):
        group = f'<tr class="group"><td colspan="{len(view.headers)}">the MAE paper</td></tr>'
        body += f'<tbody class="paper">{group}{"".join(bodies[PAPER])}</tbody>'
    caption = f'<p class="caption">{escape(" ".join(view.caption))}</p>' if view.caption else ""
    return (f'<section class="table" id="{escape(view.key)}"><h2>{escape(view.title)}</h2>'
            f'<table class="lb"><thead><tr>{heads}</tr></thead>{body}</table>{caption}</section>')


def _run_block(run: Row) -> str:
    shown = {k: v for k, v in run.metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    metrics = ", ".join(f"{k} {v:.2f}" for k, v in list(shown.items())[:6])
    title = f"{run.run_id} · seed {run.seed}" + (f" · {metrics}" if metrics else "")
    config = json.dumps(run.config, indent=2, sort_keys=True, default=str)
    where = f"git {run.git_commit or '?'} · {run.hardware or '?'} · config hash {run.config_hash or '?'}"
    return (f"<details><summary><code>{escape(title)}</code></summary><small>{escape(where)}</small>"
            f"<pre>{escape(config)}</pre></details>")


def _runs_section(board: Leaderboard) -> tuple[str, set[str]]:
    """Every counted run, grouped per backbone and (task, dataset, K) under the ids the cells
    link to, each with its effective config; and the ids of the pretraining groups."""
    parts, pretrain_ids = ['<section id="runs"><h2>Runs and their effective configs</h2>'], set()
    for row in board.measured_rows:
        parts.append(f"<h3>{escape(row.label)}</h3>")
        if row.pretrain_runs:
            gid = _pretrain_id(row.backbone)
            pretrain_ids.add(gid)
            parts.append(f'<div class="runs" id="{gid}"><b>pretraining</b>'
                         + "".join(_run_block(r) for r in row.pretrain_runs) + "</div>")
        groups: dict[str, tuple[str, list[Row]]] = defaultdict(lambda: ("", []))
        for col, cell in sorted(row.cells.items(), key=lambda kv: kv[0].sort_key()):
            gid = group_id(row.backbone, col)
            name = group_title(col.task, col.dataset, col.protocol, col.labels)
            if col.blocks is not None:
                name += f" · K={format_blocks(col.blocks)}"
            runs = groups[gid][1]
            ids = {r.run_id for r in runs}
            runs += [r for r in row.runs if r.run_id in cell.run_ids and r.run_id not in ids]
            groups[gid] = (name, runs)
        for gid, (name, runs) in groups.items():
            parts.append(f'<div class="runs" id="{gid}"><b>{escape(name)}</b> ({len(runs)} run'
                         f"{'s' * (len(runs) != 1)})" + "".join(_run_block(r) for r in runs) + "</div>")
    parts.append("</section>")
    return "".join(parts), pretrain_ids


def _figure_html(path: Path) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    name = escape(Path(path).stem)
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{name}">'
            f"<figcaption>{name}</figcaption></figure>")


def to_html(board: Leaderboard, figures: Sequence[Path] = (), which: str = "all") -> str:
    runs, pretrain_ids = _runs_section(board)
    views = views_for(board, which)
    nav = "".join(f'<a href="#{escape(v.key)}">{escape(v.title)}</a>' for v in views)
    nav += ('<a href="#figures">figures</a>' if figures else "") + '<a href="#runs">runs</a>'
    notes = "".join(f"<li>{escape(n)}</li>" for n in board.notes())
    parts = [
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>maebench leaderboard</title>", f"<style>{STYLE}</style>", "</head>", "<body>",
        "<h1>maebench leaderboard</h1>", f"<p>{escape(results_line(board).replace('`', ''))}</p>",
        "<p>Click a column header to sort (paper rows stay in their own group), a value for the runs "
        "behind it and their effective configs, a backbone for its pretraining runs.</p>",
        f"<nav>{nav}</nav>", *(_table(v, pretrain_ids) for v in views),
        f'<h2>Notes</h2><ul class="notes">{notes}</ul>',
    ]
    if figures:
        parts += ['<section id="figures"><h2>Figures</h2>', *(_figure_html(f) for f in figures), "</section>"]
    parts += [runs, f"<script>{SCRIPT}</script>", "</body>", "</html>"]
    return "\n".join(parts) + "\n"

