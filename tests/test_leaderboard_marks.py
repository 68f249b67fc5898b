"""The leaderboard of a demo-like store (issue 29 item 4): the summary tables it is split into
are named by what they hold, never two alike; the supervised backbone's classification cells on
its own pretraining dataset carry the † mark in every table and format, explained by a footnote,
by the same rule the demo's report uses; the summary's rows are sorted by their first column."""
import re

import pytest
from leaderboard_helpers import add, markdown_tables, plain

from maebench.demo import report_md as demo_report
from maebench.leaderboards.board import build_leaderboard
from maebench.leaderboards.html import to_html
from maebench.leaderboards.latex import to_latex
from maebench.leaderboards.markdown import to_markdown
from maebench.leaderboards.terminal import to_terminal
from maebench.results import ResultsStore

# the demo's backbones: name -> (family, pretraining task or None)
BACKBONES = {"demo-mae": ("mae-norm-pixel", "pretrain-mae"), "demo-pix": ("mae-pixel", "pretrain-mae"),
             "demo-moco": ("contrastive", "pretrain-mocov3"), "demo-sup": ("supervised", "pretrain-supervised"),
             "scratch-vit-micro": ("scratch", None)}
NAMES = dict(zip(("mae-norm-pixel", "mae-pixel", "mocov3", "supervised", "scratch"), BACKBONES))
FINETUNE = {"demo-mae": 70.0, "demo-pix": 60.0, "demo-moco": 75.0, "demo-sup": 90.0, "scratch-vit-micro": 40.0}
CLASSIFICATION = ("fine-tune", "linear", "partial", "k-NN")


def demo_like(path) -> ResultsStore:
    """What `maebench demo` leaves: pretraining rows on the fashion world's classification set,
    the low-label classification tasks on it, partial fine-tuning for two backbones, COCO and
    ADE20K on the world's own sets for three."""
    store = ResultsStore(path)
    for i, (name, (family, pretrain)) in enumerate(BACKBONES.items()):
        kw = {"family": family, "arch": "vit-micro"}
        if pretrain:
            add(store, pretrain, name, "fashion", {"loss": 1.0}, **kw)
        add(store, "finetune", name, "fashion", {"top1": FINETUNE[name]}, labels_per_class=100, **kw)
        add(store, "linprobe", name, "fashion", {"top1": 30.0 + 10 * i}, sweep=True, cached_features=True,
            labels_per_class=1000, **kw)
        add(store, "knn", name, "fashion", {"top1": 20.0 + 10 * i}, labels_per_class=1000, **kw)
        if name in ("demo-mae", "demo-moco"):
            for k in (0, 0.5, 1, 2):
                add(store, "partial", name, "fashion", {"top1": 50.0 + k + i}, blocks=k, labels_per_class=100, **kw)
        if name not in ("demo-pix", "demo-moco"):
            add(store, "coco", name, "fashion-coco", {"bbox/AP": 5.0 + i, "segm/AP": 4.0 + i}, **kw)
            add(store, "ade20k", name, "fashion-seg", {"mIoU": 12.0 + i}, **kw)
    return store


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    return build_leaderboard(demo_like(tmp_path_factory.mktemp("demo") / "results.sqlite"))


@pytest.fixture(scope="module")
def markdown(board):
    return to_markdown(board)


def _summaries(markdown: str) -> dict:
    return {t: v for t, v in markdown_tables(markdown).items() if t.startswith("Summary")}


def test_no_two_sections_share_a_title_and_split_summaries_say_what_they_hold(board, markdown):
    titles = re.findall(r"^## (.+)$", markdown, re.M)
    assert len(titles) == len(set(titles)), titles
    summaries = _summaries(markdown)
    assert len(summaries) == 2                      # the demo's board is too wide for one summary table
    by_columns = {tuple(header[1:]): title for title, (header, _) in summaries.items()}
    classification = next(t for cols, t in by_columns.items() if any("fine-tune" in c for c in cols))
    dense = next(t for cols, t in by_columns.items() if "COCO" in cols)
    assert "top-1" in classification and all(task in classification for task in CLASSIFICATION)
    assert "APbox" in dense and "mIoU" in dense and "COCO" in dense and "ADE20K" in dense
    html = to_html(board)
    nav = re.search(r"<nav>(.*?)</nav>", html).group(1)
    links = re.findall(r"<a [^>]*>(.*?)</a>", nav)
    assert len(links) == len(set(links)) and "Summary Summary" not in re.sub(r"<[^>]+>", " ", nav)
    headings = re.findall(r"<h2>(.*?)</h2>", html)
    assert len(headings) == len(set(headings))
    terminal = to_terminal(board, width=200)
    assert terminal.count("\nSUMMARY\n") == 0 and terminal.count("SUMMARY: TOP-1") == 1


def test_split_summaries_of_one_task_are_named_by_their_columns(tmp_path):
    """Ten label budgets of the linear probe: two summary tables of the same task and metric,
    told apart by the columns they hold."""
    store = ResultsStore(tmp_path / "r.sqlite")
    for n in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000):
        for name in ("a", "b"):
            add(store, "linprobe", name, "fashion", {"top1": float(n % 97) + (name == "b")}, labels_per_class=n)
    markdown = to_markdown(build_leaderboard(store))
    titles = re.findall(r"^## (Summary.*)$", markdown, re.M)
    assert len(titles) >= 2 and len(set(titles)) == len(titles)
    summaries = _summaries(markdown)
    for title, (header, _rows) in summaries.items():
        assert all(h in title for h in header[1:]), (title, header)


def test_one_summary_table_keeps_its_plain_title(tmp_path):
    store = ResultsStore(tmp_path / "r.sqlite")
    add(store, "finetune", "a", "fashion", {"top1": 50.0})
    add(store, "finetune", "b", "fashion", {"top1": 60.0})
    assert list(_summaries(to_markdown(build_leaderboard(store)))) == ["Summary"]


def test_the_supervised_backbone_is_marked_in_every_classification_cell_of_every_table(markdown):
    """Marked: demo-sup's cells of fine-tune, linear, partial and k-NN, in the summary and the
    per-task tables; nothing else (COCO, ADE20K, the other backbones, the cost table)."""
    tables = markdown_tables(markdown)
    n = 0
    for title, (header, rows) in tables.items():
        for row in rows:
            for h, cell in zip(header[1:], row[1:]):
                if not cell:
                    continue
                what = h if title.startswith("Summary") else title
                expected = (row[0] == "demo-sup" and title != "Cost"
                            and any(what.startswith(task) for task in CLASSIFICATION))
                assert cell.endswith(" †") == expected, (title, h, row[0], cell)
                n += expected
        if any(c.endswith("†") for row in rows for c in row):
            section = markdown.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]
            assert "† = pretrained with all the labels of the dataset it is scored on" in section, title
    assert n == 6          # fine-tune, linear, k-NN: in the summary and in their own tables


def test_every_format_shows_the_mark_and_its_footnote(board):
    terminal = to_terminal(board, width=200)
    assert re.search(r"demo-sup\s+90\.0\* †", terminal) and "† = pretrained with all the labels" in terminal
    html = to_html(board)
    rows = re.findall(r"<tr>(.*?)</tr>", html)
    assert sum(r.count("†") for r in rows if ">demo-sup<" in r) == 6
    assert not any("†" in r for r in rows if ">demo-sup<" not in r)
    assert "† = pretrained with all the labels" in html
    tex = to_latex(board)
    assert tex.count(r"\textdagger{}") >= 6 and "†" not in tex


def test_the_mark_needs_the_labels_of_the_dataset_scored_on(tmp_path):
    """Supervised pretraining on another dataset, or none recorded, or another family on its own
    pretraining dataset: no mark."""
    store = ResultsStore(tmp_path / "r.sqlite")
    add(store, "pretrain-supervised", "sup-other", "imagenet", {"loss": 1.0}, family="supervised")
    add(store, "finetune", "sup-other", "fashion", {"top1": 80.0}, family="supervised")
    add(store, "finetune", "sup-released", "fashion", {"top1": 81.0}, family="supervised")
    add(store, "pretrain-mae", "mae", "fashion", {"loss": 1.0}, family="mae-norm-pixel")
    add(store, "finetune", "mae", "fashion", {"top1": 82.0}, family="mae-norm-pixel")
    add(store, "pretrain-supervised", "sup", "ImageNet-1K", {"loss": 1.0}, family="supervised")
    add(store, "knn", "sup", "imagenet", {"top1": 70.0}, family="supervised")       # the same dataset, two names
    board = build_leaderboard(store, include_paper=False)
    marked = {(r.backbone, c.task) for r in board.measured_rows for c, cell in r.cells.items() if cell.seen_all_labels}
    assert marked == {("sup", "knn")}
    assert "†" not in to_markdown(build_leaderboard(store, include_paper=False, tasks=["finetune"]))


def test_summary_rows_are_sorted_by_the_first_column_and_the_caption_says_so(markdown):
    for title, (header, rows) in _summaries(markdown).items():
        values = [float(plain(r[1]).rstrip(" †")) if r[1] else None for r in rows]
        scored = [v for v in values if v is not None]
        assert scored == sorted(scored, reverse=True), (title, values)
        assert values == scored + [None] * (len(values) - len(scored)), (title, values)   # no value: last
        section = markdown.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]
        assert f"Rows: sorted by {header[1]}, highest first; rows without a value there last." in section
    (header, rows), = [v for t, v in _summaries(markdown).items() if "top-1" in t]
    assert [r[0] for r in rows] == sorted(FINETUNE, key=FINETUNE.get, reverse=True)


def test_rows_without_a_first_column_value_come_last_in_the_summary(tmp_path):
    store = ResultsStore(tmp_path / "r.sqlite")
    add(store, "finetune", "b-low", "fashion", {"top1": 10.0})
    add(store, "finetune", "c-high", "fashion", {"top1": 90.0})
    add(store, "knn", "a-knn-only", "fashion", {"top1": 99.0})
    (header, rows), = _summaries(to_markdown(build_leaderboard(store))).values()
    assert header[1].startswith("fine-tune") and [r[0] for r in rows] == ["c-high", "b-low", "a-knn-only"]


def test_the_demo_report_marks_by_the_same_rule_as_the_leaderboard(tmp_path, board):
    path = tmp_path / "results.sqlite"
    demo_like(path)
    report = demo_report.write_report(tmp_path, path, command="maebench demo", quick=False, seeds=[0], left_out=[],
                                      names=NAMES, seconds=60.0, load=((1, 1, 1), (1, 1, 1)), estimates={})
    lines = [line for line in report.text.splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = {c[0]: c for c in ([x.strip() for x in line.strip("|").split("|")] for line in lines[2:])}
    by_label = {demo_report.LABELS[k]: NAMES[k] for k in NAMES}
    leaderboard = {(r.backbone, c.task) for r in board.measured_rows for c, cell in r.cells.items()
                   if cell.seen_all_labels}
    for label, cells in rows.items():
        for (h, task, _metric, _k), text in zip(demo_report.COLUMNS, cells[2:]):
            if text and text not in ("missing", "left out for time", "n/a ‡"):
                assert text.endswith("†") == ((by_label[label], task) in leaderboard), (label, h, text)
    assert rows["supervised"][header.index("fine-tune top-1 (100/class)")].endswith("†")
    assert not rows["supervised"][header.index("APbox")].endswith("†")
    assert "supervised † 90.0" in report.text and "† pretrained with all 60k training labels" in report.text


def test_the_demo_report_marks_nothing_the_rows_do_not_support(tmp_path):
    """The demo's "supervised" key without a supervised family or pretraining row in the store:
    the rows decide, not the key."""
    path = tmp_path / "results.sqlite"
    store = ResultsStore(path)
    for i, name in enumerate(NAMES.values()):
        add(store, "finetune", name, "fashion", {"top1": 60.0 + i}, labels_per_class=100)
    report = demo_report.write_report(tmp_path, path, command="maebench demo", quick=False, seeds=[0], left_out=[],
                                      names=NAMES, seconds=60.0, load=((1, 1, 1), (1, 1, 1)), estimates={})
    assert "†" not in report.text
