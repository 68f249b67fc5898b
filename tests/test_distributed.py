"""Multi-process training and evaluation on CPU (gloo).

- `torchrun --nproc-per-node 2 -m maebench ...` runs of pretrain, finetune, coco and ade20k
  complete at tiny scale: one done row, and every checkpoint, results-store and registry write
  comes from rank 0 (each worker runs the real CLI through a bootstrap that logs those writes
  with its rank).
- The sharded evaluation at the end of those runs equals a single-process evaluation of the
  saved checkpoint, on val splits of odd size (9 classification images, 3 COCO, 3 ADE20K), so a
  padded or repeated image would show.
- engine.fit under a real 2-process gloo group: a SIGTERM that reaches only one rank stops both
  at the same step with one checkpoint (instead of hanging in mismatched collectives), a
  non-finite loss on one rank stops both, and every rank evaluates with rank 0's BatchNorm
  statistics.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from maebench.results import ResultsStore

DATA_OPTS = ["--classes", "3", "--img-size", "16", "--train-per-class", "8", "--val-per-class", "3",
             "--coco-img-size", "64", "--coco-train-images", "4", "--coco-val-images", "3",
             "--ade-img-size", "32", "--ade-train-images", "4", "--ade-val-images", "3"]
COMMON = ["--epochs", "2", "--seed", "1", "--deterministic", "--set", "num_workers=0", "--set", "checkpoint_every=1",
          "--set", "warmup_epochs=1"]
COMMANDS = {   # global batches divisible by 2 processes (ade20k: >= 2 images per process for BatchNorm)
    "pretrain": ["pretrain", "--method", "mae", "--arch", "vit-micro", "--data", "{data}/classification",
                 "--img-size", "16", "--batch-size", "8", "--name", "ddp-mae",
                 "--set", "decoder_embed_dim=32", "--set", "decoder_depth=1"],
    "finetune": ["run", "--task", "finetune", "--backbone", "scratch-vit-micro", "--data", "{data}/classification",
                 "--batch-size", "8", "--set", "img_size=16", "--set", "eval_batch_size=4"],
    "coco": ["run", "--task", "coco", "--backbone", "scratch-vit-micro", "--data", "{data}/coco",
             "--batch-size", "2", "--set", "eval_batch_size=2", "--set", "model.box_score_thresh=0.0"],
    "ade20k": ["run", "--task", "ade20k", "--backbone", "scratch-vit-micro", "--data", "{data}/ade20k",
               "--batch-size", "4", "--set", "img_size=32", "--set", "crop_size=32", "--set", "channels=16",
               "--set", "aux_channels=8"],
}
OUTPUTS = {"pretrain": ["checkpoint.pth", "final.pth"], "coco": ["checkpoint.pth", "coco_results.json"]}
TIMEOUT = 600

# Each torchrun worker runs `python -m maebench ARGS` through this, which appends one line per
# checkpoint / results-store / registry write, with the worker's rank, to $MAEBENCH_TEST_WRITES.
BOOT = r'''
import atexit, os, runpy, sys
import torch.distributed
from maebench import checkpointer, results, torch_io
from maebench.backbones import registry

log, rank = os.environ["MAEBENCH_TEST_WRITES"], os.environ["RANK"]


@atexit.register
def process_group_at_exit():   # after main() returned, before the interpreter's finalization
    with open(log + ".exit", "a") as f:
        f.write(f"{rank} {'alive' if torch.distributed.is_initialized() else 'destroyed'}\n")


def logged(what, fn):
    def wrapper(*args, **kwargs):
        with open(log, "a") as f:
            f.write(f"{rank} {what}\n")
        return fn(*args, **kwargs)
    return wrapper


torch_io.save_atomic = logged("save", torch_io.save_atomic)
checkpointer.save_atomic = logged("save", checkpointer.save_atomic)
for name in ("start", "finish", "fail"):
    setattr(results.ResultsStore, name, logged(f"results.{name}", getattr(results.ResultsStore, name)))
registry.register = logged("register", registry.register)
sys.argv = ["maebench", *sys.argv[1:]]
runpy.run_module("maebench", run_name="__main__", alter_sys=True)
'''


def env_for(home: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("MAEBENCH_RESULTS", "RANK", "WORLD_SIZE")}
    return {**env, "MAEBENCH_HOME": str(home), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **extra}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp-data")
    r = subprocess.run([sys.executable, "-m", "maebench", "data", "prepare", "shapes", "--out", str(out), *DATA_OPTS],
                       env=env_for(out / "home"), capture_output=True, text=True, timeout=TIMEOUT)
    assert r.returncode == 0, r.stderr
    return out


def torchrun(task: str, data: Path, home: Path, work: Path) -> tuple[subprocess.CompletedProcess, list[str]]:
    """`torchrun --nproc-per-node 2 -m maebench <task command>` (through BOOT); returns the
    process and the logged writes. Each worker's process group state at exit goes to
    writes.log.exit."""
    boot, writes = work / "boot.py", work / "writes.log"
    boot.write_text(BOOT)
    args = [a.format(data=data) for a in COMMANDS[task]] + COMMON
    torchrun = Path(sys.executable).with_name("torchrun")
    r = subprocess.run([str(torchrun), "--standalone", "--nproc-per-node", "2", str(boot), *args],
                       env=env_for(home, MAEBENCH_TEST_WRITES=str(writes)), cwd=work,
                       capture_output=True, text=True, timeout=TIMEOUT)
    return r, writes.read_text().split("\n")[:-1] if writes.exists() else []


# ---- torchrun runs: complete, rank 0 writes, sharded eval = single-process eval ------------------
@pytest.mark.parametrize("task", ["pretrain", "finetune", "coco", "ade20k"])
def test_torchrun_run_completes_rank0_writes_and_its_evaluation_equals_one_process(task, data, tmp_path,
                                                                                   _isolated_home):
    home = _isolated_home
    r, writes = torchrun(task, data, home, tmp_path)
    assert r.returncode == 0, r.stderr[-4000:]
    # both workers destroyed their process group before exiting (gloo threads left holding work
    # at interpreter finalization abort a finished worker)
    assert sorted((tmp_path / "writes.log.exit").read_text().split("\n")[:-1]) == ["0 destroyed", "1 destroyed"]
    (row,) = ResultsStore(home / "results.sqlite").rows(status=None)
    assert row.status == "done" and row.error is None
    (run_dir,) = (home / "runs").iterdir()
    assert sorted(p.name for p in run_dir.iterdir()) == sorted(   # no temp files; the run logs (rank 0's)
        OUTPUTS.get(task, ["checkpoint.pth"]) + ["config.yaml", "log.jsonl", "stdout.log"])
    epochs = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in epochs if e["kind"] == "epoch"] == [1, 2]          # one writer: each epoch once

    # every write from rank 0: one checkpoint per epoch, one row started and finished
    assert writes and {w.split()[0] for w in writes} == {"0"}, writes
    saves = [w for w in writes if w == "0 save"]
    assert len(saves) == 2 + (task == "pretrain")            # 2 epochs (+ pretraining's final.pth)
    assert [w for w in writes if "results" in w] == ["0 results.start", "0 results.finish"]
    assert [w for w in writes if "register" in w] == (["0 register"] if task == "pretrain" else [])

    if task == "pretrain":
        from maebench.backbones import registry
        assert registry.entry("ddp-mae").arch == "vit-micro" and set(row.metrics) == {"loss", "train_gflops_per_image"}
        return
    state = torch.load(run_dir / "checkpoint.pth", map_location="cpu", weights_only=True)["model"]
    single = EVALUATE[task](state, row.config, data, tmp_path)
    if task == "coco":
        # the detections both evaluations scored, image by image: nothing repeated or dropped
        ddp_dets = json.loads((run_dir / "coco_results.json").read_text())
        one_dets = json.loads((tmp_path / "coco_results.json").read_text())
        assert sorted(d["image_id"] for d in ddp_dets) == sorted(d["image_id"] for d in one_dets)
        assert len(ddp_dets) > 0
    assert row.metrics.keys() == single.keys()
    for k, v in single.items():
        assert row.metrics[k] == pytest.approx(v, abs=1e-9) if isinstance(v, float) else row.metrics[k] == v, k
    if task == "finetune":
        assert row.metrics["val_images"] == 9                  # 3 classes x 3, each once


def _finetune(state, cfg, data, _tmp):
    from maebench.backbones import registry
    from maebench.tasks.classification_data import eval_transform, open_data
    from maebench.classification import evaluate
    from maebench.tasks.finetune import build_classifier
    e = registry.entry("scratch-vit-micro")
    model = build_classifier("scratch-vit-micro", cfg, 3, 0)
    model.load_state_dict(state)
    val = open_data(str(data / "classification")).val_set(eval_transform(cfg, e.mean, e.std))
    return evaluate(model, val, batch_size=cfg["eval_batch_size"], device=torch.device("cpu"))


def _coco(state, cfg, data, tmp):
    from maebench.backbones import registry
    from maebench.data.coco import CocoInstances
    from maebench.data.layout import resolve_coco
    from maebench.tasks.coco.data import ReportLoadErrors, eval_transform
    from maebench.tasks.coco.evaluate import make_evaluator
    from maebench.tasks.coco.model import build_mask_rcnn, canvas_size
    p = resolve_coco(data / "coco")
    val = ReportLoadErrors(CocoInstances(p["val_images"], p["val_json"], train=False, transforms=eval_transform))
    vit, e = registry.load("scratch-vit-micro", img_size=canvas_size(cfg), drop_path_rate=cfg["drop_path"])
    model = build_mask_rcnn(vit, num_classes=val.num_classes, mean=e.mean, std=e.std, cfg=cfg)
    model.load_state_dict(state)
    return make_evaluator(val, out_dir=tmp, device=torch.device("cpu"), batch_size=cfg["eval_batch_size"],
                          log=lambda *_: None)(model)


def _ade20k(state, cfg, data, _tmp):
    from maebench.backbones import registry
    from maebench.tasks.ade20k import build_model, open_data
    from maebench.tasks.ade20k.evaluate import evaluate
    cpu = torch.device("cpu")
    model, _ = build_model("scratch-vit-micro", cfg, cpu)
    model.load_state_dict(state)
    _, val = open_data(data / "ade20k", cfg, registry.entry("scratch-vit-micro"))
    return evaluate(model, val, num_classes=cfg["num_classes"], ignore_index=cfg["ignore_index"], device=cpu,
                    mode=cfg["eval_mode"], crop=cfg["crop_size"], stride=cfg["stride"], amp=False)


EVALUATE = {"finetune": _finetune, "coco": _coco, "ade20k": _ade20k}


# ---- engine.fit in a real 2-process gloo group -------------------------------------------------
class _Data(torch.utils.data.Dataset):
    def __len__(self):
        return 64

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        x = torch.randn(4, generator=g) + i % 3
        return x, torch.tensor(i % 2)


SCENARIOS = ("buffers", "nan", "sigterm")


def _fit_worker(rank: int, out: str) -> None:
    """One fit per scenario, in one 2-process group; writes each outcome to out/<scenario>.<rank>."""
    import torch.distributed as tdist
    from torch import nn

    from maebench.engine import fit
    from maebench.errors import MaebenchError
    torch.set_num_threads(1)
    tdist.init_process_group("gloo", init_method=f"file://{out}/rendezvous", rank=rank, world_size=2)
    for scenario in SCENARIOS:
        calls = {"n": 0}

        def loss_fn(model, batch, device):
            calls["n"] += 1
            if rank == 1 and calls["n"] == 3 and scenario == "sigterm":
                os.kill(os.getpid(), signal.SIGTERM)           # only this process is told to stop
            x, y = batch
            loss = nn.functional.cross_entropy(model(x), y)
            if rank == 1 and calls["n"] == 7 and scenario == "nan":
                loss = loss * float("nan")                     # only this process sees it
            return loss, {}

        def evaluate(model):                                   # what each rank evaluates with
            return {"running_mean": model[1].running_mean.tolist()}

        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 2))
        cfg = dict(epochs=2, batch_size=8, accum_iter=1, lr=0.1, min_lr=0.0, warmup_epochs=0, schedule="cosine",
                   optimizer="adamw", betas=[0.9, 0.999], weight_decay=0.0, clip_grad=None, ema=0.0,
                   num_workers=0, checkpoint_every=1, eval_every=0, log_every=2, amp=False, micro_batch=None, compile=False)
        try:
            result = fit(model, _Data(), loss_fn, cfg, out_dir=f"{out}/{scenario}", device=torch.device("cpu"),
                         seed=0, evaluate=evaluate, log=lambda *_: None)
            outcome = json.dumps(result.metrics)
        except MaebenchError as e:
            outcome = f"{type(e).__name__}: {e}"
        with open(f"{out}/{scenario}.{rank}", "w") as f:
            f.write(outcome)
    tdist.destroy_process_group()


@pytest.fixture(scope="module")
def ddp_fits(tmp_path_factory):
    """scenario -> (outcome on rank 0, outcome on rank 1, checkpoint path)."""
    out = tmp_path_factory.mktemp("ddp-fit")
    ctx = torch.multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_fit_worker, args=(r, str(out))) for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(240)
    hung = [p for p in procs if p.is_alive()]
    for p in hung:
        p.kill()
    assert not hung, "the processes hung"
    assert [p.exitcode for p in procs] == [0, 0]
    return {s: (*(Path(f"{out}/{s}.{r}").read_text() for r in range(2)), out / s / "checkpoint.pth")
            for s in SCENARIOS}


def test_ddp_sigterm_on_one_rank_stops_both_at_the_same_step(ddp_fits):
    """Rank 1 alone gets SIGTERM during step 3 of 8; both stop at the next agreed step (4, with
    log_every 2) and rank 0 writes that checkpoint (before: rank 1 entered the collective
    checkpoint save while rank 0 trained on, and the job hung)."""
    rank0, rank1, ckpt = ddp_fits["sigterm"]
    assert rank0 == rank1 and rank0.startswith("Interrupted: stopped by SIGTERM at epoch 1, step 4;"), (rank0, rank1)
    ck = torch.load(ckpt, weights_only=True)
    assert (ck["epoch"], ck["step_in_epoch"]) == (0, 4)


def test_ddp_nan_on_one_rank_stops_both_naming_its_step(ddp_fits):
    rank0, rank1, ckpt = ddp_fits["nan"]
    for outcome in (rank0, rank1):
        assert outcome.startswith("NonFiniteLoss: loss became non-finite at step 6 (epoch 1)"), outcome
    assert not ckpt.exists()


def test_ddp_every_rank_evaluates_with_rank0_batchnorm_statistics(ddp_fits):
    """The shards differ, so each process's BatchNorm running statistics do; every process must
    evaluate with rank 0's, which are the checkpoint's (a torchrun linprobe scored 44.4 top-1
    where its saved checkpoint scores 33.3)."""
    rank0, rank1, ckpt = ddp_fits["buffers"]
    a, b = json.loads(rank0)["running_mean"], json.loads(rank1)["running_mean"]
    assert a == b
    assert torch.equal(torch.tensor(a), torch.load(ckpt, weights_only=True)["model"]["1.running_mean"])
