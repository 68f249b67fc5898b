"""Searched results (`--search`) on the leaderboard and in `maebench runs`: a searched row is its
own protocol ('searched') for every task, never in a cell with an unsearched row or compared with
the paper; its cells carry the § mark in every table format; its per-task table shows what the
search chose (the peak lr it trained with); seed comparisons group by the search, not by what
each seed chose; `maebench runs show` lists every trial and marks the chosen one."""
from __future__ import annotations

import re

import pytest
from leaderboard_helpers import add, markdown_tables, plain

from maebench.cli import main
from maebench.leaderboards import searched
from maebench.leaderboards.board import build_leaderboard
from maebench.leaderboards.columns import protocol_of
from maebench.leaderboards.compare import compare, recipe_key, recipe_label
from maebench.leaderboards.render import write_board
from maebench.results import ResultsStore

SPACE = {"lr_scale": [1.0, 0.5, 2.0], "global_pool": ["avg", "cls"]}
PRUNER = "successive halving (optuna), reduction 3, first rung 1 epoch(s)"
RECIPE = dict(base_lr=5e-4, batch_size=512, epochs=3)          # peak lr 5e-4 x 512 / 256 = 1e-3
TRIALS = [
    {"params": {"lr_scale": 1.0, "global_pool": "avg"}, "state": "complete", "score": 70.0, "epochs": 3,
     "cost": 0.8, "run_id": "trial-aaa", "scores": {"1": 60.0, "3": 70.0}},
    {"params": {"lr_scale": 1.0, "global_pool": "cls"}, "state": "pruned", "score": 41.25, "epochs": 1,
     "cost": 0.2667, "run_id": None, "scores": {"1": 41.25}},
    {"params": {"lr_scale": 2.0, "global_pool": "avg"}, "state": "complete", "score": 72.5, "epochs": 3,
     "cost": 0.8, "run_id": "trial-ccc", "scores": {"1": 61.0, "3": 72.5}},
    {"params": {"lr_scale": 0.5, "global_pool": "avg"}, "state": "skipped", "score": None, "epochs": 0,
     "cost": 0.0, "run_id": None, "scores": {}},
]


def search_config(seed: int = 0) -> dict:
    return {"space": SPACE, "holdout": 0.2, "budget": 3.0, "seed": seed, "pruner": PRUNER}


def record(chosen: dict, score: float = 72.5) -> dict:
    return {"metric": "top1", "holdout": 0.2, "trials": TRIALS, "chosen": chosen, "score": score, "cost": 1.8667,
            "budget": 3.0, "joint": False, "completed": 2, "pruned": 1, "skipped": 1, "wall_s": 12.3,
            "dir": "/tmp/search", "selected_on": "held-out part of the training data"}


def add_searched(store, task, backbone, dataset, top1, chosen, *, seed=0, **kw) -> str:
    return add(store, task, backbone, dataset, {"top1": top1, "search": record(chosen)}, seed=seed,
               search=search_config(seed), **{**RECIPE, **chosen, **kw})


@pytest.fixture()
def store(tmp_path):
    store = ResultsStore(tmp_path / "r.sqlite")
    b = dict(arch="vit-base")                     # mae-b: the paper's MAE ViT-B on ImageNet-1K (83.6)
    add(store, "finetune", "mae-b", "shapes", {"top1": 78.0}, global_pool="avg", **RECIPE, **b)
    add_searched(store, "finetune", "mae-b", "shapes", 80.0, {"lr_scale": 2.0, "global_pool": "avg"}, **b)
    add(store, "finetune", "other-b", "shapes", {"top1": 75.0}, global_pool="avg", **RECIPE)
    # a swept linear probe, and the same sweep searched: different cells
    add(store, "linprobe", "mae-b", "shapes", {"top1": 60.0}, sweep=True, cached_features=True, **b)
    add(store, "linprobe", "mae-b", "shapes", {"top1": 66.0, "search": record({"lr_scale": 1.0})}, sweep=True,
        cached_features=True, search=search_config(), **b)
    # on the paper's dataset: the searched cell is never compared with the paper
    add(store, "finetune", "mae-b", "imagenet", {"top1": 83.0}, **RECIPE, **b)
    add_searched(store, "finetune", "mae-b", "imagenet", 84.0, {"lr_scale": 1.0, "global_pool": "avg"}, **b)
    return store


def test_protocol_of_a_searched_config_for_every_task():
    s = {"search": search_config()}
    for task in ("finetune", "linprobe", "partial", "knn", "coco", "ade20k"):
        assert protocol_of(task, s) == "searched"
        assert protocol_of(task, {"search": {}}) == protocol_of(task, {})        # an empty table is no search
    assert protocol_of("linprobe", {**s, "sweep": True}) == "searched"          # the sweep is what it searched
    assert protocol_of("linprobe", {**s, "head": "logreg"}) == "searched-logreg"
    assert protocol_of("linprobe", {"sweep": True}) == "sweep"


def test_a_searched_and_an_unsearched_row_of_one_backbone_never_share_a_cell(store):
    board = build_leaderboard(store, include_paper=False)
    (row,) = [r for r in board.measured_rows if r.backbone == "mae-b"]
    cells = {(c.task, c.dataset, c.protocol): cell for c, cell in row.cells.items() if c.metric == "top1"}
    assert cells[("finetune", "shapes", "")].values == [78.0]
    assert cells[("finetune", "shapes", "searched")].values == [80.0]
    assert cells[("linprobe", "shapes", "sweep")].values == [60.0]
    assert cells[("linprobe", "shapes", "searched")].values == [66.0]
    assert [c.searched for c in cells.values()] == [c[2] == "searched" for c in cells]


def test_searched_tables_are_their_own_carry_the_mark_and_show_the_choice(store):
    md = write_board(build_leaderboard(store), None, "github")
    tables = markdown_tables(md)
    header, rows = tables["fine-tune (searched) · shapes"]
    assert [plain(r[0]) for r in rows] == ["mae-b"]                      # other-b was not searched
    row = dict(zip(header, rows[0]))
    assert row["top-1"] == "80.00 §"
    assert row["chosen"] == "lr 0.002 (x2), global_pool=avg"            # 5e-4 x 512 / 256 x 2
    plain_rows = {plain(r[0]): r[1] for r in tables["fine-tune · shapes"][1]}
    assert plain_rows == {"mae-b": "**78.00**", "other-b": "75.00"}    # no mark, no searched value
    section = md.split("## fine-tune (searched) · shapes\n", 1)[1].split("\n## ", 1)[0]
    assert "§ = searched" in section and "held-out part of the training data" in section
    assert "retrained on all of the training data and scored once" in section
    assert "never compared with the paper" in section
    summary = next(v for t, v in tables.items() if t.startswith("Summary"))
    cells = dict(zip(summary[0], next(r for r in summary[1] if plain(r[0]) == "mae-b")))
    assert cells["fine-tune (searched) [shapes]"].endswith(" §")
    assert not cells["fine-tune [shapes]"].endswith("§")
    # the paper's dataset: Δ and (paper) rows for the unsearched table only
    searched_in1k = tables["fine-tune (searched) · ImageNet-1K"]
    assert not any("Δ" in h for h in searched_in1k[0]) and not any("(paper)" in r[0] for r in searched_in1k[1])
    assert any("Δ" in h for h in tables["fine-tune · ImageNet-1K"][0])


@pytest.mark.parametrize("fmt,mark", [("terminal", "§"), ("html", "§"), ("latex", r"\S{}")])
def test_every_table_format_marks_searched_cells(store, fmt, mark):
    text = write_board(build_leaderboard(store, include_paper=False), None, fmt, figures=[])
    assert "fine-tune (searched)" in text
    assert text.count(mark) >= 4, fmt                     # cells in the summary and per-task tables, and the note
    assert "searched (`--search`)" in text
    if fmt == "terminal":
        assert re.search(r"mae-b\s+80\.00\*? §", text)
    if fmt == "html":
        assert re.search(r">80\.00[^<]*§", text) or "80.00</strong> §" in text or "80.00 §" in text


def test_the_effective_lr_is_the_linear_scaling_rule_times_lr_scale():
    # by hand: base_lr x batch / 256 unless lr is given, then x lr_scale
    for cfg, lr in (({"base_lr": 5e-4, "batch_size": 512}, 1e-3), ({"lr": 1e-3, "base_lr": 5e-4, "batch_size": 512}, 1e-3),
                    ({"base_lr": 1e-3, "batch_size": 4096, "lr_scale": 0.5}, 8e-3),
                    ({"lr": 2e-4, "batch_size": 16, "lr_scale": 4}, 8e-4)):
        assert searched.effective_lr(cfg) == pytest.approx(lr)
    assert searched.effective_lr({"k": 20}) is None                                     # k-NN: no lr
    assert searched.effective_lr({"base_lr": 1e-3, "batch_size": 256}, {"lr_scale": 3.0}) == pytest.approx(3e-3)


def test_seed_comparisons_group_by_the_search_not_by_what_each_seed_chose(tmp_path):
    store = ResultsStore(tmp_path / "r.sqlite")
    for seed, (a, b) in enumerate(((2.0, 1.0), (1.0, 0.5), (2.0, 2.0))):
        add_searched(store, "finetune", "A", "shapes", 80.0 + seed, {"lr_scale": a, "global_pool": "avg"}, seed=seed)
        add_searched(store, "finetune", "B", "shapes", 78.0 + seed, {"lr_scale": b, "global_pool": "cls"}, seed=seed)
        add(store, "finetune", "A", "shapes", {"top1": 70.0}, seed=seed, global_pool="avg", **RECIPE)
        add(store, "finetune", "B", "shapes", {"top1": 71.0}, seed=seed, global_pool="avg", **RECIPE)
    rows = store.rows()
    assert len({recipe_key(r.task, r.dataset, r.config) for r in rows if searched.is_searched(r.config)}) == 1
    out = {r["recipe"]: r for r in compare(store, "A", "B")}
    assert set(out) == {"searched", "protocol"}
    assert out["searched"]["seeds"] == [0, 1, 2] and out["searched"]["difference"]["mean"] == pytest.approx(2.0)
    assert out["protocol"]["difference"]["mean"] == pytest.approx(-1.0)
    assert recipe_label({"search": search_config(), "sweep": True}) == "searched, sweep"
    # another search setup (a different budget) is another group
    other = {**rows[0].config, "search": {**search_config(), "budget": 1.0}}
    assert recipe_key("finetune", "shapes", other) != recipe_key("finetune", "shapes", rows[0].config)


def test_runs_show_lists_every_trial_and_marks_the_chosen_one(store, capsys):
    (run,) = [r for r in store.rows(task="finetune", backbone="mae-b") if r.dataset == "shapes"
              and searched.is_searched(r.config)]
    assert main(["runs", "show", run.run_id, "--results", str(store.path)]) == 0
    out = capsys.readouterr().out
    for line in (f"run:", "task:", "backbone:", "dataset:", "seed:", "status:", "metrics:"):
        assert re.search(rf"^{line}", out, re.M), line
    assert "top1 80.00" in out and "finetune" in out and "mae-b" in out
    table = out[out.index("trials (4):"):].splitlines()
    trial_rows = [line for line in table[3:7]]
    assert len(trial_rows) == 4
    assert [line.startswith("*") for line in trial_rows] == [False, False, True, False]
    chosen = trial_rows[2]
    assert "2" in chosen.split() and "avg" in chosen and "complete" in chosen and "72.50" in chosen
    assert "0.002" in chosen                                # its peak lr: 1e-3 x 2
    assert "pruned" in trial_rows[1] and "41.25" in trial_rows[1] and "skipped" in trial_rows[3]
    assert "1: 60.00, 3: 70.00" in trial_rows[0] and "trial-aaa" in trial_rows[0]
    assert "* chosen: lr_scale=2, global_pool=avg (held-out top1 72.50)" in out
    assert "scored once: top1 80.00" in out
    assert "total cost 1.87 of a budget of 3.00 full-run equivalents" in out
    assert "2 completed, 1 pruned, 1 skipped" in out


def test_runs_show_of_an_unsearched_run_has_no_trials(store, capsys):
    run = store.rows(task="finetune", backbone="other-b")[0]
    assert main(["runs", "show", run.run_id[:-2], "--results", str(store.path)]) == 0     # a unique prefix
    out = capsys.readouterr().out
    assert run.run_id in out and "top1 75.00" in out and "trials" not in out


def test_runs_show_of_an_unknown_id_is_one_line_naming_it_and_exit_2(store, capsys):
    assert main(["runs", "show", "no-such-run", "--results", str(store.path)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "unknown run id 'no-such-run'" in err and str(store.path) in err


def test_runs_list_newest_first_with_filters(store, capsys):
    assert main(["runs", "list", "--results", str(store.path), "--task", "finetune", "--backbone", "mae-b"]) == 0
    out = capsys.readouterr().out
    ids = re.findall(r"\d{8}-\d{6}-[0-9a-f]{6}", out)
    wanted = [r for r in store.rows(task="finetune", backbone="mae-b", status=None)]
    assert ids == [r.run_id for r in reversed(wanted)]
    assert out.count(" yes ") == 2                                  # the searched ones say so
    assert main(["runs", "list", "--results", str(store.path), "--task", "finetun"]) == 2
    assert "did you mean: finetune?" in capsys.readouterr().err
