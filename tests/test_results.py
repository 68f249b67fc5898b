"""The results store: rows, statuses, and concurrent writers."""
import multiprocessing as mp
import sqlite3

import pytest

from maebench.results import ResultsStore


def test_run_lifecycle_and_fields(tmp_path):
    store = ResultsStore(tmp_path / "r.sqlite")
    cfg = {"epochs": 1, "base_lr": 1e-3}
    with store.run(task="linprobe", backbone="mae-vit-b", config=cfg, dataset="shapes", split="val",
                   seed=3, checkpoint_sha256="ab" * 32) as run:
        assert [r.status for r in store.rows(status=None)] == ["running"]
        run.finish({"top1": 71.5, "top5": 90.0}, peak_mem_mb=12.0, images_per_s=100.0)
    (row,) = store.rows()
    assert (row.task, row.backbone, row.dataset, row.split, row.seed) == ("linprobe", "mae-vit-b", "shapes", "val", 3)
    assert row.metrics == {"top1": 71.5, "top5": 90.0} and row.config == cfg
    assert row.status == "done" and row.wall_time_s >= 0 and row.images_per_s == 100.0
    assert "torch" in row.versions or "maebench" in row.versions
    assert row.hardware


def test_exception_marks_failed_never_done(tmp_path):
    store = ResultsStore(tmp_path / "r.sqlite")
    with pytest.raises(RuntimeError):
        with store.run(task="coco", backbone="b", config={}):
            raise RuntimeError("boom")
    (row,) = store.rows(status=None)
    assert row.status == "failed" and "boom" in row.error and row.metrics == {}
    assert store.rows() == []                      # default query: done rows only


def test_interrupt_marks_failed_resumable(tmp_path):
    store = ResultsStore(tmp_path / "r.sqlite")
    with pytest.raises(KeyboardInterrupt):
        with store.run(task="coco", backbone="b", config={}):
            raise KeyboardInterrupt
    assert store.rows(status=None)[0].status == "failed-resumable"


def test_body_that_never_reports_is_failed(tmp_path):
    store = ResultsStore(tmp_path / "r.sqlite")
    with store.run(task="knn", backbone="b", config={}):
        pass
    assert store.rows(status=None)[0].status == "failed"


def _writer(path, worker, n):
    store = ResultsStore(path)
    for i in range(n):
        with store.run(task="knn", backbone=f"w{worker}", config={"i": i}, seed=i) as run:
            if i % 5 == 4:
                raise_later = True
            else:
                raise_later = False
            if not raise_later:
                run.finish({"top1": float(i)})


@pytest.mark.parametrize("writers", [2, 4])
def test_concurrent_writers_lose_no_rows(tmp_path, writers):
    path = tmp_path / "r.sqlite"
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(path), w, 20)) for w in range(writers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    con = sqlite3.connect(path)
    counts = dict(con.execute("SELECT status, COUNT(*) FROM runs GROUP BY status").fetchall())
    assert counts == {"done": 16 * writers, "failed": 4 * writers}
    # every done row carries its metrics: none marked done without them
    assert con.execute("SELECT COUNT(*) FROM runs WHERE status='done' AND metrics IS NULL").fetchone()[0] == 0


def test_results_path_env_and_override(tmp_path, monkeypatch):
    from maebench.home import results_path
    monkeypatch.setenv("MAEBENCH_RESULTS", str(tmp_path / "env.sqlite"))
    assert results_path() == tmp_path / "env.sqlite"
    assert results_path(tmp_path / "x.sqlite") == tmp_path / "x.sqlite"


def test_the_newest_finished_row_per_recipe_and_seed_is_computed_once(tmp_path):
    """results.newest_done: a repeated run of a recipe and seed replaces the earlier one; another
    seed, dataset or config key is another row; the backbone description beside the config is not."""
    from maebench.results import by_recipe, newest_done
    store = ResultsStore(tmp_path / "r.sqlite")

    def add(seed=0, dataset="shapes", info=None, **cfg):
        run_id = store.start(task="knn", backbone="b", dataset=dataset, config={"k": 20, **cfg}, seed=seed,
                             backbone_info=info)
        store.finish(run_id, {"top1": 1.0})
        return run_id

    add(info={"family": "mae"})                          # replaced by the last one
    keep = [add(seed=1), add(dataset="other"), add(k=10)]
    new = add(info={"family": "moco"})                   # same recipe and seed, other description
    rows = store.rows()
    assert [r.run_id for r in newest_done(rows)] == [*keep, new]             # not `old`
    assert {r.config_hash for r in newest_done(rows)} == {r.config_hash for r in rows}      # config_hash agrees
    groups = by_recipe(rows)
    assert sorted(len(g) for g in groups.values()) == [1, 1, 2] and groups[next(iter(groups))][0].run_id == new
def test_tasks_done_reads_finished_runs_only_and_creates_nothing(tmp_path):
    from maebench.errors import MaebenchError
    absent = ResultsStore(tmp_path / "none.sqlite")
    assert absent.tasks_done() == {} and not absent.path.exists()
    store = ResultsStore(tmp_path / "r.sqlite")
    for task in ("linprobe", "finetune", "linprobe"):
        with store.run(task=task, backbone="b", config={"t": task}, seed=len(task)) as run:
            run.finish({"top1": 1.0})
    with pytest.raises(RuntimeError):
        with store.run(task="coco", backbone="b", config={}):
            raise RuntimeError("boom")
    assert store.tasks_done() == {"b": ["finetune", "linprobe"]}           # distinct, sorted, done only
    (tmp_path / "bad.sqlite").write_text("not a database")
    with pytest.raises(MaebenchError, match="cannot read results store"):
        ResultsStore(tmp_path / "bad.sqlite").tasks_done()
