"""What the figures show, read back from the matplotlib objects before they are saved: bar
charts start at 0 and span the bars and the paper's values (an AP of 0.003 stays a sliver, not a
tall bar); the partial fine-tuning curve has one line per backbone over K and is drawn only with
two K or more; every legend sits outside its axes, where it hides no point."""
from __future__ import annotations

import pytest
from leaderboard_helpers import PAPER_SCALE_BACKBONES, add, known_store, paper_scale_store

from maebench.leaderboards import figures
from maebench.leaderboards.board import build_leaderboard
from maebench.results import ResultsStore


@pytest.fixture
def drawn(monkeypatch):
    """name -> Figure of every figure saved."""
    seen = {}
    save = figures._save

    def record(fig, path):
        seen[path.name] = fig
        return save(fig, path)
    monkeypatch.setattr(figures, "_save", record)
    return seen


@pytest.fixture(scope="module")
def wide(tmp_path_factory):
    """The figures of the widest board (paper datasets, 5 backbones, six K), drawn once."""
    tmp = tmp_path_factory.mktemp("wide")
    seen = {}
    save = figures._save

    def record(fig, path):
        seen[path.name] = fig
        return save(fig, path)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(figures, "_save", record)
        figures.write_figures(build_leaderboard(paper_scale_store(tmp / "r.sqlite")), tmp / "figs")
    return seen


def _bar_tops(ax) -> list[float]:
    return [p.get_height() for p in ax.patches]


def _legend_outside(fig) -> bool:
    """No legend (of an axes or of the figure) overlaps any axes or its tick labels and titles."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legends = [ax.get_legend() for ax in fig.axes if ax.get_legend()] + list(fig.legends)
    return not any(leg.get_window_extent(renderer).overlaps(ax.get_tightbbox(renderer, bbox_extra_artists=[]))
                   for leg in legends for ax in fig.axes if ax.get_visible())


def test_bars_start_at_zero_and_span_bars_and_paper_values(wide):
    ax = wide["bars_coco_coco.png"].axes[0]
    low, high = ax.get_ylim()
    paper = [seg[0][1] for coll in ax.collections for seg in coll.get_segments()
             if seg[0][1] == seg[1][1] and seg[0][0] != seg[1][0]]                  # the paper dashes
    assert low == 0 and paper and max(_bar_tops(ax) + paper) <= high <= 1.2 * max(_bar_tops(ax) + paper)
    assert max(paper) == pytest.approx(53.3)                                           # MAE ViT-L APbox
    assert all(_legend_outside(fig) for fig in wide.values())


def test_an_ap_near_zero_is_drawn_near_zero(tmp_path, drawn):
    store = ResultsStore(tmp_path / "r.sqlite")
    add(store, "coco", "a", "shapes", {"bbox/AP": 0.003, "segm/AP": 0.0})
    add(store, "coco", "b", "shapes", {"bbox/AP": 0.0, "segm/AP": 0.0})
    figures.write_figures(build_leaderboard(store), tmp_path / "figs")
    ax = drawn["bars_coco_shapes.png"].axes[0]
    assert ax.get_ylim()[0] == 0 and ax.get_ylim()[1] >= 1.0        # a 0.003 bar is 0.3 % of the axis


def test_the_partial_curve_has_one_line_per_backbone_over_k(wide):
    ax = wide["partial_imagenet.png"].axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert sorted(labels) == sorted([n for n, _, _ in PAPER_SCALE_BACKBONES] + ["MAE (pixel) ViT-L, 800 ep (paper)"])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "MLP", "1", "2", "4", "24"]


def test_the_mask_ratio_sweep_has_one_legend_beside_its_panels(tmp_path, drawn):
    figures.write_figures(build_leaderboard(known_store(tmp_path / "r.sqlite")), tmp_path / "figs")
    fig = drawn["mask_ratio.png"]
    assert [t.get_text() for leg in fig.legends for t in leg.get_texts()] == ["MAE norm-pixel ViT-Ti"]
    assert all(_legend_outside(f) for f in drawn.values())


def test_no_partial_curve_from_a_single_k(tmp_path, drawn):
    store = ResultsStore(tmp_path / "r.sqlite")
    for name in ("a", "b"):
        add(store, "partial", name, "shapes", {"top1": 10.0}, blocks=1)
    paths = figures.write_figures(build_leaderboard(store), tmp_path / "figs")
    assert [p.name for p in paths] == ["bars_partial_shapes.png"]
