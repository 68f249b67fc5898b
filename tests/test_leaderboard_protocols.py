"""Frozen-evaluation results on the leaderboard (issue 17): the linear probe's protocols (the
paper's single lr, the swept grid, logistic regression) and low-label settings (N labels per
class, a fraction F) are never averaged into one cell, each table says which it shows, only the
paper's protocol on all labels is compared with the paper; with 3 seeds every output format
shows mean, std and the 95 % Student-t interval, and says which interval it is."""
from __future__ import annotations

import csv
import io
import json
import statistics

import pytest
from leaderboard_helpers import add, markdown_tables, plain
from scipy import stats as sps

from maebench.leaderboards.render import write_board
from maebench.leaderboards.board import build_leaderboard
from maebench.results import ResultsStore

L = dict(family="mae-norm-pixel", arch="vit-large")     # the paper's MAE ViT-L: linear 75.8 (Table 12)


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    store = ResultsStore(tmp_path_factory.mktemp("p") / "r.sqlite")
    add(store, "linprobe", "mae-l", "imagenet", {"top1": 70.0}, **L)                             # single lr
    add(store, "linprobe", "mae-l", "imagenet", {"top1": 74.0}, cached_features=True, sweep=False, **L)
    add(store, "linprobe", "mae-l", "imagenet", {"top1": 80.0}, cached_features=True, sweep=True, head="linear", **L)
    add(store, "linprobe", "mae-l", "imagenet", {"top1": 78.0}, cached_features=True, sweep=True, head="logreg", **L)
    add(store, "linprobe", "mae-l", "imagenet", {"top1": 50.0}, sweep=True, labels_per_class=10, **L)
    add(store, "knn", "mae-l", "shapes", {"top1": 60.0}, **L)
    add(store, "knn", "mae-l", "shapes", {"top1": 40.0}, labels_per_class=10, **L)
    add(store, "knn", "mae-l", "shapes", {"top1": 30.0}, label_fraction=0.1, **L)
    add(store, "finetune", "mae-l", "imagenet", {"top1": 60.0}, labels_per_class=10, **L)
    return build_leaderboard(store)


@pytest.fixture(scope="module")
def tables(board):
    return markdown_tables(write_board(board, None, "github"))


def _cell(tables, title, backbone="mae-l", column="top-1"):
    header, rows = tables[title]
    row = next(r for r in rows if plain(r[0]) == backbone)
    return dict(zip(header, row)).get(column)


def test_linear_protocols_are_separate_tables_and_only_the_single_lr_is_compared_with_the_paper(tables):
    # the direct and the cached single-lr probe are the same protocol: one cell (70, 74)
    assert plain(_cell(tables, "linear · ImageNet-1K")).startswith("72.00 ± 2.83")
    assert _cell(tables, "linear · ImageNet-1K", column="Δ top-1") == "-3.80"          # 72 - 75.8
    assert any("(paper)" in r[0] for r in tables["linear · ImageNet-1K"][1])
    assert plain(_cell(tables, "linear (swept) · ImageNet-1K")) == "80.00"
    assert plain(_cell(tables, "logreg · ImageNet-1K")) == "78.00"
    assert plain(_cell(tables, "linear (swept) · ImageNet-1K · N=10 labels/class")) == "50.00"
    for title in ("linear (swept) · ImageNet-1K", "logreg · ImageNet-1K",
                  "linear (swept) · ImageNet-1K · N=10 labels/class", "fine-tune · ImageNet-1K · N=10 labels/class"):
        header, rows = tables[title]
        assert not any("Δ" in h for h in header), title
        assert not any("(paper)" in r[0] for r in rows), title


def test_low_label_results_are_grouped_by_n_or_f(tables):
    assert plain(_cell(tables, "k-NN · shapes")) == "60.00"
    assert plain(_cell(tables, "k-NN · shapes · N=10 labels/class")) == "40.00"
    assert plain(_cell(tables, "k-NN · shapes · F=0.1 of the labels")) == "30.00"
    summary = {h for t, (header, _) in tables.items() if t.startswith("Summary") for h in header}
    assert {"linear", "linear (swept)", "logreg", "linear (swept) N=10", "k-NN N=10", "k-NN F=0.1"} <= summary


def test_swept_tables_say_how_the_head_was_chosen(board):
    md = write_board(board, None, "github")
    section = md[md.index("## linear (swept) · ImageNet-1K"):]
    section = section[:section.index("\n## ")]
    assert "held-out slice of the training set" in section and "never compared with the paper" in section


def test_csv_and_json_records_carry_protocol_and_labels(board):
    records = json.loads(write_board(board, None, "json"))
    lin = {(r["protocol"], r["labels"], r["value"]) for r in records if r["task"] == "linprobe" and r["kind"] == "measured"}
    assert lin == {(None, None, 70.0), (None, None, 74.0), ("sweep", None, 80.0), ("logreg", None, 78.0),
                   ("sweep", "N=10", 50.0)}
    rows = list(csv.DictReader(io.StringIO(write_board(board, None, "csv"))))
    assert {(r["protocol"], r["labels"]) for r in rows if r["task"] == "knn"} == {("", ""), ("", "N=10"), ("", "F=0.1")}


# ---- seeds: mean, std and the 95 % interval in every format ----------------------------------------------

VALUES = (50.0, 52.5, 54.0)
MEAN, STD = statistics.fmean(VALUES), statistics.stdev(VALUES)
HALF = sps.t.ppf(0.975, len(VALUES) - 1) * STD / len(VALUES) ** 0.5      # Student t, independent of maebench
LO, HI = MEAN - HALF, MEAN + HALF


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    store = ResultsStore(tmp_path_factory.mktemp("s") / "r.sqlite")
    for seed, v in enumerate(VALUES):
        add(store, "linprobe", "three-seeds", "shapes", {"top1": v}, seed=seed, sweep=True, cached_features=True)
    add(store, "linprobe", "one-seed", "shapes", {"top1": 40.0}, sweep=True, cached_features=True)
    return build_leaderboard(store)


def _texts(pm: str = "±") -> tuple[str, str, str]:
    return f"{MEAN:.2f}", f"{pm} {STD:.2f}", f"[{LO:.2f}, {HI:.2f}]"


@pytest.mark.parametrize("fmt,pm", [("github", "±"), ("markdown", "±"), ("terminal", "±"),
                                    ("latex", r"$\pm$"), ("html", "±")])
def test_three_seeds_show_mean_std_and_interval_in_every_table_format(seeded, fmt, pm):
    text = write_board(seeded, None, fmt, figures=[])
    mean, std, interval = _texts(pm)
    assert f"{mean} {std} {interval}" in text, fmt
    assert "Student-t" in text and "interval" in text, fmt                # the legend names the interval
    assert "swept" in text, fmt


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_three_seeds_show_mean_std_and_interval_in_the_long_formats(seeded, fmt):
    text = write_board(seeded, None, fmt)
    recs = json.loads(text) if fmt == "json" else list(csv.DictReader(io.StringIO(text)))
    three = [r for r in recs if r["backbone"] == "three-seeds"]
    assert len(three) == 3
    for r in three:
        assert float(r["mean"]) == pytest.approx(MEAN) and float(r["std"]) == pytest.approx(STD)
        assert float(r["ci95_low"]) == pytest.approx(LO) and float(r["ci95_high"]) == pytest.approx(HI)
        assert r["interval"] == "95% Student-t" and int(r["n"]) == 3 and r["protocol"] == "sweep"
    (one,) = [r for r in recs if r["backbone"] == "one-seed"]
    assert one["ci95_low"] in (None, "") and one["std"] in (None, "")


def test_the_summary_shows_mean_and_std_with_three_seeds(seeded):
    tables = markdown_tables(write_board(seeded, None, "github"))
    header, rows = tables["Summary"]
    assert header == ["backbone", "linear (swept)"]
    assert dict(rows) == {"three-seeds": f"**{MEAN:.1f} ± {STD:.1f}**", "one-seed": "40.0"}
