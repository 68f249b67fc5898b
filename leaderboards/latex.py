"""The leaderboard as LaTeX: one booktabs `table` per view (summary, each task and dataset,
cost), shrunk to the page column where wider (\\resizebox, never enlarged), best values in
bold, paper rows below a \\midrule. Needs \\usepackage{booktabs,graphicx}."""
from __future__ import annotations

import re

from maebench.leaderboards.markdown import results_line
from maebench.leaderboards.board import PAPER, Leaderboard
from maebench.leaderboards.view_model import View
from maebench.leaderboards.views import views_for

_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                  "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\^{}",
                  "−": "--", "–": "--", "Δ": r"$\Delta$", "±": r"$\pm$", "·": r"\textperiodcentered{}",
                  "…": r"\ldots{}", "†": r"\textdagger{}",
                  "§": r"\S{}"}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


def _label(view: View) -> str:
    return "tab:maebench-" + re.sub(r"[^A-Za-z0-9-]+", "-", view.key).strip("-")


def view_latex(view: View) -> list[str]:
    spec = "".join("r" if num else "l" for num in view.numeric)
    body = [" & ".join(latex_escape(h) for h in view.headers) + r" \\", r"\midrule"]
    first_paper = True
    for row in view.rows:
        if row.kind == PAPER and first_paper:
            body.append(r"\midrule")
            first_paper = False
        label = latex_escape(row.label)
        label = rf"\emph{{{label}}}" if row.kind == PAPER else label
        cells = [c.text(lambda s: rf"\textbf{{{s}}}") for c in row.cells]
        # escape everything but the \textbf markup added above
        cells = [_escape_keep_bold(t) for t in cells]
        body.append(" & ".join([label, *cells]) + r" \\")
    tabular = [rf"\begin{{tabular}}{{{spec}}}", r"\toprule", *body, r"\bottomrule", r"\end{tabular}"]
    # shrunk to the column width when wider, never enlarged
    tabular = [r"\resizebox{\ifdim\width>\columnwidth\columnwidth\else\width\fi}{!}{%", *tabular, "}"]
    caption = latex_escape(f"{view.title}. {' '.join(view.caption)}")
    return [r"\begin{table}[t]", r"\centering", r"\small", rf"\caption{{{caption}}}",
            rf"\label{{{_label(view)}}}", *tabular, r"\end{table}", ""]


_BOLD = re.compile(r"\\textbf\{(.*?)\}")


def _escape_keep_bold(text: str) -> str:
    out, pos = [], 0
    for m in _BOLD.finditer(text):
        out.append(latex_escape(text[pos:m.start()]))
        out.append(rf"\textbf{{{latex_escape(m.group(1))}}}")
        pos = m.end()
    out.append(latex_escape(text[pos:]))
    return "".join(out)


def to_latex(board: Leaderboard, which: str = "all") -> str:
    """One table environment per view; the notes become LaTeX comments at the top."""
    comments = [f"% {n}" for n in ["maebench leaderboard (needs \\usepackage{booktabs,graphicx})",
                                   results_line(board), *board.notes()]]
    lines = [*comments, ""]
    for view in views_for(board, which):
        lines += view_latex(view)
    return "\n".join(lines)
