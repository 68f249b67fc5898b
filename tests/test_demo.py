"""`maebench demo --quick`: the whole harness end to end on the embedded data, in CI."""
import os
import subprocess
import sys

TASK_COLUMNS = ("fine-tune top-1", "linear top-1", "partial K=", "k-NN top-1", "COCO APbox", "COCO APmask",
                "ADE20K mIoU")
BACKBONES = ("demo-mae-norm-pixel", "demo-mae-pixel", "demo-supervised", "demo-mocov3", "scratch-vit-micro")


def _table(markdown: str) -> tuple[list[str], dict[str, list[str]]]:
    lines = [l for l in markdown.splitlines() if l.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = {}
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[1]] = cells
    return header, rows


def test_quick_demo_fills_every_task_column_and_reuses_finished_stages(tmp_path):
    env = {**os.environ, "MAEBENCH_HOME": str(tmp_path / "home"), "OMP_NUM_THREADS": "1"}
    out = tmp_path / "board" / "demo.md"
    cmd = [sys.executable, "-m", "maebench", "demo", "--quick", "--out", str(out)]
    first = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1200)
    assert first.returncode == 0, first.stderr[-3000:]

    header, rows = _table(out.read_text())
    for name in BACKBONES:
        assert name in rows, f"no leaderboard row for {name}"
        for col in TASK_COLUMNS:
            idx = [i for i, h in enumerate(header) if h.startswith(col) and h.endswith("[shapes]")]
            assert idx, f"no column {col!r} in {header}"
            assert all(rows[name][i] for i in idx), f"{name}: empty cell in {col}"
    assert out.with_suffix(".html").is_file()
    assert list((out.parent / "figures" / "demo" / "reconstructions").glob("*.png"))

    second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    assert second.stdout.count("done earlier, reused") == first.stdout.count("\n[")
