"""`maebench backbones ...`: output, exit codes, and listing without importing torch."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from test_backbones_support import ARCH, IMG, PATCH, home, save, tiny_vit  # noqa: F401

from maebench.cli import main

NO_TORCH_SCRIPT = """
import sys
from maebench.cli import main
rc = main(sys.argv[1:])
print("TORCH-IMPORTED" if "torch" in sys.modules else "NO-TORCH")
sys.exit(rc)
"""


def _user_record(home):
    """A registered user entry written the way the registry writes it (no torch needed)."""
    home.mkdir(parents=True, exist_ok=True)
    rec = {"arch": ARCH, "patch_size": PATCH, "img_size": IMG, "in_chans": 3, "mean": [0.5] * 3, "std": [0.5] * 3,
           "family": "mae-pixel", "model": "vit", "vit_kwargs": {}, "format": "maebench", "has_decoder": True,
           "sha256": "0" * 64, "size": 123, "source_path": "/nowhere/run.pth", "source": "test",
           "registered": 0.0, "weights": "weights/mine.pth", "conversion_notes": [], "paper": []}
    (home / "registry.json").write_text(json.dumps({"version": 1, "backbones": {"mine": rec}}))


def _run_fresh(home, *argv):
    env = {**os.environ, "MAEBENCH_HOME": str(home)}
    env.pop("MAEBENCH_RESULTS", None)
    return subprocess.run([sys.executable, "-c", NO_TORCH_SCRIPT, *argv], capture_output=True, text=True, env=env,
                          timeout=120)


def test_list_and_show_do_not_import_torch(home):
    _user_record(home)
    r = _run_fresh(home, "backbones", "list")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith("NO-TORCH")
    lines = {ln.split()[0]: ln for ln in r.stdout.splitlines() if ln and not ln.startswith(("-", "*", "NO-"))}
    assert {"mae-vit-b", "scratch-vit-l", "mine"} <= set(lines)
    assert "vit-base/16" in lines["mae-vit-b"] and "85.8M" in lines["mae-vit-b"] and "missing" in lines["mae-vit-b"]
    assert "random init" in lines["scratch-vit-l"] and "303.3M" in lines["scratch-vit-l"]
    r = _run_fresh(home, "backbones", "show", "mine")
    assert r.returncode == 0 and r.stdout.strip().endswith("NO-TORCH"), r.stderr
    assert "registered by you" in r.stdout and "--force" in r.stdout  # its file is gone: how to restore it


def test_list_shows_tasks_already_run(home, capsys):
    from maebench.results import ResultsStore
    store = ResultsStore(home / "elsewhere.sqlite")
    for task in ("linprobe", "finetune", "linprobe"):
        run_id = store.start(task=task, backbone="mae-vit-b", config={"task": task})
        store.finish(run_id, {"top1": 1.0})
    store.start(task="coco", backbone="mae-vit-b", config={})  # still running: not a task run
    assert main(["backbones", "list", "--results", str(home / "elsewhere.sqlite")]) == 0
    row = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("mae-vit-b "))
    assert row.rstrip().endswith("finetune, linprobe")
    assert main(["backbones", "show", "mae-vit-b", "--results", str(home / "elsewhere.sqlite")]) == 0
    out = capsys.readouterr().out
    assert "tasks run:" in out and "finetune, linprobe" in out
    assert "maebench backbones register mae-vit-b --checkpoint PATH/mae_pretrain_vit_base.pth" in out


def test_register_show_remove_exit_codes(home, tmp_path, capsys):
    path = save({"model": tiny_vit().state_dict()}, tmp_path / "enc.pth")
    assert main(["backbones", "register", "mine", "--checkpoint", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"registered mine: {ARCH}, patch {PATCH}, {IMG} px" in out and "note: encoder-only MAE file" in out
    assert main(["backbones", "register", "mine", "--checkpoint", str(path)]) == 1
    assert "--force" in capsys.readouterr().err
    assert main(["backbones", "register", "mine", "--checkpoint", str(path), "--force", "--family", "mae-pixel"]) == 0
    assert main(["backbones", "show", "mine"]) == 0
    out = capsys.readouterr().out
    assert "family:" in out and "mae-pixel" in out and "(present)" in out and "sha256:" in out
    assert main(["backbones", "register", "x", "--checkpoint", str(tmp_path / "absent.pth")]) == 1
    assert main(["backbones", "register", "x", "--checkpoint", str(path), "--arch", "vit-tiny"]) == 1
    assert main(["backbones", "register", "x", "--checkpoint", str(path), "--arch", "vit-gigantic"]) == 2
    assert main(["backbones", "show", "nope"]) == 2
    assert "unknown backbone 'nope'" in capsys.readouterr().err
    assert main(["backbones", "remove", "mine"]) == 0
    assert main(["backbones", "remove", "mine"]) == 2
    assert main(["backbones", "remove", "mae-vit-b"]) == 2


@pytest.mark.parametrize("argv", [["backbones"], ["backbones", "register", "x"],
                                  ["backbones", "register", "x", "--checkpoint", "f", "--format", "onnx"]])
def test_bad_command_lines_exit_2(home, argv, capsys):
    assert main(argv) == 2
    assert "error:" in capsys.readouterr().err
