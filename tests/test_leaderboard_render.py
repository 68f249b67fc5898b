"""Every output format of the same known store (tests/leaderboard_helpers.known_store, values
computed by hand there): markdown has one table per task and dataset with the right cells, n,
deltas and paper rows; csv and json are long (one record per run and metric) and agree; LaTeX
is one escaped booktabs table per task; the HTML page is well-formed, self-contained and links
every measured cell to its runs' configs; figures are valid PNGs."""
from __future__ import annotations

import base64
import csv
import io
import json
import re
from html.parser import HTMLParser

import pytest
from leaderboard_helpers import add, known_store, markdown_tables, plain

from maebench.leaderboards.render import write_board
from maebench.leaderboards.board import build_leaderboard
from maebench.results import ResultsStore

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return known_store(tmp_path_factory.mktemp("lb") / "results.sqlite")


@pytest.fixture(scope="module")
def board(store):
    return build_leaderboard(store)


@pytest.fixture(scope="module")
def tables(board):
    return markdown_tables(write_board(board, None, "github"))


@pytest.fixture(scope="module")
def rendered(board, tmp_path_factory):
    """html with figures, rendered once (figures are the slow part)."""
    out = tmp_path_factory.mktemp("html")
    return write_board(board, out / "board.html", "html", out / "figures"), out


def _rows(tables, title):
    header, rows = tables[title]
    return header, {plain(r[0]): dict(zip(header, r)) for r in rows}


def test_markdown_has_one_table_per_task_and_dataset(tables):
    per_task = [t for t in tables if " · " in t]
    assert per_task == ["fine-tune · fashion-mnist", "fine-tune · shapes", "fine-tune · ImageNet-1K",
                        "linear · shapes", "linear · ImageNet-1K", "partial · shapes", "k-NN · shapes",
                        "COCO · shapes-coco", "ADE20K · shapes-seg"]
    assert any(t.startswith("Summary") for t in tables) and "Cost" in tables
    header, _ = tables["COCO · shapes-coco"]
    assert header == ["backbone", "APbox", "APmask", "AP50"]      # the task's own measured metrics


def test_cells_n_and_order_computed_by_hand(tables):
    header, rows = _rows(tables, "linear · shapes")
    assert header == ["backbone", "top-1", "top-5", "n"]          # n differs between rows: a column
    assert list(rows) == ["mae-tiny", "mae-tiny-m50", "moco-tiny"]   # sorted by top-1
    # 70, 72, 74: std 2, 95% t interval 72 ± t(0.975, 2) 4.3027 x 2 / sqrt(3) = [67.03, 76.97]
    assert rows["mae-tiny"]["top-1"] == "**72.00 ± 2.00 [67.03, 76.97]**" and rows["mae-tiny"]["n"] == "3"
    assert rows["moco-tiny"]["top-1"] == "60.00" and rows["moco-tiny"]["n"] == "1"
    header, rows = _rows(tables, "partial · shapes")
    assert header == ["backbone", "K=0", "K=1", "K=2"]              # n = 1 everywhere: said once
    assert [plain(c) for c in rows["mae-tiny"].values()][1:] == ["60.00", "65.00", "70.00"]
    assert rows["mae-tiny-m50"]["K=2"] == ""


def test_deltas_and_paper_rows_only_on_the_papers_dataset(tables):
    header, rows = _rows(tables, "fine-tune · ImageNet-1K")
    assert header == ["backbone", "top-1", "Δ top-1"]
    # 85.5, 85.9: 85.7 ± t(0.975, 1) 12.7062 x 0.2828 / sqrt(2) = [83.16, 88.24]
    assert rows["mae-large-in1k"]["top-1"] == "85.70 ± 0.28 [83.16, 88.24]"
    assert rows["mae-large-in1k"]["Δ top-1"] == "-0.20"
    assert rows["MAE ViT-L (paper)"]["top-1"] == "85.9"
    _, raw = tables["fine-tune · ImageNet-1K"]
    kinds = ["paper" if r[0].endswith("(paper)*") else "measured" for r in raw]
    assert kinds == sorted(kinds, key=lambda k: k == "paper") and kinds[0] == "measured"   # own group, last
    _, rows = _rows(tables, "linear · ImageNet-1K")
    assert rows["mae-large-in1k"]["Δ top-1"] == "-0.80"
    for title, (header, raw) in tables.items():
        if "ImageNet-1K" not in title:
            assert not any("Δ" in h for h in header), title
            assert not any("(paper)" in r[0] for r in raw), title


def test_paper_rows_have_a_value_in_every_table_they_appear_in(tables):
    for title, (_, raw) in tables.items():
        for r in raw:
            if "(paper)" in r[0]:
                assert any(c for c in r[1:]), (title, r)


def test_cost_table(tables):
    _, rows = _rows(tables, "Cost")
    assert rows["mae-tiny"]["pretrain time"] == "100.0 s" and rows["mae-tiny"]["transfer time"] == "105.0 s"
    assert rows["mae-tiny"]["peak mem (MB)"] == "900" and rows["mae-tiny"]["pretrain img/s"] == "500.0"
    assert rows["moco-tiny"]["family"] == "contrastive" and rows["moco-tiny"]["pretrain time"] == ""


def test_csv_and_json_are_long_one_record_per_run_and_metric(board):
    lines = list(csv.DictReader(io.StringIO(write_board(board, None, "csv"))))
    records = json.loads(write_board(board, None, "json"))
    assert len(lines) == len(records)
    measured = sum(c.n for r in board.measured_rows for c in r.cells.values())
    paper = sum(len(r.cells) for r in board.rows if r.kind == "paper")
    assert len(records) == measured + paper
    lin = [r for r in records if (r["backbone"], r["task"], r["dataset"], r["metric"]) ==
           ("mae-tiny", "linprobe", "shapes", "top1")]
    assert sorted((r["seed"], r["value"]) for r in lin) == [(0, 70.0), (1, 72.0), (2, 74.0)]
    ft = [r for r in records if r["backbone"] == "mae-large-in1k" and r["dataset"] == "imagenet"
          and r["task"] == "finetune"]
    assert {r["paper_value"] for r in ft} == {85.9} and {r["paper_source"] for r in ft} == {"Table 3"}
    assert {r["kind"] for r in records} == {"measured", "paper"}
    # csv and json hold the same records; csv numbers parse back exactly
    for line, rec in zip(lines, records):
        assert line.keys() == rec.keys()
        for key, value in rec.items():
            text = line[key]
            assert (text == "") == (value is None), key
            if isinstance(value, float):
                assert float(text) == value


def test_latex_is_one_booktabs_table_per_task_escaped(tmp_path):
    store = ResultsStore(tmp_path / "r.sqlite")
    for seed, v in enumerate((50.0, 54.0)):
        add(store, "knn", "my_vit&co", "shapes_v2", {"top1": v}, seed=seed)
    add(store, "linprobe", "my_vit&co", "shapes_v2", {"top1": 40.0})
    tex = write_board(build_leaderboard(store), None, "latex")
    assert tex.count(r"\begin{table}") == tex.count(r"\end{table}") == 4     # summary, 2 tasks, cost
    assert tex.count(r"\toprule") == tex.count(r"\bottomrule") == 4
    assert r"my\_vit\&co" in tex and r"shapes\_v2" in tex
    assert r"52.00 $\pm$ 2.83" in tex
    assert r"\label{tab:maebench-knn-shapes_v2}" not in tex and r"\label{tab:maebench-knn-shapes-v2}" in tex


class _Page(HTMLParser):
    VOID = {"meta", "img", "br", "hr", "link", "input"}

    def __init__(self):
        super().__init__()
        self.stack, self.errors, self.imgs, self.hrefs, self.ids = [], [], [], [], set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.imgs.append(attrs["src"])
        if tag == "a":
            self.hrefs.append(attrs["href"])
        if "id" in attrs:
            self.ids.add(attrs["id"])
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()


def test_html_is_well_formed_self_contained_and_embeds_figures(rendered):
    text, out = rendered
    assert (out / "board.html").read_text() == text
    page = _Page()
    page.feed(text)
    page.close()
    assert page.errors == [] and page.stack == []
    figures = sorted((out / "figures").glob("*.png"))
    assert len(page.imgs) == len(figures) > 0
    for src in page.imgs:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG)
    assert 'src="http' not in text
    assert all(h.startswith("#") and h[1:] in page.ids for h in page.hrefs)   # nothing outside the page


def test_html_links_every_measured_cell_to_its_runs_configs(rendered, board):
    text, _ = rendered
    row = next(r for r in board.measured_rows if r.label == "mae-tiny")
    lin = next(c for col, c in row.cells.items() if col.task == "linprobe" and col.dataset == "shapes"
               and col.metric == "top1")
    link = re.search(r'<a href="#(runs-[0-9a-f]+)"><strong>72\.00 ± 2\.00 \[67\.03, 76\.97\]</strong></a>', text)
    assert link, "the mae-tiny linear cell links to its runs"
    block = text[text.index(f'id="{link.group(1)}"'):]
    block = block[:block.index('<div class="runs"', 1)]
    assert all(rid in block for rid in lin.run_ids) and "(3 runs)" in block
    assert "&quot;backbone_family&quot;: &quot;mae-norm-pixel&quot;" in block        # its effective config
    assert "&quot;mask_ratio&quot;: 0.75" in text                                   # a pretraining config
    assert text.count('<td class="num') >= 40 and "position: sticky" in text and "<script>" in text


def test_figures_are_valid_pngs(rendered):
    from PIL import Image
    _, out = rendered
    names = {p.name for p in (out / "figures").glob("*.png")}
    assert {"partial_shapes.png", "mask_ratio.png", "bars_linprobe_shapes.png", "bars_coco_shapes-coco.png",
            "bars_finetune_fashion-mnist.png", "bars_partial_shapes.png"} <= names
    for name in names:
        path = out / "figures" / name
        assert path.read_bytes().startswith(PNG)
        with Image.open(path) as im:
            im.verify()


def test_no_mask_ratio_figure_without_a_sweep(tmp_path):
    store = ResultsStore(tmp_path / "r.sqlite")
    add(store, "pretrain-mae", "m", "shapes", {"loss": 0.1}, mask_ratio=0.75)
    add(store, "linprobe", "m", "shapes", {"top1": 50.0})
    write_board(build_leaderboard(store), tmp_path / "lb.md", "github", tmp_path / "figs")
    assert sorted(p.name for p in (tmp_path / "figs").iterdir()) == ["bars_linprobe_shapes.png"]
    md = (tmp_path / "lb.md").read_text()
    assert "![bars_linprobe_shapes](figs/bars_linprobe_shapes.png)" in md


def test_figures_drawn_once_serve_markdown_and_html(board, rendered, tmp_path):
    _, out = rendered
    figs = sorted((out / "figures").glob("*.png"))
    md = write_board(board, out / "board.md", "github", figures=figs)
    assert all(f"(figures/{f.name})" in md for f in figs)
    html = write_board(board, tmp_path / "b.html", "html", figures=figs[:1])
    assert html.count("data:image/png;base64,") == 1
    empty = build_leaderboard(ResultsStore(tmp_path / "none.sqlite"))
    assert write_board(empty, tmp_path / "e.md") == empty.empty_message()
    assert not (tmp_path / "e.md").exists()
