"""Every run leaves its record in its run directory: config.yaml (what ran, with what, where),
log.jsonl (one line per log interval, one per epoch, one final line; a resumed run has exactly
one line per epoch and step), stdout.log (its output), TensorBoard event files when asked; and
`maebench runs list | show | clean` read and tidy those directories."""
import json
import shlex
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml

from image_helpers import image_folder
from maebench import cli, runner
from maebench.lr_rule import config_peak_lr
from maebench.optim import lr_at
from maebench.results import ResultsStore
from maebench.runlog import RunLog, read
from maebench.runspec import RunSpec
from maebench.tasks.table import TASKS

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def lines(run_dir):
    return [json.loads(line) for line in (Path(run_dir) / "log.jsonl").read_text().splitlines()]


def kind(log, k):
    return [r for r in log if r["kind"] == k]


# ---- a fine-tuning run --------------------------------------------------------------------------
def test_a_finetune_run_writes_config_log_and_stdout_and_its_lr_follows_the_schedule(micro, small_set):
    stdout = sys.stdout
    spec = RunSpec(program=TASKS["finetune"], backbone=micro, data=str(small_set), epochs=2, batch_size=8,
                   sets=("num_workers=0", "eval_batch_size=16", "warmup_epochs=1", "log_every=2", "clip_grad=1.0"))
    (out,) = runner.execute(spec)
    assert sys.stdout is stdout                         # the tee is undone after the run
    (row,) = ResultsStore().rows(task="finetune")
    run_dir = Path(out.out_dir)

    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert (cfg["run_id"], cfg["task"], cfg["backbone"], cfg["seed"]) == (row.run_id, "finetune", micro, 0)
    assert cfg["command"] == shlex.join(sys.argv) and cfg["host"] and cfg["started"]
    assert set(cfg["versions"]) == {"maebench", "torch", "timm", "python"}
    assert cfg["versions"]["torch"] == torch.__version__.split("+")[0] or cfg["versions"]["torch"] == torch.__version__
    stored = {k: v for k, v in row.config.items() if not k.startswith("backbone_")}
    assert {k: v for k, v in cfg["config"].items() if k != "backbone_info"} == json.loads(json.dumps(stored))
    assert cfg["config"]["backbone_info"]["arch"] == "vit-micro"

    log = lines(run_dir)                                # every line parses
    steps, epochs, finals = kind(log, "step"), kind(log, "epoch"), kind(log, "final")
    assert len(steps) + len(epochs) + len(finals) == len(log) and log[-1] is finals[-1]
    # 40 images / batch 8 = 5 steps per epoch; a line every 2 steps and at each epoch's end
    assert [r["step"] for r in steps] == [2, 4, 5, 7, 9, 10]
    assert [r["epoch"] for r in epochs] == [1, 2] and [r["step"] for r in epochs] == [5, 10]
    history = torch.load(run_dir / "checkpoint.pth", weights_only=False)["history"]
    assert [e["train_loss"] for e in epochs] == pytest.approx([h["loss"] for h in history], rel=1e-12)
    assert steps[-1]["loss"] == pytest.approx(epochs[-1]["train_loss"])       # the epoch's last running mean
    assert all(isinstance(e["n_parameters"], int) and e["n_parameters"] > 0 for e in epochs)
    assert {"train_lr", "train_loss", "epoch", "n_parameters"} <= set(epochs[-1])

    peak = config_peak_lr(row.config)
    for r in steps:                                     # the lr the step `step` trained at (its index: step - 1)
        want = lr_at(r["step"] - 1, lr=peak, min_lr=row.config["min_lr"], warmup_steps=5, total_steps=10,
                     schedule="cosine")
        assert r["lr"] == pytest.approx(want, rel=1e-9)
        # the patch embedding (layer 0 of depth 4) trains at layer_decay ** (4 + 1) of the head's lr
        assert r["lr_low"] / r["lr"] == pytest.approx(0.75 ** 5, rel=1e-9)
        assert r["grad_norm"] > 0 and r["images_per_s"] > 0 and r["peak_mem_mb"] > 0
    assert epochs[0]["train_lr"] == pytest.approx(np.mean([lr_at(s, lr=peak, min_lr=row.config["min_lr"],
                                                          warmup_steps=5, total_steps=10) for s in range(5)]))
    assert finals[0]["top1"] == row.metrics["top1"] and finals[0]["top5"] == row.metrics["top5"]

    text = (run_dir / "stdout.log").read_text()
    assert "finetune epoch 1/2: loss=" in text and "finetune epoch 2/2: loss=" in text
    assert f"(12 val images; run {row.run_id})" in text          # the report, printed inside the run
    assert "\r" not in text


def test_a_resumed_done_run_keeps_one_final_line_and_one_line_per_epoch(micro, small_set):
    spec = RunSpec(program=TASKS["finetune"], backbone=micro, data=str(small_set), epochs=2, batch_size=8,
                   sets=("num_workers=0", "eval_batch_size=16", "log_every=5"))
    (out,) = runner.execute(spec)
    before = lines(out.out_dir)
    runner.execute(spec.replace(resume=True))            # nothing left to train: evaluates again
    after = lines(out.out_dir)
    assert [r["kind"] for r in after] == ["step", "epoch", "step", "epoch", "final"]
    assert after[:4] == before[:4]
    assert yaml.safe_load((Path(out.out_dir) / "config.yaml").read_text())["resumed"] is True


# ---- pretraining: a crash, --resume, TensorBoard ------------------------------------------------
def pretrain(data, out, *extra):
    """MAE on 16 images, batch 4: 4 steps per epoch, 2 epochs, a checkpoint and a log line every step."""
    return ["pretrain", "--method", "mae", "--arch", "vit-micro", "--data", str(data), "--img-size", "16",
            "--patch-size", "4", "--epochs", "2", "--batch-size", "4", "--name", "mae-runlog", "--out", str(out),
            "--deterministic", "--set", "decoder_embed_dim=32", "--set", "log_every=1",
            "--set", "checkpoint_every=1", *extra]


def test_a_run_killed_after_its_checkpoint_resumes_with_exactly_one_line_per_step_and_epoch(tmp_path, monkeypatch):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from maebench.backbones import mae as mae_mod
    data, run_dir = image_folder(tmp_path / "data"), tmp_path / "run"
    calls = {"n": 0}
    forward = mae_mod.MaskedAutoencoderViT.forward

    def crashing_forward(self, *a, **kw):               # dies in the 7th training step: epoch 2, step 3
        if torch.is_grad_enabled():
            calls["n"] += 1
            if calls["n"] == 7:
                raise RuntimeError("node lost")
        return forward(self, *a, **kw)

    monkeypatch.setattr(mae_mod.MaskedAutoencoderViT, "forward", crashing_forward)
    with pytest.raises(RuntimeError, match="node lost"):
        cli.main(pretrain(data, run_dir, "--tensorboard"))
    crashed = lines(run_dir)
    # logged after the last checkpoint (epoch 1 = step 4): what the resumed run must not repeat
    assert max(r["step"] for r in kind(crashed, "step")) == 6 and not kind(crashed, "final")
    monkeypatch.setattr(mae_mod.MaskedAutoencoderViT, "forward", forward)
    assert cli.main(pretrain(data, run_dir, "--tensorboard", "--resume")) == 0

    log = lines(run_dir)
    assert [r["step"] for r in kind(log, "step")] == [1, 2, 3, 4, 5, 6, 7, 8]
    assert [r["epoch"] for r in kind(log, "epoch")] == [1, 2] and len(kind(log, "final")) == 1
    assert kind(log, "step")[:4] == kind(crashed, "step")[:4]          # kept as they were
    meta = torch.load(run_dir / "final.pth", weights_only=True)["maebench"]
    assert [e["train_loss"] for e in kind(log, "epoch")] == pytest.approx(meta["loss_history"], abs=1e-6)
    assert "lr_low" in log[0] and log[0]["lr_low"] == log[0]["lr"]     # pretraining: no layer decay
    assert "grad_norm" not in log[0]                                  # clip_grad null: no norm computed

    text = (run_dir / "stdout.log").read_text()
    assert text.count("\n---- ") + text.startswith("---- ") == 2          # two processes, appended
    assert "maebench: error: RuntimeError: node lost" in text

    # TensorBoard's own reader: the killed run's steps 5 and 6 are purged, each step once
    acc = EventAccumulator(str(run_dir / "tensorboard"))
    acc.Reload()
    loss = acc.Scalars("train/loss")
    assert [e.step for e in loss] == [1, 2, 3, 4, 5, 6, 7, 8]
    assert [e.value for e in loss] == pytest.approx([r["loss"] for r in kind(log, "step")], rel=1e-6)
    assert [e.value for e in acc.Scalars("epoch/train_loss")] == pytest.approx(meta["loss_history"], rel=1e-6)
    assert [e.value for e in acc.Scalars("final/loss")] == pytest.approx([kind(log, "final")[0]["loss"]])


def test_runs_list_show_and_clean_read_and_tidy_the_run_directories(tmp_path, capsys):
    from maebench.commands.runs_disk import disk_size, size_text
    run_dir = tmp_path / "run"
    assert cli.main(pretrain(image_folder(tmp_path / "data"), run_dir)) == 0
    (row,) = ResultsStore().rows(task="pretrain-mae")
    capsys.readouterr()

    assert cli.main(["runs", "list"]) == 0
    (line,) = [ln for ln in capsys.readouterr().out.splitlines() if row.run_id in ln]
    assert " done " in line and size_text(disk_size(run_dir)) in line and "loss " in line

    assert cli.main(["runs", "show", row.run_id, "--plot", str(tmp_path / "figs" / "c.png")]) == 0
    out = capsys.readouterr().out
    png = tmp_path / "figs" / "c.png"
    assert f"curves (loss, lr): {png}" in out and "config:" in out and "mask_ratio 0.75" in out
    assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 1000
    assert cli.main(["runs", "show", row.run_id]) == 0
    assert (run_dir / "curves.png").read_bytes()[:8] == PNG_MAGIC

    assert cli.main(["runs", "clean", "--dry-run"]) == 0
    assert f"would remove {run_dir.resolve() / 'checkpoint.pth'}" in capsys.readouterr().out
    assert (run_dir / "checkpoint.pth").exists()
    freed = disk_size(run_dir / "checkpoint.pth")
    assert cli.main(["runs", "clean"]) == 0
    assert f"freed {size_text(freed)} in 1 checkpoint" in capsys.readouterr().out
    assert not (run_dir / "checkpoint.pth").exists()
    for kept in ("final.pth", "config.yaml", "log.jsonl", "stdout.log"):
        assert (run_dir / kept).is_file(), kept
    assert cli.main(["runs", "clean"]) == 0
    assert "nothing to clean" in capsys.readouterr().out


def test_clean_keeps_the_checkpoints_a_resume_or_a_reused_search_trial_still_needs(tmp_path):
    from maebench.commands.runs_disk import checkpoints_to_free

    def run(name, status, **config):
        d = tmp_path / name
        d.mkdir()
        (d / "checkpoint.pth").write_bytes(b"x" * 10)
        (d / "final.pth").write_bytes(b"y")
        return SimpleNamespace(out_dir=str(d), status=status, config=config)

    rows = [run("done", "done"), run("resumable", "failed-resumable"), run("failed", "failed"),
            run("trial", "done", trial_holdout=0.1)]
    rows.append(SimpleNamespace(out_dir=rows[1].out_dir, status="done", config={}))   # same dir, one not done
    assert checkpoints_to_free(rows) == [((tmp_path / "done" / "checkpoint.pth").resolve(), 10)]


# ---- a protocol that trains no network ------------------------------------------------------------
def test_knn_writes_config_and_one_final_line_with_its_metrics(micro, small_set, capsys):
    assert cli.main(["run", "--task", "knn", "--backbone", micro, "--data", str(small_set),
                     "--set", "num_workers=0"]) == 0
    (row,) = ResultsStore().rows(task="knn")
    run_dir = Path(row.out_dir)
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["run_id"] == row.run_id
    (final,) = lines(run_dir)
    assert final["kind"] == "final"
    numbers = {k: v for k, v in row.metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    assert numbers and all(final[k] == v for k, v in numbers.items())
    capsys.readouterr()
    assert cli.main(["runs", "show", row.run_id]) == 0
    assert "final metrics only" in capsys.readouterr().out and not (run_dir / "curves.png").exists()


# ---- TensorBoard asked for without the package ----------------------------------------------------
@pytest.mark.parametrize("how", ["flag", "environment"])
def test_tensorboard_asked_without_the_package_is_one_line_and_exit_2(how, micro, small_set, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)       # import fails as if not installed
    extra = ["--tensorboard"] if how == "flag" else []
    if how == "environment":
        monkeypatch.setenv("MAEBENCH_TENSORBOARD", "1")
    assert cli.main(["run", "--task", "finetune", "--backbone", micro, "--data", str(small_set), "--epochs", "1",
                     *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install tensorboard" in err[0]
    assert ResultsStore().rows(status=None) == []                           # refused before any run


# ---- the parts ------------------------------------------------------------------------------------
def test_restart_drops_what_was_logged_after_the_checkpoint_and_final_replaces_final(tmp_path):
    log = RunLog(tmp_path)
    log.bind([{"params": [torch.zeros(3)], "lr_scale": 1.0}, {"params": [torch.zeros(2)], "lr_scale": 0.5}])
    log.restart_at(0)
    for step in (1, 2, 3, 4):
        log.interval(step=step, epoch=step / 2, means={"loss": 1.0 / step}, lr=0.1, grad_norm=None,
                     images_per_s=1.0, mfu=None, peak_mem_mb=1.0)
        if step % 2 == 0:
            log.epoch({"epoch": step // 2, "loss": 1.0, "eval/top1": 50.0}, train_lr=0.1, step=step)
    log.final({"top1": 50.0, "per_class": [1, 2]})
    with open(tmp_path / "log.jsonl", "a") as f:
        f.write('{"kind": "step", "st')                                     # torn by a kill
    from maebench.errors import MaebenchError
    with pytest.raises(MaebenchError, match="line 8 is not JSON"):
        read(tmp_path / "log.jsonl")

    again = RunLog(tmp_path)
    again.restart_at(2)                                                    # resumed from the epoch-1 checkpoint
    log2 = lines(tmp_path)
    assert [(r["kind"], r["step"]) for r in log2] == [("step", 1), ("step", 2), ("epoch", 2)]
    assert log2[0]["lr_low"] == pytest.approx(0.05)
    assert log2[2]["test_top1"] == 50.0 and log2[2]["n_parameters"] == 5 and log2[2]["train_loss"] == 1.0
    again.final({"top1": 51.0})
    again.final({"top1": 52.0})
    assert [r.get("top1") for r in kind(lines(tmp_path), "final")] == [52.0]


def test_a_log_line_that_is_not_json_is_an_error_naming_the_file_and_line(tmp_path):
    from maebench.errors import MaebenchError
    (tmp_path / "log.jsonl").write_text('{"kind": "final"}\nnot json\n')
    with pytest.raises(MaebenchError, match=r"log.jsonl: line 2 is not JSON"):
        read(tmp_path / "log.jsonl")


def test_tee_copies_output_to_the_file_without_bar_redraws_and_restores_the_streams(tmp_path, capsys):
    from maebench.runfiles import tee_output
    out, err = sys.stdout, sys.stderr
    with pytest.raises(ValueError):
        with tee_output(tmp_path / "stdout.log"):
            print("hello")
            print("warn", file=sys.stderr)
            sys.stderr.write("\r 50%|#####     |")
            raise ValueError("bad value")
    assert sys.stdout is out and sys.stderr is err
    text = (tmp_path / "stdout.log").read_text()
    assert "hello\n" in text and "warn\n" in text and "50%" not in text
    assert text.rstrip().endswith("maebench: error: ValueError: bad value")
    seen = capsys.readouterr()
    assert "hello" in seen.out and "50%" in seen.err                        # the terminal still gets everything
