"""Leaderboard arithmetic and layout from a results store with known rows: mean / sample std /
n, deltas against the paper, exclusion of unfinished runs, one column per dataset, family
grouping, cost aggregation, filters."""
from __future__ import annotations

import math

import pytest
from leaderboard_helpers import add, known_store

from maebench.leaderboards import families
from maebench.leaderboards.columns import Column
from maebench.leaderboards.stats import delta_text
from maebench.leaderboards.board import MEASURED, PAPER, build_leaderboard
from maebench.errors import UsageError
from maebench.results import ResultsStore


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return known_store(tmp_path_factory.mktemp("lb") / "results.sqlite")


@pytest.fixture(scope="module")
def board(store):
    return build_leaderboard(store)


def _row(board, label):
    (row,) = [r for r in board.rows if r.label == label]
    return row


def test_mean_sample_std_and_n(board):
    cell = _row(board, "mae-tiny").cells[Column("linprobe", "top1", "shapes")]
    assert (cell.mean, cell.std, cell.n) == (72.0, 2.0, 3)
    assert cell.text() == "72.00 ± 2.00"
    two = _row(board, "mae-tiny").cells[Column("finetune", "top1", "shapes")]
    assert two.mean == 81.0 and two.std == pytest.approx(math.sqrt(2.0))
    assert two.text() == "81.00 ± 1.41"
    one = _row(board, "moco-tiny").cells[Column("linprobe", "top1", "shapes")]
    assert one.std is None and one.text() == "60.00"           # the value alone when n = 1


def test_delta_against_the_paper_on_the_papers_dataset_only(board):
    row = _row(board, "mae-large-in1k")
    ft = row.cells[Column("finetune", "top1", "imagenet")]
    assert ft.mean == pytest.approx(85.7) and ft.reference == 85.9
    assert ft.delta == pytest.approx(-0.2) and ft.text() == "85.70 ± 0.28" and delta_text(ft.delta) == "-0.20"
    assert ft.reference_source == "Table 3"
    # the dataset was stored as "ImageNet-1K": same column, compared with Table 12's 75.8
    lin = row.cells[Column("linprobe", "top1", "imagenet")]
    assert lin.delta == pytest.approx(-0.8) and lin.reference_source == "Table 12"
    shapes = row.cells[Column("finetune", "top1", "shapes")]
    assert shapes.reference is None and shapes.text() == "90.00"
    for r in board.measured_rows:
        for col, cell in r.cells.items():
            if not col.is_paper_dataset:
                assert cell.delta is None, (r.label, col)
    # a tiny ViT has no paper counterpart even on a paper dataset
    assert all(c.delta is None for c in _row(board, "mae-tiny").cells.values())


def test_failed_and_running_runs_do_not_count(board):
    assert board.ignored == {"failed": 2, "running": 1}
    assert "ghost" not in {r.label for r in board.rows}
    runs = _row(board, "mae-tiny").runs
    assert all(r.status == "done" for r in runs)
    assert sorted(r.seed for r in runs if r.task == "linprobe") == [0, 1, 2]


def test_a_repeated_run_replaces_the_earlier_one(tmp_path):
    store = ResultsStore(tmp_path / "r.sqlite")
    add(store, "knn", "b", "shapes", {"top1": 40.0}, seed=0)
    add(store, "knn", "b", "shapes", {"top1": 50.0}, seed=1)
    add(store, "knn", "b", "shapes", {"top1": 44.0}, seed=0)          # same recipe and seed again
    cell = _row(build_leaderboard(store), "b").cells[Column("knn", "top1", "shapes")]
    assert sorted(cell.values) == [44.0, 50.0] and cell.n == 2


def test_datasets_are_separate_columns_and_headers_name_them(board):
    ft = [c for c in board.columns if c.task == "finetune"]
    assert [c.dataset for c in ft] == ["fashion-mnist", "shapes", "imagenet"]
    assert [c.header for c in ft] == ["fine-tune top-1 [fashion-mnist]", "fine-tune top-1 [shapes]",
                                      "fine-tune top-1 [ImageNet-1K]"]
    assert _row(board, "mae-tiny").cells[ft[0]].values == [88.0]
    partial = [c for c in board.columns if c.task == "partial"]
    assert [(c.dataset, c.blocks) for c in partial] == [("shapes", 0.0), ("shapes", 1.0), ("shapes", 2.0)]
    # every metric of the task table that was measured, in its order; none the paper alone has
    coco = [c.key for c in board.columns if c.task == "coco"]
    assert coco == ["coco/bbox/AP/shapes-coco", "coco/segm/AP/shapes-coco", "coco/bbox/AP50/shapes-coco"]
    assert [c.metric for c in board.columns if c.task == "linprobe" and c.dataset == "shapes"] == ["top1", "top5"]
    assert [c.task for c in board.columns].index("knn") < [c.task for c in board.columns].index("coco")


def test_rows_grouped_by_family_with_paper_rows_after_measured(board):
    order = [(r.family, r.kind, r.label) for r in board.rows]
    assert order[0] == ("contrastive", MEASURED, "moco-tiny")
    assert [lbl for f, k, lbl in order if f == "contrastive" and k == PAPER] == \
        ["DINO ViT-B (paper)", "MoCo v3 ViT-B (paper)", "MoCo v3 ViT-L (paper)"]
    assert [lbl for f, k, lbl in order if f == "mae-norm-pixel" and k == MEASURED] == \
        ["mae-tiny", "mae-tiny-m50", "mae-large-in1k"]
    families_seen = [f for f, _, _ in order]
    assert families_seen == sorted(families_seen, key=families.family_sort_key)
    # paper rows only for the families on the board, and only in columns that were measured
    assert {r.family for r in board.rows} == {"contrastive", "mae-norm-pixel"}
    mae_l = _row(board, "MAE ViT-L (paper)")
    assert {c: cell.mean for c, cell in mae_l.cells.items()} == {
        Column("finetune", "top1", "imagenet"): 85.9, Column("linprobe", "top1", "imagenet"): 75.8}
    measured = {c for r in board.measured_rows for c in r.cells}
    assert all(c in measured for r in board.rows for c in r.cells)


def test_cost_columns_and_mask_ratio(board):
    row = _row(board, "mae-tiny")
    assert row.cost.pretrain_wall_s == 100.0
    assert row.cost.transfer_wall_s == 3 * 5.0 + 9 * 10.0
    assert row.cost.peak_mem_mb == 900.0
    assert row.cost.pretrain_images_per_s == 500.0
    assert row.mask_ratio == 0.75 and _row(board, "mae-tiny-m50").mask_ratio == 0.5
    moco = _row(board, "moco-tiny")
    assert moco.cost.pretrain_wall_s is None and moco.mask_ratio is None


def test_filters_and_unknown_names(store):
    board = build_leaderboard(store, tasks=["linprobe"], backbones=["mae-tiny", "moco-tiny"], include_paper=False)
    assert {c.task for c in board.columns} == {"linprobe"}
    assert [r.label for r in board.rows] == ["moco-tiny", "mae-tiny"]
    assert board.ignored == {"failed": 1, "running": 1}
    with pytest.raises(UsageError, match="linprobe"):
        build_leaderboard(store, tasks=["linprob"])
    with pytest.raises(UsageError, match="mae-tiny"):
        build_leaderboard(store, backbones=["mae-tiny-typo"])


def test_no_paper_rows_and_no_deltas_with_include_paper_false(store):
    board = build_leaderboard(store, include_paper=False)
    assert all(r.kind == MEASURED for r in board.rows)
    assert all(c.reference is None for r in board.rows for c in r.cells.values())
    assert not any(c.is_paper_dataset and c.task == "coco" for c in board.columns)


def test_partial_paper_columns_follow_the_measured_k(tmp_path):
    store = ResultsStore(tmp_path / "r.sqlite")
    for k, v in ((1, 80.0), ("mlp", 78.0)):
        add(store, "partial", "mae-l-px", "imagenet", {"top1": v}, family="mae-pixel", arch="vit-large", blocks=k)
    board = build_leaderboard(store)
    assert [c.blocks for c in board.columns] == [0.5, 1.0]
    row = _row(board, "mae-l-px")
    assert row.cells[Column("partial", "top1", "imagenet", 1.0)].delta == pytest.approx(-1.0)
    assert row.cells[Column("partial", "top1", "imagenet", 0.5)].delta == pytest.approx(78.0 - 79.1)
    paper = _row(board, "MAE (pixel) ViT-L, 800 ep (paper)")
    assert {c.blocks: cell.mean for c, cell in paper.cells.items()} == {0.5: 79.1, 1.0: 81.0}


def test_family_comes_from_the_row_not_the_live_registry(tmp_path, monkeypatch):
    # a registry that would disagree, or that no longer knows the backbone, changes nothing
    from maebench.backbones import registry
    monkeypatch.setattr(registry, "entry", lambda name: (_ for _ in ()).throw(AssertionError("registry read")))
    store = ResultsStore(tmp_path / "r.sqlite")
    add(store, "coco", "reg-b", "coco", {"bbox/AP": 48.9, "segm/AP": 43.0}, family="supervised", arch="vit-base")
    add(store, "knn", "nameless", "shapes", {"top1": 40.0}, family=None, arch=None)
    board = build_leaderboard(store)
    reg = _row(board, "reg-b")
    assert (reg.family, reg.arch) == ("supervised", "vit-base")
    assert reg.cells[Column("coco", "bbox/AP", "coco")].delta == pytest.approx(1.0)   # paper 47.9
    assert _row(board, "nameless").family == "unknown"
    assert board.rows[-1].label == "nameless"            # unknown family sorts last


def test_paper_keys_recorded_with_the_row_choose_the_compared_row(tmp_path):
    store = ResultsStore(tmp_path / "r.sqlite")
    add(store, "finetune", "dino-b", "imagenet", {"top1": 83.8}, family="contrastive", arch="vit-base",
        paper=["dino/vit-b"])
    add(store, "finetune", "odd-b", "imagenet", {"top1": 83.0}, family="supervised", arch="vit-base",
        paper=["mocov3/vit-b"])
    add(store, "finetune", "moco-b", "imagenet", {"top1": 84.2}, family="contrastive", arch="vit-base")
    board = build_leaderboard(store)
    col = Column("finetune", "top1", "imagenet")
    assert _row(board, "dino-b").cells[col].delta == pytest.approx(1.0)      # DINO 82.8
    assert _row(board, "moco-b").cells[col].delta == pytest.approx(1.0)      # MoCo v3 83.2
    assert _row(board, "odd-b").cells[col].reference_source == "Table 3"
    # the row a delta refers to is on the board even outside the backbone's family
    assert _row(board, "MoCo v3 ViT-B (paper)").cells[col].mean == 83.2


def test_canonical_arch_names():
    assert families.canonical_arch("vit_large_patch16_224") == "vit-large"
    assert families.canonical_arch("ViT-H/14") == "vit-huge"
    assert families.canonical_arch("vit-base") == "vit-base"
    assert families.canonical_arch("resnet50") == "resnet50"
    assert families.canonical_arch(None) is None


def test_dataset_filter_takes_any_name_of_a_paper_dataset(store):
    board = build_leaderboard(store, datasets=["ImageNet-1K"], include_paper=False)
    assert {c.dataset for c in board.columns} == {"imagenet"}
    assert [r.label for r in board.rows] == ["mae-large-in1k"]
    assert "--dataset ImageNet-1K --no-paper" == board.filter_args
    with pytest.raises(UsageError, match="shapes"):
        build_leaderboard(store, datasets=["shape"])


def test_empty_store(tmp_path):
    board = build_leaderboard(ResultsStore(tmp_path / "none.sqlite"))
    assert board.empty and "No finished transfer runs" in board.empty_message()
