"""Classification tasks end to end through `maebench run`, at CPU scale (vit-micro, 16 px, a
few images, 1-2 epochs): result rows, frozen parameters, cached = direct linear probe, the
partial sweep, k-NN, and bad input that must leave no row."""
import pytest
import torch

from maebench.torch_io import load as load_checkpoint
from maebench.cli import main
from maebench.results import ResultsStore

FAST = ["--set", "num_workers=0", "--set", "eval_batch_size=16", "--set", "warmup_epochs=0"]


def encoder_state(name="micro"):
    from maebench.backbones import registry
    return registry.load(name, global_pool="avg")[0].state_dict()


def rows(**kw):
    return ResultsStore().rows(status=None, **kw)


def run(*args):
    return main(["run", *map(str, args)])


def test_finetune_on_embedded_set_stores_a_row(micro, capsys):
    assert run("--task", "finetune", "--backbone", micro, "--epochs", 1, "--batch-size", 10,
               "--labels-per-class", 2, *FAST) == 0
    out = capsys.readouterr().out
    assert "lr scale" in out and "blocks.0.attn.qkv.weight" in out        # the layer-decay table
    (row,) = rows(task="finetune")
    assert row.status == "done" and row.dataset == "shapes" and row.backbone == "micro"
    assert 0 <= row.metrics["top1"] <= row.metrics["top5"] <= 100
    assert row.metrics["val_images"] == 200                               # the embedded val split, once each
    assert row.config["labels_per_class"] == 2 and row.config["img_size"] == 16
    # the effective config: Table 9's layer decay, the vit-micro CPU recipe's lr and augmentation
    assert row.config["layer_decay"] == 0.75 and row.config["lr"] == 2e-3 and row.config["aug"]["mixup"] == 0.0


def test_linprobe_leaves_the_encoder_bit_identical(micro, small_set, tmp_path):
    out = tmp_path / "lp"
    assert run("--task", "linprobe", "--backbone", micro, "--data", small_set, "--epochs", 2,
               "--batch-size", 8, "--out", out, *FAST) == 0
    state = load_checkpoint(out / "checkpoint.pth")["model"]
    before = encoder_state()
    for k, v in before.items():
        if not k.startswith(("head.", "fc_norm.")):
            assert torch.equal(state[f"encoder.{k}"], v), k
    from maebench.tasks.linprobe import make_head
    init = make_head(96, 4, seed=0).state_dict()
    assert not torch.equal(state["head.linear.weight"], init["linear.weight"])
    assert state["head.bn.num_batches_tracked"] == 10                    # 40 images / 8 x 2 epochs
    (row,) = rows(task="linprobe")
    assert row.metrics["val_images"] == 12 and row.config["optimizer"] == "lars"


def test_cached_linprobe_equals_direct(micro, small_set, tmp_path):
    """Same seed, no augmentation (fixed eval crop for the training images too): the probe
    sees identical features in identical batches, so it ends identical up to float rounding."""
    common = ["--task", "linprobe", "--backbone", micro, "--data", small_set, "--epochs", 2,
              "--batch-size", 8, "--seed", 3, *FAST]
    assert run(*common, "--set", "augment=false", "--out", tmp_path / "direct") == 0
    assert run(*common, "--cached-features", "--no-sweep", "--out", tmp_path / "cached") == 0
    direct = load_checkpoint(tmp_path / "direct" / "checkpoint.pth")["model"]
    cached = load_checkpoint(tmp_path / "cached" / "checkpoint.pth")["model"]
    for k in ("linear.weight", "linear.bias", "bn.running_mean", "bn.running_var"):
        torch.testing.assert_close(cached[k], direct[f"head.{k}"], rtol=1e-4, atol=1e-5)
    feats = torch.randn(20, 96)
    from maebench.tasks.linprobe import ProbeHead

    def logits(state, prefix):
        head = ProbeHead(96, 4).eval()
        head.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})
        return head(feats)
    torch.testing.assert_close(logits(cached, ""), logits(direct, "head."), rtol=1e-4, atol=1e-4)
    by_mode = {r.config["cached_features"]: r for r in rows(task="linprobe")}
    assert by_mode[True].metrics["top1"] == by_mode[False].metrics["top1"]
    assert by_mode[True].metrics["top5"] == by_mode[False].metrics["top5"]
    assert by_mode[True].config["augment"] is False and "feature_extraction_s" in by_mode[True].metrics


def test_partial_sweep_freezes_all_but_the_chosen_blocks(micro, small_set, tmp_path):
    assert run("--task", "partial", "--backbone", micro, "--data", small_set, "--blocks", "0.5,1",
               "--epochs", 1, "--batch-size", 8, "--out", tmp_path, *FAST) == 0
    before = encoder_state()
    half = load_checkpoint(tmp_path / "blocks-0.5" / "checkpoint.pth")["model"]
    one = load_checkpoint(tmp_path / "blocks-1" / "checkpoint.pth")["model"]
    for k, v in before.items():
        if k.startswith(("head.", "fc_norm.")):
            continue
        in_mlp = k.startswith(("blocks.3.mlp.", "blocks.3.norm2."))
        assert torch.equal(half[k], v) != in_mlp, k                  # 0.5: exactly the last MLP sub-block moved
        assert torch.equal(one[k], v) != k.startswith("blocks.3."), k  # 1: exactly the last block moved
    assert sorted(r.config["blocks"] for r in rows(task="partial")) == [0.5, 1]


def test_knn_run_stores_a_row(micro, small_set):
    assert run("--task", "knn", "--backbone", micro, "--data", small_set, "--set", "num_workers=0") == 0
    (row,) = rows(task="knn")
    assert row.metrics["val_images"] == 12 and 0 <= row.metrics["top1"] <= 100
    assert (row.config["k"], row.config["temperature"]) == (20, 0.07)


@pytest.mark.parametrize("args, code, message", [
    (["--task", "finetune", "--backbone", "micr0"], 2, "unknown backbone 'micr0'"),
    (["--task", "finetune", "--labels-per-class", 50], 1, "fewer than labels_per_class"),
    (["--task", "finetune", "--labels-per-class", 2, "--label-fraction", 0.5], 2, "at most one"),
    (["--task", "finetune", "--batch-size", 999], 2, "larger than the 40 labelled"),
    (["--task", "finetune", "--batch-size", 7, "--set", "aug.mixup=0.8"], 2, "must be even"),
    (["--task", "finetune", "--blocks", 1], 2, "--blocks applies to --task partial"),
    (["--task", "finetune", "--set", "nope=1"], 2, "unknown config key 'nope'"),
    (["--task", "finetune", "--set", "global_pool=max"], 2, "unknown global_pool"),
    (["--task", "partial", "--blocks", "1,7"], 2, "depth (4)"),
    (["--task", "linprobe", "--cached-features", "--set", "augment=true"], 2, "augment false"),
    (["--task", "knn", "--epochs", 3], 2, "trains nothing"),
    (["--task", "finetune", "--data", "/nonexistent/dir"], 1, "/nonexistent/dir"),
])
def test_bad_input_leaves_no_row(micro, small_set, capsys, args, code, message):
    full = [*args] if "--data" in args else [*args, "--data", small_set]
    if "--backbone" not in full:
        full = [*full, "--backbone", micro]
    assert run(*full) == code
    assert message in capsys.readouterr().err
    assert rows() == []


# ---- a full disk while the checkpoint is written ------------------------------------------------
@pytest.mark.parametrize("fault", ["zip-writer", "enospc"])
def test_full_disk_during_a_checkpoint_is_one_line_and_resume_continues(fault, micro, tmp_path, monkeypatch, capsys):
    """`maebench run --task finetune`, 2 epochs, a checkpoint after each: the epoch-2 write fills
    the disk half-way, as torch's zip writer reports it (a RuntimeError with a C++ trace) or as
    the file system does (OSError ENOSPC). One stderr line naming the run directory and its free
    space, exit 1, the row failed; the epoch-1 checkpoint intact, no temporary file; --resume,
    once there is room again, continues from epoch 1."""
    import errno
    import re

    out = tmp_path / "run"
    args = ["--task", "finetune", "--backbone", micro, "--epochs", 2, "--batch-size", 10,
            "--labels-per-class", 2, "--out", out, *FAST]
    real_save, seen = torch.save, {"checkpoints": 0, "before": None}

    def full_disk(obj, f, *a, **kw):
        if isinstance(obj, dict) and "optimizer" in obj:          # the training loop's checkpoint
            seen["checkpoints"] += 1
            if seen["checkpoints"] == 2:
                seen["before"] = (out / "checkpoint.pth").read_bytes()
                f.write(b"PK\x03\x04 half a checkpoint")
                if fault == "enospc":
                    raise OSError(errno.ENOSPC, "No space left on device")
                raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 2432 vs 2322\n"
                                   "frame #0: c10::ThrowEnforceNotMet(char const*, int, char const*, "
                                   "std::string const&, void const*) + 0x3e (0x7f in libc10.so)")
        return real_save(obj, f, *a, **kw)

    monkeypatch.setattr(torch, "save", full_disk)
    capsys.readouterr()
    assert run(*args) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "frame #0" not in err
    (line,) = [ln for ln in err.replace("\r", "\n").splitlines() if ln.strip()]
    assert line.startswith("maebench: error: cannot write checkpoint ")
    assert re.search(rf"\d+(\.\d)? (B|KiB|MiB|GiB|TiB) free in {re.escape(str(out))}: ", line), line
    assert "the previous checkpoint is intact" in line and "--resume" in line
    assert ("No space left on device" if fault == "enospc" else "unexpected pos") in line
    (row,) = rows(task="finetune")
    assert row.status == "failed"                           # exit 1, as README's exit codes say
    # no temporary file left: the checkpoint and the run's record (maebench/runfiles.py) alone
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pth", "config.yaml", "log.jsonl", "stdout.log"]
    assert (out / "checkpoint.pth").read_bytes() == seen["before"]
    ck = load_checkpoint(out / "checkpoint.pth")
    assert (ck["epoch"], ck["step_in_epoch"]) == (1, 0)

    monkeypatch.setattr(torch, "save", real_save)            # room again
    assert run(*args, "--resume") == 0
    assert "resumed from" in capsys.readouterr().out
    (row,) = rows(task="finetune")
    assert row.status == "done"
    assert load_checkpoint(out / "checkpoint.pth")["epoch"] == 2
