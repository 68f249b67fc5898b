"""Faults at the command line, for every training command (pretrain --method mae, finetune, coco,
ade20k): a run killed with SIGKILL and resumed with `--resume` ends exactly where an
uninterrupted run ends (weights within 1e-6, equal metrics); SIGTERM / SIGINT, in training or
in the final evaluation, leave a checkpoint and a failed-resumable row, and the resumed run
finishes done and exact; a diverging loss, an out-of-memory error and a full disk each stop the
run with one clear line, a failed row and the last good checkpoint intact. Engine-level versions
of some of these live in test_engine.py; here each goes through `python -m maebench` in its own
process, as a user or a cluster scheduler meets it.

Kills are not raced against the clock: the process under test runs the real CLI through a small
bootstrap (BOOT below) that stops at a chosen place (before optimizer step N, half-way through
writing checkpoint N, or as the final evaluation starts), writes a marker file and waits there.
The test then sends the signal, so it always lands mid-run at a known place, however loaded the
machine is. Out-of-memory and disk-full errors are injected the same way. Everything runs at
CPU scale: vit-micro, a few 16-64 px images, 2-3 steps per epoch.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from maebench.results import ResultsStore

RUN_FILES = ["checkpoint.pth", "config.yaml", "log.jsonl", "stdout.log"]   # a failed run's directory: its logs too

# Runs `python -m maebench ARGS...` with one pause point (env MAEBENCH_TEST_PAUSE):
#   step:N  pause before optimizer step N (0-based: N steps are done)
#   save:N  pause inside the N-th training-checkpoint write, half of its bytes in the temp file
#   eval:0  pause when the (final) evaluation starts sharding the val split
#   oom:N   no pause: the N-th backward pass raises torch.OutOfMemoryError
#   enospc:N  no pause: the N-th training-checkpoint write fails with ENOSPC (disk full) half-way
# On pausing it writes $MAEBENCH_TEST_MARKER.0 and waits until SIGINT/SIGTERM reached the
# engine's handler (or a handler raises), then carries on unchanged.
BOOT = r'''
import io, os, runpy, signal, sys, time
import torch
from maebench import checkpointer, engine

how, n = os.environ["MAEBENCH_TEST_PAUSE"].split(":")
n = int(n)
base = os.environ["MAEBENCH_TEST_MARKER"]
state = {"steps": 0, "saves": 0, "writing": False, "paused": False}


def pause():
    state["paused"] = True
    with open(f"{base}.0", "w") as f:
        f.write(str(os.getpid()))
    for _ in range(60_000):                       # 10 minutes at most, then give up loudly
        handler = signal.getsignal(signal.SIGTERM)
        if getattr(getattr(handler, "__self__", None), "signum", None) is not None:
            return                                # the engine has recorded a signal
        time.sleep(0.01)
    os._exit(99)


real_lr_at, real_save_atomic, real_torch_save = engine.lr_at, checkpointer.save_atomic, torch.save


def lr_at(*args, **kwargs):                       # called once at the start of every optimizer step
    if how == "step" and not state["paused"] and state["steps"] == n:
        pause()
    state["steps"] += 1
    return real_lr_at(*args, **kwargs)


def save_atomic(obj, path):                       # the engine's checkpoint writes
    state["saves"] += 1
    state["writing"] = how == "save" and state["saves"] == n
    try:
        return real_save_atomic(obj, path)
    finally:
        state["writing"] = False


def torch_save(obj, f, *args, **kwargs):
    if how == "enospc" and state["saves"] == n:
        import errno
        f.write(b"half a checkpoint")
        raise OSError(errno.ENOSPC, "No space left on device")
    if not state["writing"] or state["paused"]:
        return real_torch_save(obj, f, *args, **kwargs)
    buf = io.BytesIO()
    real_torch_save(obj, buf, *args, **kwargs)
    data = buf.getvalue()
    f.write(data[: len(data) // 2])
    f.flush()
    pause()
    f.write(data[len(data) // 2:])


from maebench import distributed
real_shard_init = distributed.ShardSampler.__init__


def shard_init(self, *args, **kwargs):
    if how == "eval" and not state["paused"]:
        pause()
    real_shard_init(self, *args, **kwargs)


real_backward, backwards = torch.Tensor.backward, [0]


def backward(self, *args, **kwargs):
    backwards[0] += 1
    if how == "oom" and backwards[0] == n:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    return real_backward(self, *args, **kwargs)


torch.Tensor.backward = backward
engine.lr_at, checkpointer.save_atomic, torch.save = lr_at, save_atomic, torch_save
distributed.ShardSampler.__init__ = shard_init
sys.argv = ["maebench", *sys.argv[1:]]
runpy.run_module("maebench", run_name="__main__", alter_sys=True)
'''

DATA_OPTS = ["--classes", "3", "--img-size", "16", "--train-per-class", "8", "--val-per-class", "3",
             "--coco-img-size", "64", "--coco-train-images", "4", "--coco-val-images", "3",
             "--ade-img-size", "32", "--ade-train-images", "4", "--ade-val-images", "3"]

# 3 epochs of each command; STEPS = optimizer steps per epoch (24 classification images / 8,
# 4 COCO or ADE images / 2)
COMMANDS = {
    "pretrain": ["pretrain", "--method", "mae", "--arch", "vit-micro", "--data", "{data}/classification",
                 "--img-size", "16", "--batch-size", "8", "--name", "fault-mae",
                 "--set", "decoder_embed_dim=32", "--set", "decoder_depth=1"],
    "finetune": ["run", "--task", "finetune", "--backbone", "scratch-vit-micro", "--data", "{data}/classification",
                 "--batch-size", "8", "--set", "img_size=16", "--set", "eval_batch_size=16"],
    "coco": ["run", "--task", "coco", "--backbone", "scratch-vit-micro", "--data", "{data}/coco",
             "--batch-size", "2", "--set", "eval_batch_size=4"],
    "ade20k": ["run", "--task", "ade20k", "--backbone", "scratch-vit-micro", "--data", "{data}/ade20k",
               "--batch-size", "2", "--set", "img_size=32", "--set", "crop_size=32", "--set", "channels=16",
               "--set", "aux_channels=8"],
}
STEPS = {"pretrain": 3, "finetune": 3, "coco": 2, "ade20k": 2}
COMMON = ["--epochs", "3", "--seed", "3", "--deterministic", "--set", "num_workers=0",
          "--set", "checkpoint_every=1", "--set", "warmup_epochs=1"]
TIMEOUT = 600


def env_for(home: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "MAEBENCH_RESULTS"}
    return {**env, "MAEBENCH_HOME": str(home), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **extra}


def command(task: str, data: Path, *extra: str) -> list[str]:
    return [a.format(data=data) for a in COMMANDS[task]] + COMMON + list(extra)


def maebench(args: list[str], home: Path, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "maebench", *args], env=env_for(home), cwd=cwd,
                          capture_output=True, text=True, timeout=TIMEOUT)


class Paused:
    """`maebench ARGS` started through BOOT; returns once it waits at its pause point."""

    def __init__(self, args: list[str], home: Path, work: Path, pause: str):
        work.mkdir(parents=True, exist_ok=True)
        boot = work / "boot.py"
        boot.write_text(BOOT)
        self.marker = work / "paused"
        self.out, self.err = open(work / "stdout", "w+"), open(work / "stderr", "w+")
        self.proc = subprocess.Popen([sys.executable, str(boot), *args], cwd=work, stdout=self.out,
                                     stderr=self.err, text=True,
                                     env=env_for(home, MAEBENCH_TEST_PAUSE=pause,
                                                 MAEBENCH_TEST_MARKER=str(self.marker)))
        deadline = time.monotonic() + TIMEOUT
        while not Path(f"{self.marker}.0").exists():
            if self.proc.poll() is not None:
                pytest.fail(f"the run ended (exit {self.proc.returncode}) before its pause point:\n{self.stderr()[-3000:]}")
            if time.monotonic() > deadline:
                self.proc.kill()
                pytest.fail("the run never reached its pause point")
            time.sleep(0.05)

    def signal(self, sig: int) -> int:
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(TIMEOUT)
        finally:
            self.out.close()
            self.err.close()

    def stderr(self) -> str:
        if not self.err.closed:
            self.err.flush()
        return Path(self.err.name).read_text()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    out = tmp_path_factory.mktemp("faults-data")
    r = subprocess.run([sys.executable, "-m", "maebench", "data", "prepare", "shapes", "--out", str(out), *DATA_OPTS],
                       env=env_for(out / "home"), capture_output=True, text=True, timeout=TIMEOUT)
    assert r.returncode == 0, r.stderr
    return out


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory):
    """task -> (final weights, result row) of an uninterrupted run. The four reference runs start
    at once, one at a time in the background, beside the tests' own runs."""
    def run(task: str, root: Path):
        r = maebench(command(task, data, "--out", str(root / "run"), "--results", str(root / "results.sqlite")),
                     root / "home", root)
        assert r.returncode == 0, r.stderr[-3000:]
        (row,) = ResultsStore(root / "results.sqlite").rows(status=None)
        return final_weights(task, root / "run"), row

    pool = ThreadPoolExecutor(max_workers=1)
    futures = {task: pool.submit(run, task, tmp_path_factory.mktemp(f"ref-{task}")) for task in COMMANDS}
    yield lambda task: futures[task].result()
    pool.shutdown(cancel_futures=True)


def final_weights(task: str, run_dir: Path) -> dict:
    """The trained model: pretraining's registered final.pth, a task's last checkpoint."""
    name = "final.pth" if task == "pretrain" else "checkpoint.pth"
    return torch.load(run_dir / name, map_location="cpu", weights_only=True)["model"]


def run_dir(home: Path) -> Path:
    """The run directory a command without --out uses: $MAEBENCH_HOME/runs/<run id>/."""
    (d,) = (home / "runs").iterdir()
    return d


def rows(home: Path):
    return ResultsStore(home / "results.sqlite").rows(status=None)


def assert_same_run(task: str, home: Path, ref) -> None:
    """Weights within 1e-6 and the same metrics as the uninterrupted reference run."""
    ref_weights, ref_row = ref
    weights = final_weights(task, run_dir(home))
    assert weights.keys() == ref_weights.keys()
    for k, v in ref_weights.items():
        if v.is_floating_point():
            assert (weights[k] - v).abs().max().item() <= 1e-6, k
        else:
            assert torch.equal(weights[k], v), k
    (row,) = rows(home)
    assert row.status == "done" and row.error is None
    assert row.run_id == ref_row.run_id                     # same command -> same run id
    assert row.metrics.keys() == ref_row.metrics.keys()
    for k, v in ref_row.metrics.items():
        if isinstance(v, float):
            assert row.metrics[k] == pytest.approx(v, abs=1e-6), k
        else:
            assert row.metrics[k] == v, k


def one_clear_error(stderr: str) -> str:
    """The single `maebench: error:` message, which must start its own line (progress bars
    redraw with carriage returns, so both \\r and \\n end a line here), and no traceback."""
    assert "Traceback" not in stderr, stderr[-3000:]
    lines = [line for line in stderr.replace("\r", "\n").split("\n") if "maebench: error:" in line]
    assert len(lines) == 1, stderr[-3000:]
    assert lines[0].startswith("maebench: error: "), repr(lines[0])
    return lines[0]


# ---- SIGKILL, then --resume ------------------------------------------------------------------
@pytest.mark.parametrize("task", ["pretrain", "finetune", "coco", "ade20k"])
def test_sigkill_then_resume_equals_an_uninterrupted_run(task, data, reference, tmp_path, _isolated_home):
    """Killed with SIGKILL after the first epoch's checkpoint and one more step (pretraining:
    half-way through writing the second checkpoint, which must not replace the first); the same
    command with --resume finds its run directory by its run id and ends exactly as the
    uninterrupted run does."""
    home = _isolated_home
    pause = "save:2" if task == "pretrain" else f"step:{STEPS[task] + 1}"
    proc = Paused(command(task, data), home, tmp_path / "killed", pause)
    ckpt = run_dir(home) / "checkpoint.pth"
    if task == "pretrain":
        temps = list(ckpt.parent.glob(".checkpoint.pth.*.tmp"))
        assert len(temps) == 1 and temps[0].stat().st_size > 0      # the second write is under way
    assert proc.signal(signal.SIGKILL) == -signal.SIGKILL             # killed, not finished
    ck = torch.load(ckpt, map_location="cpu", weights_only=True)      # the first epoch's, intact
    assert (ck["epoch"], ck["step_in_epoch"]) == (1, 0)
    assert not (ckpt.parent / "final.pth").exists()
    (row,) = rows(home)
    assert row.status == "running"                 # SIGKILL leaves no chance to say otherwise

    r = maebench(command(task, data, "--resume"), home, tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "resumed from" in r.stdout + r.stderr
    assert_same_run(task, home, reference(task))


# ---- SIGTERM / SIGINT ---------------------------------------------------------------------------
@pytest.mark.parametrize("task, sig", [("pretrain", signal.SIGTERM), ("finetune", signal.SIGINT)])
def test_signal_checkpoints_marks_failed_resumable_and_resume_finishes(task, sig, data, reference, tmp_path,
                                                                       _isolated_home):
    home = _isolated_home
    proc = Paused(command(task, data), home, tmp_path / "signalled", f"step:{STEPS[task] + 1}")
    rc = proc.signal(sig)
    assert rc == 130
    err = one_clear_error(proc.stderr())
    assert f"stopped by {sig.name} at epoch 2, step 2" in err and "--resume" in err
    ck = torch.load(run_dir(home) / "checkpoint.pth", map_location="cpu", weights_only=True)
    assert (ck["epoch"], ck["step_in_epoch"]) == (1, 2)               # mid-epoch, where it stopped
    (row,) = rows(home)
    assert row.status == "failed-resumable" and sig.name in row.error
    assert sorted(p.name for p in run_dir(home).iterdir()) == RUN_FILES      # no final.pth, no temp file
    if task == "pretrain":
        assert not (home / "registry.json").exists()                 # nothing registered

    r = maebench(command(task, data, "--resume"), home, tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert_same_run(task, home, reference(task))
    if task == "pretrain":
        from maebench.backbones import registry
        assert registry.entry("fault-mae").family == "mae-norm-pixel"


def test_sigterm_during_the_final_evaluation_marks_failed_resumable_and_resume_evaluates(data, reference, tmp_path,
                                                                                       _isolated_home):
    """Training is over (its last checkpoint written) when SIGTERM arrives: the command ends as an
    interrupt (exit 130, row failed-resumable) rather than dying with its row left 'running', and
    --resume only evaluates the last checkpoint, to the uninterrupted run's numbers."""
    home = _isolated_home
    proc = Paused(command("ade20k", data), home, tmp_path / "signalled", "eval:0")
    assert proc.signal(signal.SIGTERM) == 130
    err = proc.stderr()
    assert "Traceback" not in err and err.strip().splitlines()[-1] == "maebench: interrupted by SIGTERM", err[-3000:]
    ck = torch.load(run_dir(home) / "checkpoint.pth", map_location="cpu", weights_only=True)
    assert (ck["epoch"], ck["step_in_epoch"]) == (3, 0)
    (row,) = rows(home)
    assert row.status == "failed-resumable"

    r = maebench(command("ade20k", data, "--resume"), home, tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert_same_run("ade20k", home, reference("ade20k"))


# ---- a diverging loss -------------------------------------------------------------------------------
def test_diverging_loss_stops_with_one_line_a_failed_row_and_the_last_good_checkpoint(data, tmp_path, _isolated_home):
    """base_lr 1e30 with one step per epoch: the warm-up's first step has lr 0 (epoch 1 is
    finite), epoch 2's step blows the weights up, and epoch 3's loss is no longer finite."""
    home = _isolated_home
    args = command("pretrain", data, "--batch-size", "24", "--epochs", "4", "--set", "base_lr=1e30")
    r = maebench(args, home, tmp_path)
    assert r.returncode == 1
    err = one_clear_error(r.stderr)
    assert "loss became non-finite at step 2 (epoch 3)" in err and "last good checkpoint" in err
    (row,) = rows(home)
    assert row.status == "failed" and "NonFiniteLoss" in row.error
    d = run_dir(home)
    assert sorted(p.name for p in d.iterdir()) == RUN_FILES          # no final.pth, no temp file
    ck = torch.load(d / "checkpoint.pth", map_location="cpu", weights_only=True)
    assert (ck["epoch"], ck["step_in_epoch"]) == (2, 0)
    assert all(torch.isfinite(v).all() for v in ck["model"].values())
    assert [h["epoch"] for h in ck["history"]] == [1, 2]
    assert not (home / "registry.json").exists()


# ---- out of memory, a full disk --------------------------------------------------------------------
@pytest.mark.parametrize("fault, message", [
    ("oom:5", "out of memory at step 4 with 8 images per process: lower batch_size or raise accum_iter"),
    ("enospc:2", "No space left on device; the previous checkpoint is intact"),
])
def test_resource_fault_is_one_line_a_failed_row_and_the_last_good_checkpoint(fault, message, data, tmp_path,
                                                                              _isolated_home):
    """Injected (through BOOT) in epoch 2 of a pretraining run: the 5th backward pass runs out of
    memory, or the disk fills up while the epoch-2 checkpoint is written."""
    home = _isolated_home
    (tmp_path / "boot.py").write_text(BOOT)
    r = subprocess.run([sys.executable, str(tmp_path / "boot.py"), *command("pretrain", data)], cwd=tmp_path,
                       env=env_for(home, MAEBENCH_TEST_PAUSE=fault, MAEBENCH_TEST_MARKER=str(tmp_path / "m")),
                       capture_output=True, text=True, timeout=TIMEOUT)
    assert r.returncode == 1
    assert message in one_clear_error(r.stderr)
    (row,) = rows(home)
    assert row.status == "failed"
    d = run_dir(home)
    assert sorted(p.name for p in d.iterdir()) == RUN_FILES          # no final.pth, no temp file left
    ck = torch.load(d / "checkpoint.pth", map_location="cpu", weights_only=True)
    assert (ck["epoch"], ck["step_in_epoch"]) == (1, 0)
    assert not (home / "registry.json").exists()
