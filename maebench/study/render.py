"""A study's tables the way the paper sets them: one small table per ablation, the default row
marked (bold and "default" here, grey in HTML and LaTeX, as the paper's), our fine-tune and linear
columns, the paper's numbers for the same rows beside them, and each row's pretraining cost
(GFLOPs per image, wall time, both relative to the default row). Markdown, HTML and LaTeX; a
numeric one-key ablation (mask ratio) also as the paper's Figure 5 line plot."""
from __future__ import annotations

import html
from pathlib import Path

from maebench.study.tables import StudyTables, Table, TableRow

LABEL = {"finetune": "fine-tune", "linprobe": "linear", "knn": "k-NN", "partial": "partial", "coco": "APbox",
         "ade20k": "mIoU"}


def _header(st: StudyTables, table: Table) -> list[str]:
    paper = [f"paper {LABEL.get(p, p)}" for p in st.protocols] if st.source else []
    return [table.name, *(LABEL.get(p, p) for p in st.protocols), *(["paper row"] if st.source else []), *paper,
            "GFLOPs/img", "pretrain s"]


def _cost(row: TableRow, base: TableRow | None) -> list[str]:
    def rel(x, b):
        return f" ({x / b:.1f}x)" if x is not None and b and row is not base else ""
    return [f"{row.gflops:.3f}{rel(row.gflops, base and base.gflops)}" if row.gflops is not None else "-",
            f"{row.seconds:.0f}{rel(row.seconds, base and base.seconds)}" if row.seconds is not None else "-"]


def _cells(st: StudyTables, table: Table, row: TableRow) -> list[str]:
    if row.variant is None:
        ours = [f"not run: {row.note}"] + [""] * (len(st.protocols) - 1)
    else:
        ours = [c.text() if (c := row.ours.get(p)) else "-" for p in st.protocols]
    paper = ([row.paper_label or "-"] + [f"{v:.1f}" if (v := row.paper.get(p)) is not None else "-"
                                          for p in st.protocols]) if st.source else []
    return [row.label + (" (default)" if row.default else ""), *ours, *paper, *_cost(row, table.relative_to)]


def markdown(st: StudyTables) -> str:
    out = []
    for i, table in enumerate(st.tables):
        out += [f"**({chr(97 + i)}) {table.name}**", "", "| " + " | ".join(_header(st, table)) + " |",
                "|" + "---|" * len(_header(st, table))]
        for row in table.rows:
            cells = _cells(st, table, row)
            if row.default:
                cells = [f"**{c}**" if c and c != "-" else c for c in cells]
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def html_tables(st: StudyTables) -> str:
    out = ['<style>table.study{border-collapse:collapse;margin:0 0 1.2em}table.study td,table.study th'
           '{padding:2px 8px;border-bottom:1px solid #ccc;text-align:right}table.study td:first-child,'
           'table.study th:first-child{text-align:left}tr.default{background:#e6e6e6;font-weight:bold}</style>']
    for i, table in enumerate(st.tables):
        out.append(f'<table class="study"><caption>({chr(97 + i)}) {html.escape(table.name)}</caption><tr>'
                   + "".join(f"<th>{html.escape(h)}</th>" for h in _header(st, table)) + "</tr>")
        for row in table.rows:
            out.append(f'<tr{" class=default" if row.default else ""}>'
                       + "".join(f"<td>{html.escape(c)}</td>" for c in _cells(st, table, row)) + "</tr>")
        out.append("</table>")
    return "\n".join(out)


def latex(st: StudyTables) -> str:
    """Tabulars for a paper (\\usepackage[table]{xcolor} for the grey default rows)."""
    def tex(s: str) -> str:
        return s.replace("\\", r"\textbackslash{}").replace("%", r"\%").replace("_", r"\_").replace("&", r"\&") \
            .replace("#", r"\#").replace("±", r"$\pm$").replace("[", "{[}").replace("]", "{]}")
    out = ["% maebench study tables: \\usepackage[table]{xcolor}"]
    for i, table in enumerate(st.tables):
        head = _header(st, table)
        out += [f"% ({chr(97 + i)}) {table.name}", "\\begin{tabular}{l" + "r" * (len(head) - 1) + "}",
                " & ".join(tex(h) for h in head) + r" \\", r"\hline"]
        for row in table.rows:
            cells = [tex(c.replace(" (default)", "")) for c in _cells(st, table, row)]
            out.append((r"\rowcolor{gray!20} " if row.default else "") + " & ".join(cells) + r" \\")
        out += [r"\end{tabular}", ""]
    return "\n".join(out)


def numeric_key(table: Table, study) -> str | None:
    """The one config key every variant row of `table` sets to a number (mask_ratio), or None."""
    by_name = {v.name: v for v in study.variants}
    keys = {tuple(by_name[r.variant].sets) for r in table.rows if r.variant not in (None, "base")}
    if len(keys) != 1 or len(next(iter(keys))) != 1:
        return None
    key = next(iter(keys))[0]
    values = [by_name[r.variant].sets[key] for r in table.rows if r.variant not in (None, "base")]
    return key if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values) else None


def line_plot(st: StudyTables, table: Table, study, key: str, path: Path) -> Path | None:
    """Our fine-tune and linear numbers against `key` (solid), the paper's stated points for the
    same rows (hollow, on their own axis: ViT-L on ImageNet)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from maebench import config
    by_name = {v.name: v for v in study.variants}
    base_value = config.load("pretrain_mae", arch=study.arch)[key] if key not in study.base else study.base[key]
    fig, ax = plt.subplots(figsize=(5, 3.4))
    for p, colour in zip(st.protocols, ("tab:blue", "tab:orange", "tab:green", "tab:red")):
        pts = sorted((by_name[r.variant].sets[key] if r.variant != "base" else base_value, r.ours[p].mean)
                     for r in table.rows if r.variant is not None and r.ours.get(p))
        if pts:
            ax.plot([x for x, _ in pts], [y for _, y in pts], "o-", color=colour, label=f"{LABEL.get(p, p)} (ours)")
        paper = sorted((by_name[r.variant].sets[key] if r.variant != "base" else base_value, v) for r in table.rows
                       if r.variant is not None and r.paper_label == r.label and (v := r.paper.get(p)) is not None)
        if paper:
            ax2 = ax.twinx() if not hasattr(ax, "_paper_axis") else ax._paper_axis
            ax._paper_axis = ax2
            ax2.plot([x for x, _ in paper], [y for _, y in paper], "s", mfc="none", color=colour,
                     label=f"{LABEL.get(p, p)} (paper, ViT-L)")
            ax2.set_ylabel("paper top-1 (%)")
    ax.set_xlabel(key.replace("_", " "))
    ax.set_ylabel("top-1 (%), ours")
    ax.set_title(table.name)
    handles = [h for a in (ax, getattr(ax, "_paper_axis", None)) if a for h in a.get_legend_handles_labels()[0]]
    ax.legend(handles, [h.get_label() for h in handles], fontsize=7, loc="best")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
