"""Every output format of the same known store: markdown parses back to the board's numbers,
csv and json round-trip as numbers, LaTeX is escaped, the HTML page is well-formed and embeds
its figures, figures are valid PNGs, and the CLI handles files, formats and an empty store."""
from __future__ import annotations

import base64
import csv
import io
import json
from html.parser import HTMLParser

import pytest
from leaderboard_helpers import add, known_store

from maebench.leaderboards import families
from maebench.leaderboards.render import write_leaderboard
from maebench.leaderboards.stats import parse_cell
from maebench.leaderboards.table import build_leaderboard
from maebench.cli import main as cli_main
from maebench.results import ResultsStore

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return known_store(tmp_path_factory.mktemp("lb") / "results.sqlite")


@pytest.fixture(scope="module")
def rendered(store, tmp_path_factory):
    """html with figures, rendered once (figures are the slow part)."""
    out = tmp_path_factory.mktemp("html")
    text = write_leaderboard(store, out / "board.html", "html", out / "figures")
    return text, out


def parse_markdown_table(md: str) -> tuple[list[str], list[list[str]]]:
    lines = [ln for ln in md.splitlines() if ln.startswith("|")]
    cells = [[c.strip() for c in ln.strip().strip("|").split("|")] for ln in lines]
    return cells[0], cells[2:]


def test_github_markdown_parses_back_to_the_same_numbers(store):
    board = build_leaderboard(store)
    header, rows = parse_markdown_table(write_leaderboard(store, None, "github"))
    assert header[:2] == ["family", "backbone"]
    assert header[2:2 + len(board.columns)] == [c.header for c in board.columns]
    assert len(rows) == len(board.rows)
    for text_row, row in zip(rows, board.rows):
        assert text_row[1] == row.label
        for col, text in zip(board.columns, text_row[2:]):
            parsed, cell = parse_cell(text), row.cells.get(col)
            if cell is None:
                assert parsed is None
                continue
            assert parsed["mean"] == round(cell.mean, 2 if not cell.paper else 1)
            if not cell.paper:
                assert parsed["n"] == cell.n
                assert parsed["std"] == (None if cell.std is None else round(cell.std, 2))
                assert parsed["delta"] == (None if cell.delta is None else round(cell.delta, 2))
    by_label = {r[1]: dict(zip(header, r)) for r in rows}
    assert by_label["mae-tiny"]["linear top-1 [shapes]"] == "72.00 ± 2.00 (n=3)"
    assert by_label["mae-large-in1k"]["fine-tune top-1 [ImageNet-1K]"] == "85.70 ± 0.28 (n=2, Δ -0.20)"
    assert by_label["MAE ViT-L (paper)"]["fine-tune top-1 [ImageNet-1K]"] == "85.9"
    assert by_label["mae-tiny"]["transfer time"] == "105.0 s"


def test_csv_round_trips_as_numbers(store):
    board = build_leaderboard(store)
    lines = list(csv.DictReader(io.StringIO(write_leaderboard(store, None, "csv"))))
    assert [ln["backbone"] for ln in lines] == [r.label for r in board.rows]
    for line, row in zip(lines, board.rows):
        for col in board.columns:
            cell = row.cells.get(col)
            mean = line[f"{col.key} mean"]
            assert (mean == "") == (cell is None)
            if cell is not None:
                assert float(mean) == cell.mean
                if not cell.paper:
                    assert int(line[f"{col.key} n"]) == cell.n
                    std, delta = line[f"{col.key} std"], line[f"{col.key} delta"]
                    assert (None if std == "" else float(std)) == cell.std
                    assert (None if delta == "" else float(delta)) == cell.delta
    tiny = next(ln for ln in lines if ln["backbone"] == "mae-tiny")
    assert float(tiny["linprobe/top1/shapes std"]) == 2.0 and tiny["linprobe/top1/shapes n"] == "3"
    assert float(tiny["transfer_wall_s"]) == 105.0 and float(tiny["peak_mem_mb"]) == 900.0


def test_json_is_machine_readable(store):
    data = json.loads(write_leaderboard(store, None, "json"))
    rows = {r["label"]: r for r in data["rows"]}
    lin = rows["mae-tiny"]["cells"]["linprobe/top1/shapes"]
    assert (lin["mean"], lin["std"], lin["n"], lin["delta"]) == (72.0, 2.0, 3, None)
    assert len(lin["run_ids"]) == 3
    ft = rows["mae-large-in1k"]["cells"]["finetune/top1/imagenet"]
    assert ft["reference"] == 85.9 and ft["delta"] == pytest.approx(-0.2) and ft["reference_source"] == "Table 3"
    assert rows["MAE ViT-L (paper)"]["cells"]["linprobe/top1/imagenet"] == {"value": 75.8, "source": "Table 12"}
    assert rows["mae-tiny"]["mask_ratio"] == 0.75 and rows["mae-tiny"]["cost"]["pretrain_wall_s"] == 100.0
    cols = {c["key"]: c for c in data["columns"]}
    assert cols["partial/top1/shapes/K=1"]["blocks"] == 1.0 and not cols["partial/top1/shapes/K=1"]["paper_dataset"]
    assert data["paper"]["arxiv"] == "2111.06377" and data["ignored_runs"] == {"failed": 2, "running": 1}


def test_latex_escapes_names_and_uses_math_symbols(tmp_path):
    store = ResultsStore(tmp_path / "r.sqlite")
    for seed, v in enumerate((50.0, 54.0)):
        add(store, "knn", "my_vit&co", "shapes_v2", {"top1": v}, seed=seed)
    tex = write_leaderboard(store, None, "latex")
    assert r"my\_vit\&co" in tex and r"shapes\_v2" in tex
    assert r"52.00 $\pm$ 2.83 (n=2)" in tex
    assert r"\begin{tabular}" in tex and r"\end{tabular}" in tex


class _WellFormed(HTMLParser):
    VOID = {"meta", "img", "br", "hr", "link", "input"}

    def __init__(self):
        super().__init__()
        self.stack, self.errors, self.imgs, self.details = [], [], [], 0

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.imgs.append(dict(attrs)["src"])
        if tag == "details":
            self.details += 1
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
    parser = _WellFormed()
    parser.feed(text)
    parser.close()
    assert parser.errors == [] and parser.stack == []
    figures = sorted((out / "figures").glob("*.png"))
    assert len(parser.imgs) == len(figures) > 0
    for src in parser.imgs:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG)
    assert "src=\"http" not in text and "href=" not in text      # nothing outside the page
    assert parser.details >= 10
    assert "&quot;backbone_family&quot;: &quot;mae-norm-pixel&quot;" in text   # a run's config
    assert "&quot;mask_ratio&quot;: 0.75" in text                             # a pretrain run's config


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
    write_leaderboard(store, tmp_path / "lb.md", "github", tmp_path / "figs")
    assert sorted(p.name for p in (tmp_path / "figs").iterdir()) == ["bars_linprobe_shapes.png"]
    md = (tmp_path / "lb.md").read_text()
    assert "![bars_linprobe_shapes](figs/bars_linprobe_shapes.png)" in md


def test_figures_drawn_once_serve_markdown_and_html(store, rendered, tmp_path):
    from maebench.leaderboards.render import write_board
    _, out = rendered
    figs = sorted((out / "figures").glob("*.png"))
    board = build_leaderboard(store)
    md = write_board(board, out / "board.md", "github", figures=figs)
    assert all(f"(figures/{f.name})" in md for f in figs)
    html = write_board(board, tmp_path / "b.html", "html", figures=figs[:1])
    assert html.count("data:image/png;base64,") == 1
    empty = build_leaderboard(ResultsStore(tmp_path / "none.sqlite"))
    assert write_board(empty, tmp_path / "e.md") == empty.empty_message()
    assert not (tmp_path / "e.md").exists()


def test_cli_empty_store_says_so_and_exits_0(tmp_path, capsys):
    assert cli_main(["leaderboard", "--results", str(tmp_path / "none.sqlite")]) == 0
    assert "No finished transfer runs" in capsys.readouterr().out


def test_cli_writes_files_and_infers_the_format(store, tmp_path, capsys):
    out = tmp_path / "board.json"
    assert cli_main(["leaderboard", "--results", str(store.path), "--out", str(out),
                     "--tasks", "linprobe,knn", "--no-paper"]) == 0
    data = json.loads(out.read_text())
    assert {c["task"] for c in data["columns"]} == {"linprobe", "knn"}
    assert all(r["kind"] == "measured" for r in data["rows"])
    assert capsys.readouterr().out == ""
    assert cli_main(["leaderboard", "--results", str(store.path), "--backbones", "moco-tiny",
                     "--format", "github"]) == 0
    header, rows = parse_markdown_table(capsys.readouterr().out)
    assert [r[1] for r in rows][0] == "moco-tiny" and "linear top-1 [shapes]" in header
    assert cli_main(["leaderboard", "--results", str(store.path), "--backbones", "nope"]) == 2
    assert "unknown backbone" in capsys.readouterr().err
