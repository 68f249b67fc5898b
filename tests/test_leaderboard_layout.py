"""The layout fits: on the widest board the benchmark makes (5 backbones x 6 tasks on the paper's
datasets, 3 seeds per cell, six partial-K values, paper rows), every markdown table has at most
12 columns and 160 characters per line and the summary at most 100; the terminal format fits
the terminal and LaTeX a two-column page; cells are `mean ± std` only when n > 1 and n is
printed once when shared."""
from __future__ import annotations

import shutil
import subprocess

import pytest
from leaderboard_helpers import PAPER_SCALE_BACKBONES, PARTIAL_K, add, markdown_tables, paper_scale_store, plain

from maebench.leaderboards.render import write_board
from maebench.leaderboards.board import build_leaderboard
from maebench.leaderboards.terminal import to_terminal
from maebench.results import ResultsStore


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    return build_leaderboard(paper_scale_store(tmp_path_factory.mktemp("wide") / "results.sqlite"))


@pytest.fixture(scope="module")
def markdown(board):
    return write_board(board, None, "github")


def test_every_markdown_table_fits_12_columns_and_160_characters(markdown):
    tables = markdown_tables(markdown)
    assert len([t for t in tables if " · " in t and not t.endswith("95% intervals")]) == 6
    for title, (header, _) in tables.items():
        assert len(header) <= 12, title
    for line in markdown.splitlines():
        if line.startswith("|"):
            assert len(line) <= 160, line


def test_the_summary_is_one_table_of_at_most_100_characters(markdown):
    tables = markdown_tables(markdown)
    (title,) = [t for t in tables if t.startswith("Summary")]
    header, rows = tables[title]
    assert header == ["backbone", "fine-tune", "linear", "partial K=24", "k-NN", "COCO", "ADE20K"]
    assert len(rows) == len(PAPER_SCALE_BACKBONES)
    table = markdown[markdown.index("## Summary"):markdown.index("## fine-tune")]
    assert max(len(line) for line in table.splitlines() if line.startswith("|")) <= 100
    assert sum("**" in c for r in rows for c in r) == 6            # one best per column


def test_partial_has_one_column_per_k_and_paper_rows_in_their_own_group(markdown):
    header, rows = markdown_tables(markdown)["partial · ImageNet-1K"]
    assert header[1:1 + len(PARTIAL_K)] == ["K=0", "K=0.5", "K=1", "K=2", "K=4", "K=24"]
    kinds = [r[0].endswith("(paper)*") for r in rows]
    assert kinds == [False] * len(PAPER_SCALE_BACKBONES) + [True]
    paper = dict(zip(header, (plain(c) for c in rows[-1])))
    assert (paper["K=0"], paper["K=0.5"], paper["K=1"], paper["K=24"], paper["K=2"]) == \
        ("73.5", "79.1", "81.0", "84.9", "")                       # Fig. 9, measured K only


def test_every_interval_of_the_wide_board_is_shown_inline_or_in_the_table_after(board, markdown):
    """Intervals that do not fit a table's width follow it in a '· 95% intervals' table."""
    from maebench.leaderboards.stats import interval_text
    tables = markdown_tables(markdown)
    for r in board.measured_rows:
        for col, cell in r.cells.items():
            assert cell.n == 3 and cell.interval is not None
            text = interval_text(cell.interval)
            hits = [t for t, (h, rows) in tables.items() if any(row[0] == r.label and any(text in c for c in row)
                                                                for row in rows)]
            assert hits, (r.label, col.key, text)


def test_rows_are_sorted_by_the_headline_metric_and_the_best_is_marked(markdown):
    for title, (header, rows) in markdown_tables(markdown).items():
        if " · " not in title or title.endswith("95% intervals"):
            continue
        measured = [r for r in rows if not r[0].endswith("(paper)*")]
        col = header.index("K=24") if "K=24" in header else 1
        means = [float(plain(r[col]).split(" ± ")[0]) for r in measured]
        assert means == sorted(means, reverse=True), title
        assert measured[0][col].startswith("**"), title


def test_cells_show_std_only_with_several_runs_and_n_once(tmp_path):
    store = ResultsStore(tmp_path / "r.sqlite")
    for seed, v in enumerate((50.0, 52.0, 54.0)):
        add(store, "knn", "three", "shapes", {"top1": v}, seed=seed)
    add(store, "knn", "one", "shapes", {"top1": 51.0})
    add(store, "linprobe", "three", "shapes", {"top1": 40.0})
    add(store, "linprobe", "one", "shapes", {"top1": 41.0})
    md = write_board(build_leaderboard(store), None, "github")
    tables = markdown_tables(md)
    header, rows = tables["k-NN · shapes"]
    assert header == ["backbone", "top-1", "n"]
    # 50, 52, 54: 52 ± t(0.975, 2) 4.3027 x 2 / sqrt(3) = [47.03, 56.97]
    assert rows == [["three", "**52.00 ± 2.00 [47.03, 56.97]**", "3"], ["one", "51.00", "1"]]
    header, rows = tables["linear · shapes"]
    assert header == ["backbone", "top-1"] and rows == [["one", "**41.00**"], ["three", "40.00"]]
    section = md[md.index("## linear · shapes"):md.index("## Cost")]
    assert "n = 1 run per cell." in section and "(n=" not in md


@pytest.mark.parametrize("width", [80, 120])
def test_terminal_tables_fit_the_width(board, width):
    text = to_terminal(board, width)
    assert max(len(line) for line in text.splitlines()) <= width
    assert "K=24" in text and "(paper)" in text


PDFLATEX = shutil.which("pdflatex")


@pytest.mark.skipif(PDFLATEX is None, reason="no pdflatex (Debian texlive-latex-recommended) to typeset with")
def test_latex_tables_typeset_within_a_two_column_page(board, tmp_path):
    (tmp_path / "board.tex").write_text(write_board(board, None, "latex"))
    (tmp_path / "doc.tex").write_text("\\documentclass[twocolumn]{article}\\usepackage{booktabs,graphicx}"
                                      "\\begin{document}\\input{board.tex}\\end{document}\n")
    proc = subprocess.run([PDFLATEX, "-interaction=nonstopmode", "-halt-on-error", "doc.tex"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    log = (tmp_path / "doc.log").read_text(errors="replace")
    assert proc.returncode == 0, log[-2000:]
    assert "Overfull \\hbox" not in log
    assert (tmp_path / "doc.pdf").stat().st_size > 0
