"""The leaderboard as one self-contained HTML page: no server, no external file. Figures are
embedded as base64 PNG data URIs; every measured cell opens (one click, <details>) onto the
effective config of each run behind it, and every backbone name onto its pretraining runs."""
from __future__ import annotations

import base64
import json
from html import escape
from pathlib import Path
from typing import Sequence

from maebench.leaderboards.families import family_label
from maebench.leaderboards.table import PAPER, BoardRow, Leaderboard
from maebench.leaderboards.text import cost_texts, headers, summary_line
from maebench.results import Row

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 6px; text-align: right; vertical-align: top; }
th { background: #f3f3f3; }
td.name, td.family { text-align: left; white-space: nowrap; }
tr.paper td { color: #555; font-style: italic; background: #fafafa; }
tr.first td { border-top: 2px solid #888; }
details summary { cursor: pointer; white-space: nowrap; }
details pre { text-align: left; font-size: 11px; max-width: 42em; max-height: 24em; overflow: auto;
              background: #f7f7f7; padding: 4px; }
figure { display: inline-block; margin: 0.5em; }
img { max-width: 100%; border: 1px solid #ddd; }
"""


def _run_block(run: Row, metric_text: str = "") -> str:
    title = f"{run.run_id} · {run.task} · {run.dataset or '?'} · seed {run.seed}"
    if metric_text:
        title += f" · {metric_text}"
    config = json.dumps(run.config, indent=2, sort_keys=True, default=str)
    where = f"git {run.git_commit or '?'} · {run.hardware or '?'}"
    return f"<p><code>{escape(title)}</code><br><small>{escape(where)}</small></p><pre>{escape(config)}</pre>"


def _runs_details(summary: str, blocks: Sequence[str]) -> str:
    if not blocks:
        return escape(summary)
    return f"<details><summary>{escape(summary)}</summary>{''.join(blocks)}</details>"


def _name_cell(row: BoardRow) -> str:
    if row.kind == PAPER or not row.pretrain_runs:
        return escape(row.label)
    return _runs_details(row.label, [_run_block(r) for r in row.pretrain_runs])


def _row_html(row: BoardRow, board: Leaderboard, first_of_family: bool) -> str:
    classes = [row.kind] + (["first"] if first_of_family else [])
    runs = {r.run_id: r for r in row.runs}
    tds = [f'<td class="family">{escape(family_label(row.family))}</td>',
           f'<td class="name">{_name_cell(row)}</td>']
    for col in board.columns:
        cell = row.cells.get(col)
        if cell is None:
            tds.append("<td></td>")
        elif cell.paper:
            tds.append(f'<td title="{escape(cell.reference_source or "")}">{escape(cell.text())}</td>')
        else:
            blocks = [_run_block(runs[rid], f"{col.metric} = {v:.2f}")
                      for rid, v in zip(cell.run_ids, cell.values) if rid in runs]
            title = f' title="vs {escape(cell.reference_source)}"' if cell.reference_source else ""
            tds.append(f"<td{title}>{_runs_details(cell.text(), blocks)}</td>")
    tds += [f"<td>{escape(t)}</td>" for t in cost_texts(row)]
    return f'<tr class="{" ".join(classes)}">{"".join(tds)}</tr>'


def _figure_html(path: Path) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    name = escape(Path(path).stem)
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{name}">'
            f"<figcaption>{name}</figcaption></figure>")


def to_html(board: Leaderboard, figures: Sequence[Path] = ()) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers(board))
    body, last_family = [], None
    for row in board.rows:
        body.append(_row_html(row, board, row.family != last_family and last_family is not None))
        last_family = row.family
    notes = "".join(f"<li>{escape(n)}</li>" for n in board.notes())
    parts = [
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        "<title>maebench leaderboard</title>", f"<style>{_STYLE}</style>", "</head>", "<body>",
        "<h1>maebench leaderboard</h1>", f"<p>{escape(summary_line(board).replace('`', ''))}</p>",
        "<p>Click a measured cell for the effective config of each run behind it, and a backbone "
        "name for its pretraining runs.</p>",
        f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>",
        f"<ul>{notes}</ul>",
    ]
    if figures:
        parts += ["<h2>Figures</h2>", "<div>", *(_figure_html(f) for f in figures), "</div>"]
    parts += ["</body>", "</html>"]
    return "\n".join(parts) + "\n"
