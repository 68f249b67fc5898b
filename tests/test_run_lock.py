"""Run locks and finished runs: one process trains in a run directory at a time; the same command
started twice fails at once in the second, naming the first (pid, host, start time); a lock left
by a dead process is taken over with a note; a finished run asked for again without --resume
prints its metrics, exits 0 and trains nothing, unless --force (or another --out)."""
import json
import os
import socket
import subprocess
import sys
import time

import pytest

from maebench.results import ResultsStore
from maebench.runlock import LOCK_NAME, RunLock, RunLocked


def test_a_held_lock_refuses_a_second_holder_naming_the_first(tmp_path):
    first = RunLock(tmp_path)
    assert first.acquire() is None
    with pytest.raises(RunLocked) as e:
        RunLock(tmp_path).acquire()                 # another open file description: flock conflicts
    message = str(e.value)
    assert f"run directory {tmp_path} is in use: pid {os.getpid()} on {socket.gethostname()} (started 20" in message
    assert "--out DIR" in message and "\n" not in message
    first.release()
    assert not (tmp_path / LOCK_NAME).exists()
    again = RunLock(tmp_path)
    assert again.acquire() is None                  # released: free for the next run, no note
    again.release()


def test_the_lock_of_a_dead_process_is_taken_over_with_a_note(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": pid, "host": "gpu-node-7", "started": 1.7e9}))
    lock = RunLock(tmp_path)
    note = lock.acquire()
    assert note == (f"took over the lock of run directory {tmp_path} from pid {pid} on gpu-node-7 "
                    "(started 2023-11-14 22:13:20 UTC), which ended without releasing it")
    assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    lock.release()


# ---- through the command line ------------------------------------------------------------------
def command(data, epochs: int, *extra) -> list[str]:
    return [sys.executable, "-m", "maebench", "run", "--task", "finetune", "--backbone", "scratch-vit-micro",
            "--data", str(data), "--epochs", str(epochs), "--batch-size", "10", "--set", "num_workers=0",
            "--set", "img_size=16", "--set", "eval_batch_size=16", *extra]


def start(args, home, name="run"):
    env = {**os.environ, "MAEBENCH_HOME": str(home), "OMP_NUM_THREADS": "1"}
    env.pop("MAEBENCH_RESULTS", None)
    out, err = open(home / f"{name}.out", "w+"), open(home / f"{name}.err", "w+")
    proc = subprocess.Popen(args, env=env, stdout=out, stderr=err, text=True)
    proc.files = (out, err)
    return proc


def finish(*procs):
    """{pid: (exit code, stdout, stderr, seconds until it ended)} of processes started together."""
    t0, ended = time.monotonic(), {}
    while len(ended) < len(procs):
        for p in procs:
            if p.pid not in ended and p.poll() is not None:
                ended[p.pid] = time.monotonic() - t0
        assert time.monotonic() - t0 < 300
        time.sleep(0.05)
    out = {}
    for p in procs:
        for f in p.files:
            f.seek(0)
        out[p.pid] = (p.returncode, p.files[0].read(), p.files[1].read(), ended[p.pid])
        for f in p.files:
            f.close()
    return out


def once(args, home):
    (result,) = finish(start(args, home)).values()
    return result


def test_two_identical_commands_started_together_one_trains_the_other_names_it(small_set, tmp_path):
    args = command(small_set, 40)
    results = finish(start(args, tmp_path, "a"), start(args, tmp_path, "b"))
    (winner,) = [pid for pid, r in results.items() if r[0] == 0]
    (loser,) = [pid for pid, r in results.items() if r[0] != 0]
    code, out, err, t_loser = results[loser]
    assert code == 1 and "finetune epoch" not in out
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("maebench: error: run directory "), err
    assert f"is in use: pid {winner} on {socket.gethostname()} (started " in lines[0]
    assert "finetune epoch 40/40" in results[winner][1]
    assert t_loser < results[winner][3]                  # the second stopped while the first still trained
    (row,) = ResultsStore(tmp_path / "results.sqlite").rows(status=None)
    assert row.status == "done"


def test_a_finished_run_asked_again_prints_its_metrics_and_trains_nothing_unless_forced(small_set, tmp_path):
    args = command(small_set, 1)
    code, out, err, _ = once(args, tmp_path)
    assert code == 0, err
    (row,) = ResultsStore(tmp_path / "results.sqlite").rows()
    code, out, err, _ = once(args, tmp_path)
    assert code == 0, err
    assert f"run {row.run_id} is already done" in out and f"top1 {row.metrics['top1']:.4g}" in out
    assert "--force trains it again" in out and "finetune epoch" not in out + err
    (same,) = ResultsStore(tmp_path / "results.sqlite").rows()
    assert same.wall_time_s == row.wall_time_s                # the row was not touched
    code, out, err, _ = once(args + ["--force"], tmp_path)
    assert code == 0, err
    assert "finetune epoch 1/1" in out and "already done" not in out
    (forced,) = ResultsStore(tmp_path / "results.sqlite").rows()
    assert forced.status == "done" and forced.run_id == row.run_id
    code, out, err, _ = once(args + ["--out", str(tmp_path / "elsewhere")], tmp_path)   # another directory:
    assert code == 0 and "finetune epoch 1/1" in out and "already done" not in out        # a new run
