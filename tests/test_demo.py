"""`maebench demo --quick`: every stage of the demo end to end on a reduced fashion world, in CI."""
import os
import subprocess
import sys

import pytest

from maebench.data import fashion_mnist

pytestmark = pytest.mark.skipif(not (fashion_mnist.DEFAULT_SOURCE / "train-images-idx3-ubyte.gz").is_file(),
                                reason="Debian package dataset-fashion-mnist not installed")
BACKBONES = ("MAE norm-pixel", "MAE pixel", "MoCo v3", "supervised", "scratch")
COLUMNS = ("fine-tune top-1 (100/class)", "linear top-1", "k-NN top-1", "APbox", "APmask", "mIoU")


def _table(markdown: str) -> tuple[list[str], dict[str, list[str]]]:
    lines = [l for l in markdown.splitlines() if l.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = {}
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = cells
    return header, rows


def test_quick_demo_fills_every_stage_writes_only_under_its_out_dir_and_reuses_finished_stages(tmp_path):
    env = {**os.environ, "MAEBENCH_HOME": str(tmp_path / "home"), "OMP_NUM_THREADS": "1"}
    out = tmp_path / "demo"
    cmd = [sys.executable, "-m", "maebench", "demo", "--quick", "--out", str(out)]
    first = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1200, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "[1/" in first.stdout and "ETA" in first.stdout

    header, rows = _table((out / "report.md").read_text())
    for name in BACKBONES:
        assert name in rows, f"no report row for {name}"
        for col in COLUMNS:
            cell = rows[name][header.index(col)]
            assert cell and cell != "missing", f"{name}: no value in {col}"
    for name in ("MAE norm-pixel", "MoCo v3"):                    # the partial fine-tuning curve
        assert all(rows[name][header.index(k)] not in ("", "missing") for k in ("partial K=0", "K=0.5", "K=1", "K=2"))
    assert rows["supervised"][header.index("linear top-1")].endswith("†")   # has seen all labels
    assert "MAE norm-pixel" in first.stdout.split("Summary (as measured)")[1]
    assert (out / "reconstructions.png").is_file() and len(list((out / "reconstructions").glob("*.png"))) == 10
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo", "home"]   # nothing written elsewhere

    second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    n = int(first.stdout.split("[1/")[1].split("]")[0])
    assert second.stdout.count("done earlier, reused") == n - 1   # all but the data check, which is instant


def test_demo_refuses_an_out_dir_inside_the_source_tree(tmp_path, capsys):
    from pathlib import Path

    from maebench.cli import main
    source = Path(__file__).resolve().parents[1]
    assert main(["demo", "--quick", "--out", str(source / "leaderboards" / "x")]) == 2
    assert "source tree" in capsys.readouterr().err
    assert main(["demo", "--quick", "--seeds", "0,x"]) == 2
