"""The run lifecycle is one API: a RunSpec pickles, `runner.execute` turns it into rows, a done
run is reported and not trained again, and a recipe that fails leaves a failed row."""
import pickle

import pytest

from maebench import runner
from maebench.results import ResultsStore
from maebench.runspec import Program, RunSpec
from maebench.tasks.table import TASKS

FAST = ("num_workers=0", "eval_batch_size=16", "warmup_epochs=0")


def test_a_pickled_spec_runs_and_a_done_run_is_not_trained_again(micro, small_set, capsys):
    spec = RunSpec(program=TASKS["finetune"], backbone=micro, data=str(small_set), epochs=1, batch_size=8,
                   sets=FAST)
    shipped = pickle.loads(pickle.dumps(spec))              # what a launcher sends to another process
    assert shipped == spec
    (first,) = runner.execute(shipped)
    (row,) = ResultsStore().rows(task="finetune")
    assert (row.run_id, row.status, row.seed) == (first.run_id, "done", 0)
    assert first.metrics["top1"] == row.metrics["top1"] and not first.done_before
    # how it ran, planned before the loop: the conftest's one thread, the whole batch of 8 at once
    assert row.hardware.endswith("; 1 torch thread per process, micro-batch 8 x accum_iter 1"), row.hardware

    (again,) = runner.execute(spec)
    assert again.done_before and again.run_id == first.run_id and again.metrics == row.metrics
    assert "is already done" in capsys.readouterr().out
    assert len(ResultsStore().rows(task="finetune", status=None)) == 1


def failing_recipes(spec):
    """A program whose computation raises inside the run: its row must end failed."""
    def compute(run):
        raise RuntimeError("boom")
    yield runner.Recipe(task="probe-failure", backbone="none", dataset="none", config={"x": 1}, compute=compute)


def test_a_recipe_that_fails_inside_the_run_leaves_a_failed_row():
    program = Program("failing", "task", "knn", f"{__name__}:failing_recipes")
    with pytest.raises(RuntimeError, match="boom"):
        runner.execute(RunSpec(program=program))
    (row,) = ResultsStore().rows(status=None)
    assert row.task == "probe-failure" and row.status == "failed"


def test_validation_errors_come_before_any_row(micro, small_set):
    from maebench.errors import UsageError
    spec = RunSpec(program=TASKS["finetune"], backbone=micro, data=str(small_set), batch_size=999, sets=FAST)
    with pytest.raises(UsageError, match="batch_size 999"):
        runner.execute(spec)
    assert ResultsStore().rows(status=None) == []
