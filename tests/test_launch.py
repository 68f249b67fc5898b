"""The launcher interface on its real code paths, without a cluster.

- submitit's local executor runs real submissions (pickled commands, log files, job states): a
  job of 2 tasks forms one gloo process group from the job's variables, as on SLURM; a job
  signalled with SIGUSR2 (SLURM's warning before a time limit) checkpoints, is requeued by
  submitit and finishes with --resume; what needs a failed job is never submitted.
- With SLURM's own executor (a stand-in `sbatch` on the PATH records the scripts), jobs with the
  same needs and resources become one array, needs become afterok dependencies, and resources
  come from the protocol's `resources:` table, launcher.yaml and the flags, in that order.
- Bad input: no sbatch, unknown launcher.yaml keys, a bad --time.
"""
from __future__ import annotations

import os
import signal
import stat
import time
from pathlib import Path

import pytest

submitit = pytest.importorskip("submitit")

from maebench.cli import main
from maebench.launch import Job, Resources
from maebench.launch.settings import Settings, load, parse_minutes, strip
from maebench.launch.slurm import SlurmLauncher
from maebench.results import ResultsStore

PRETRAIN = ["pretrain", "--method", "mae", "--arch", "vit-micro", "--img-size", "16", "--batch-size", "8",
            "--set", "decoder_embed_dim=32", "--set", "decoder_depth=1", "--set", "num_workers=0",
            "--deterministic", "--seed", "1"]


def local_launcher(tmp_path) -> SlurmLauncher:
    folder = tmp_path / "jobs"
    return SlurmLauncher(Settings(launcher="slurm"), folder=folder,
                         executor=submitit.LocalExecutor(folder=folder / "%j"))


def test_a_two_task_job_forms_one_process_group_and_rank0_alone_writes_the_row(small_set, tmp_path):
    job = Job("pretrain", [*PRETRAIN, "--data", str(small_set), "--epochs", "1", "--name", "two-tasks"],
              resources=Resources(tasks_per_node=2, time_min=10))
    ended = []
    local_launcher(tmp_path).run([job], finished=lambda j, s: ended.append(j.label))
    assert ended == ["pretrain"]
    logs = sorted((tmp_path / "jobs").glob("*/*_log.out"))
    assert [p.name.split("_")[1] for p in logs] == ["0", "1"]          # one log per task
    assert "x 2 process(es) = batch 8" in logs[0].read_text()           # micro-batch 4 on each of 2 ranks
    (row,) = ResultsStore().rows(task="pretrain-mae")
    assert row.status == "done" and row.backbone == "two-tasks"


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(c) for c in path.read_text().split()] if path.exists() else []


def test_a_preempted_job_checkpoints_is_requeued_and_finishes_with_resume(small_set, tmp_path):
    argv = [*PRETRAIN, "--data", str(small_set), "--epochs", "100", "--name", "preempted",
            "--set", "checkpoint_every=1000", "--set", "log_every=1"]
    from maebench.launch.job import Command
    launcher = local_launcher(tmp_path)          # submitted as `run` submits it, but not waited for here
    launcher.executor.update_parameters(**launcher.parameters(Resources(time_min=10), None))
    sj = launcher.executor.submit(Command(argv))
    deadline = time.time() + 300
    while "epoch 2/100" not in (sj.paths.stdout.read_text() if sj.paths.stdout.exists() else ""):
        assert time.time() < deadline and not sj.done(), "the job never reached its second epoch"
        time.sleep(0.2)
    for pid in _children(sj._process.pid):      # as SLURM signals every task of the job
        os.kill(pid, signal.SIGUSR2)
    sj.wait()
    assert sj.exception() is None, sj.exception()
    out = sj.paths.stdout.read_text() + sj.paths.stderr.read_text()
    assert "stopped by SIGUSR2" in out and "Requeued job" in out
    assert "resumed from" in out and "at epoch" in out                # the second start continued
    (row,) = ResultsStore().rows(task="pretrain-mae")
    assert row.status == "done"
    import torch
    ckpt = torch.load(Path(row.out_dir) / "checkpoint.pth", weights_only=True)
    assert ckpt["epoch"] == 100 and len(ckpt["history"]) == 100


def test_what_needs_a_failed_job_is_never_submitted_and_the_error_names_its_log(tmp_path, capsys):
    from maebench.errors import MaebenchError
    started = []
    with pytest.raises(MaebenchError, match=r"job 'bad' failed .*its log: .*_log.out"):
        local_launcher(tmp_path).run([Job("bad", ["run", "--task", "nope"]), Job("after", ["--version"], needs=("bad",)),
                                      Job("free", ["--version"])], started=lambda j: started.append(j.label))
    assert sorted(started) == ["bad", "free"]
    assert "unknown task 'nope'" in capsys.readouterr().out            # the end of its log


@pytest.fixture
def sbatch(tmp_path, monkeypatch):
    """A stand-in `sbatch` that records each script it is given and answers with a job id (and an
    `srun`, whose presence is how submitit tells a SLURM machine)."""
    bin_dir, record = tmp_path / "bin", tmp_path / "sbatch-scripts"
    bin_dir.mkdir()
    record.mkdir()
    script = bin_dir / "sbatch"
    script.write_text(f'#!/bin/sh\nn=$(ls {record} | wc -l); n=$((n + 100))\ncp "$1" {record}/$n.sh\n'
                      'echo "Submitted batch job $n"\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 1\n")
    (bin_dir / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return record


def test_jobs_become_arrays_with_afterok_dependencies_and_the_protocols_resources(sbatch, tmp_path):
    settings = Settings(launcher="slurm", partition="learnlab", account="vision", time="2:00")
    launcher = SlurmLauncher(settings, folder=tmp_path / "jobs")
    big = settings.resources(Resources(nodes=2, gpus_per_node=8, cpus_per_task=10, mem_gb=320, time_min=4320))
    small = Resources(time_min=30)
    jobs = [Job("pretrain", ["pretrain", "--method", "mae"], resources=big),
            Job("ft 0", ["run", "--seed", "0"], needs=("pretrain",), resources=small),
            Job("ft 1", ["run", "--seed", "1"], needs=("pretrain",), resources=small),
            Job("other", ["run"], resources=small)]
    submitted = launcher.submit_all(jobs)
    scripts = {int(p.stem): p.read_text() for p in sbatch.glob("*.sh")}
    assert len(scripts) == 3                                            # ft 0 and ft 1: one array
    pre, other, ft = scripts[100], scripts[101], scripts[102]
    for line in ("--nodes=2", "--ntasks-per-node=8", "--gpus-per-node=8", "--cpus-per-task=10", "--mem=320GB",
                 "--time=120", "--partition=learnlab", "--account=vision", "--signal=USR2@120",
                 "--kill-on-invalid-dep=yes"):
        assert f"#SBATCH {line}" in pre, line
    assert "--array=0-1%2" in ft and f"--dependency=afterok:{submitted['pretrain'].job_id}" in ft
    assert "--dependency" not in other and "--array" not in other and "--gpus-per-node" not in other
    assert submitted["ft 1"].job_id == "102_1"


def test_launcher_yaml_gives_defaults_the_flags_override_and_bad_keys_are_named(tmp_path, capsys):
    home = Path(os.environ["MAEBENCH_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    (home / "launcher.yaml").write_text("launcher: slurm\npartition: learnlab\ntime: 90\n")
    s = load({"partition": "devlab", "time": None})
    assert (s.launcher, s.partition, s.resources(Resources()).time_min) == ("slurm", "devlab", 90)
    (home / "launcher.yaml").write_text("partion: learnlab\n")
    assert main(["run", "--task", "knn", "--backbone", "scratch-vit-micro", "--seeds", "0,1"]) == 2
    err = capsys.readouterr().err
    assert "launcher.yaml: unknown key 'partion' (did you mean: partition?)" in err and len(err.splitlines()) == 1


def test_slurm_without_sbatch_is_one_line_that_names_the_local_launcher(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))                          # no sbatch anywhere
    assert main(["run", "--task", "knn", "--backbone", "scratch-vit-micro", "--launcher", "slurm"]) == 2
    err = capsys.readouterr().err
    assert "`sbatch` is not on the PATH" in err and "--launcher local" in err and len(err.splitlines()) == 1


def test_time_values_and_the_command_line_a_job_runs():
    assert parse_minutes("90", "--time") == 90 and parse_minutes("1:30", "--time") == 90
    assert parse_minutes("1:30:01", "--time") == 91
    with pytest.raises(Exception, match="expected minutes or H:MM"):
        parse_minutes("ninety", "--time")
    assert strip(["run", "--task", "knn", "--launcher", "slurm", "--nodes=2", "--gpus-per-node", "8", "--seed", "1"]) == \
        ["run", "--task", "knn", "--seed", "1"]


# ---- maebench grid ------------------------------------------------------------------------------
def test_a_grid_runs_every_backbone_task_and_seed_as_a_job(micro, small_set, tmp_path, capsys):
    grid = tmp_path / "grid.yaml"
    grid.write_text(f"backbones: [{micro}]\ntasks:\n  knn: [--label-fraction, 0.5]\nseeds: [0, 1]\n"
                    f"datasets: [{small_set}]\nset: [num_workers=0]\nresults: {tmp_path / 'grid.sqlite'}\n")
    assert main(["grid", str(grid), "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [f"maebench run --task knn --backbone micro --data {small_set} --label-fraction 0.5 "
                     f"--set num_workers=0 --results {tmp_path / 'grid.sqlite'} --seed {s}" for s in (0, 1)]
    assert main(["grid", str(grid), "--jobs", "2"]) == 0
    rows = ResultsStore(tmp_path / "grid.sqlite").rows(task="knn")
    assert sorted(r.seed for r in rows) == [0, 1] and all(r.status == "done" for r in rows)


@pytest.mark.parametrize("text, message", [
    ("backbones: [micro]\ntask: [knn]\n", "unknown key 'task' (did you mean: tasks"),
    ("backbones: [mirco]\ntasks: [knn]\n", "backbones: unknown backbone 'mirco' (did you mean: micro"),
    ("backbones: [micro]\ntasks: [knnn]\n", "tasks: unknown task 'knnn' (did you mean: knn?)"),
    ("backbones: [micro]\ntasks:\n  knn: [--blocks, 1]\n", "tasks: knn: --blocks applies to --task partial, not knn"),
    ("backbones: [micro]\ntasks:\n  knn: [--no-such-flag]\n", "tasks: knn: unrecognized arguments: --no-such-flag"),
    ("backbones: [micro]\n", "`tasks` is missing or empty"),
])
def test_a_bad_grid_file_is_one_line_naming_the_file_and_entry_and_nothing_runs(text, message, micro, tmp_path, capsys):
    grid = tmp_path / "bad.yaml"
    grid.write_text(text)
    assert main(["grid", str(grid)]) == 2
    err = capsys.readouterr().err
    assert f"{grid}: {message}" in err and len(err.splitlines()) == 1, err
    assert not (Path(os.environ["MAEBENCH_HOME"]) / "results.sqlite").exists()
