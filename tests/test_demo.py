"""`maebench demo --quick`: every stage of the demo end to end on a reduced fashion world, in CI."""
import os
import subprocess
import sys

import pytest

from maebench.data import fashion_mnist

pytestmark = pytest.mark.skipif(not (fashion_mnist.DEFAULT_SOURCE / "train-images-idx3-ubyte.gz").is_file(),
                                reason="Debian package dataset-fashion-mnist not installed")
BACKBONES = ("MAE norm-pixel", "MAE pixel", "MoCo v3", "supervised", "scratch")
# --quick: fine-tuning on 20 labels per class, the swept linear probe (--cached-features) on all labels
COLUMNS = ("fine-tune top-1 (20/class)", "linear top-1 (searched)", "k-NN top-1", "APbox", "APmask", "mIoU")


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
    assert rows["supervised"][header.index("linear top-1 (searched)")].endswith("†")   # has seen all labels
    assert "not the paper's single-lr protocol" in (out / "report.md").read_text()
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


def test_the_plan_repeats_transfer_runs_per_seed_leaves_out_stated_stages_and_sets_no_recipe(tmp_path):
    from maebench import demo
    stages, left_out = demo.plan(tmp_path / "world", tmp_path / "r.sqlite", [0, 1, 2], quick=False,
                                 run_all=False, fashion_dir=None)
    assert sorted(left_out) == sorted(demo.LEFT_OUT)
    assert sum(s.kind == "pretrain" for s in stages) == 4
    ft = [s for s in stages if s.kind == "finetune"]
    assert sorted({(s.backbone, s.seed) for s in ft}) == sorted((k, s) for k in demo.PRETRAIN for s in (0, 1, 2))
    partial = {(s.backbone, s.extra["blocks"]) for s in stages if s.kind == "partial"}
    assert partial == {(k, b) for k in ("mae-norm-pixel", "mocov3") for b in ("0", "0.5", "1", "2")}
    assert not any("--set" in s.argv or "--epochs" in s.argv for s in stages)   # recipes live in the protocols
    everything, none_left = demo.plan(tmp_path / "w", tmp_path / "r", [0], quick=False, run_all=True, fashion_dir=None)
    assert none_left == [] and {(s.kind, s.backbone) for s in everything} >= set(demo.LEFT_OUT)


def test_mae_epochs_lengthens_only_the_mae_pretrainings_and_names_their_backbones_apart(tmp_path, capsys):
    from maebench.cli import main
    from maebench import demo
    stages, _ = demo.plan(tmp_path / "world", tmp_path / "r.sqlite", [0], quick=False, run_all=False,
                          fashion_dir=None, mae_epochs=24)
    pre = {s.backbone: s for s in stages if s.kind == "pretrain"}
    for key in ("mae-norm-pixel", "mae-pixel"):
        argv = pre[key].argv
        assert argv[argv.index("--epochs") + 1] == "24" and argv[argv.index("--name") + 1] == f"demo-{key}-24ep"
        assert pre[key].estimate == 24 * demo.ESTIMATE["pretrain"][key]      # the ETA knows the longer stage
    for key in ("mocov3", "supervised"):
        assert "--epochs" not in pre[key].argv and pre[key].argv[pre[key].argv.index("--name") + 1] == f"demo-{key}"
    used = {s.argv[s.argv.index("--backbone") + 1] for s in stages if "--backbone" in s.argv}
    assert used == {"demo-mae-norm-pixel-24ep", "demo-mae-pixel-24ep", "demo-mocov3", "demo-supervised",
                    "scratch-vit-micro"}
    assert main(["demo", "--quick", "--mae-epochs", "0", "--out", str(tmp_path / "d")]) == 2
    assert "--mae-epochs expects a positive number of epochs, got 0" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()


def test_demo_search_searches_every_transfer_stage_and_budgets_for_it(tmp_path):
    from maebench import demo
    plain, _ = demo.plan(tmp_path / "world", tmp_path / "r.sqlite", [0], quick=False, run_all=False, fashion_dir=None)
    searched, _ = demo.plan(tmp_path / "world", tmp_path / "r.sqlite", [0], quick=False, run_all=False,
                            fashion_dir=None, search=True)
    transfer = [s for s in searched if s.kind in ("finetune", "partial", "linprobe", "knn", "coco", "ade20k")]
    assert transfer and all("--search" in s.argv and "(searched)" in s.label for s in transfer)
    assert not any("--search" in s.argv for s in plain)
    est = {s.label.replace(" (searched)", "").replace(" (swept)", ""): s.estimate for s in searched}
    for s in plain:
        base = s.label.replace(" (swept)", "")
        if s.kind in ("finetune", "coco") or (s.kind == "partial" and s.extra["blocks"] != "0"):
            assert est[base] > s.estimate                        # its trials, then the final run
        elif s.kind in ("pretrain", "knn", "linprobe"):
            assert est[base] == s.estimate


def test_the_partial_line_says_whether_the_curve_dips_below_its_linear_probe():
    from maebench.demo.report_md import summary
    cells = {("mocov3", "partial", "top1", "0"): [63.0], ("mocov3", "partial", "top1", "0.5"): [55.0],
             ("mocov3", "partial", "top1", "1"): [60.0], ("mae-norm-pixel", "partial", "top1", "0"): [60.0],
             ("mae-norm-pixel", "partial", "top1", "0.5"): [66.0]}
    text = "\n".join(summary(cells, [0]))
    assert "MoCo v3: K=0 63.0, K=0.5 55.0, K=1 60.0 (K=all = the fine-tuning run); tuning the last blocks dips below " \
           "its linear probe (lowest K>0: 55.0 vs K=0 63.0)" in text
    assert "stays at or above its linear probe (lowest K>0: 66.0 vs K=0 60.0)" in text


def test_the_summary_states_the_measured_differences_and_the_orderings():
    from maebench.demo.report_md import summary
    cells = {("mae-norm-pixel", "finetune", "top1", None): [70.0, 72.0], ("scratch", "finetune", "top1", None): [40.0, 41.0],
             ("mae-norm-pixel", "coco", "bbox/AP", None): [5.0], ("scratch", "coco", "bbox/AP", None): [6.0],
             ("mae-norm-pixel", "ade20k", "mIoU", None): [12.93], ("scratch", "ade20k", "mIoU", None): [12.91],
             ("mae-norm-pixel", "linprobe", "top1", None): [60.0], ("mocov3", "linprobe", "top1", None): [65.0],
             ("supervised", "linprobe", "top1", None): [80.0]}
    text = "\n".join(summary(cells, [0, 1], seen={("supervised", "linprobe")}))   # marked(): the leaderboard's rule
    assert "MAE norm-pixel 71.0 vs scratch 40.5 top-1, +30.5 points (target >= +15: met)" in text
    assert "APbox: MAE norm-pixel 5.0 vs scratch 6.0 (MAE NOT above scratch)" in text
    assert "mIoU: MAE norm-pixel 12.93 vs scratch 12.91 (MAE above scratch by 0.02)" in text   # a lead 1 decimal hides
    assert "Linear probe ordering as measured: supervised † 80.0 > MoCo v3 65.0 > MAE norm-pixel 60.0" in text
    assert "mean of 2 seeds" in text


def test_lanes_start_the_heaviest_ready_stage_first_and_a_stage_only_after_what_it_needs(tmp_path):
    from maebench.launch import Job
    from maebench.launch.local import LocalLauncher
    a = Job("a", ["--version"], estimate=1)
    b = Job("b", ["--version"], estimate=9, needs=("a",))
    c = Job("c", ["--version"], estimate=5)
    d = Job("d", ["--version"], estimate=7)          # heavier than c, lighter than a + b
    events = []
    LocalLauncher(2, 1, tmp_path / "logs").run(
        [a, b, c, d], started=lambda s: events.append(("start", s.label)),
        finished=lambda s, seconds: events.append(("end", s.label)))
    assert events[:2] == [("start", "a"), ("start", "d")]      # a weighs 1 + 9 (b waits for it), then d 7
    assert events.index(("start", "b")) > events.index(("end", "a"))
    assert sorted(e for e in events if e[0] == "end") == [("end", "a"), ("end", "b"), ("end", "c"), ("end", "d")]
    assert (tmp_path / "logs" / "01-a.log").read_text().startswith("maebench ")   # with 2 lanes, output goes to logs


def test_a_failed_stage_names_itself_and_its_log_and_what_needs_it_never_starts(tmp_path, capsys):
    from maebench.errors import MaebenchError
    from maebench.launch import Job
    from maebench.launch.local import LocalLauncher
    bad = Job("pretrain x", ["run", "--task", "nope"], estimate=1)
    after = Job("finetune x", ["--version"], estimate=1, needs=("pretrain x",))
    started = []
    with pytest.raises(MaebenchError, match=r"job 'pretrain x' failed \(exit 2\); its log: .*01-pretrain_x.log"):
        LocalLauncher(2, 1, tmp_path / "logs").run([bad, after], started=lambda s: started.append(s.label))
    assert started == ["pretrain x"]
    assert "unknown task 'nope'" in capsys.readouterr().out       # the end of its log is shown


def test_lanes_are_one_per_core_whatever_the_load_or_what_jobs_says(monkeypatch, capsys):
    """A stage's thread count decides its numbers (reduction order): it comes from the cores or
    --jobs, never from how busy the machine is when the demo starts."""
    import os
    from maebench import dataloaders
    from maebench.launch import local as demo_lanes
    monkeypatch.setattr(dataloaders, "physical_cores", lambda: 4)
    for load in (0.0, 3.9, 100.0):
        monkeypatch.setattr(os, "getloadavg", lambda load=load: (load, load, load))
        assert demo_lanes.choose_lanes(None, log=lambda _: None) == (4, 1)
    assert demo_lanes.choose_lanes(2, log=lambda _: None) == (2, 2)
    assert demo_lanes.choose_lanes(3, log=print) == (3, 1)
    assert "3 job(s) at a time, 1 torch thread(s) each (--jobs)" in capsys.readouterr().out


def test_a_changed_protocol_file_reruns_its_stages_and_those_that_need_them_only(tmp_path, monkeypatch):
    import shutil

    from maebench import config
    from maebench import demo
    stages, _ = demo.plan(tmp_path / "world", tmp_path / "r.sqlite", [0], quick=False, run_all=False, fashion_dir=None)
    before = demo.recipe_hashes(stages)
    protocols = tmp_path / "protocols"
    shutil.copytree(config.PROTOCOL_DIR, protocols)
    monkeypatch.setattr(config, "PROTOCOL_DIR", protocols)
    assert demo.recipe_hashes(stages) == before                 # same files, same ledger entries

    def changed_after(edit: str) -> set[str]:
        with open(protocols / edit, "a") as f:
            f.write("\n# a recipe change\n")
        now = demo.recipe_hashes(stages)
        return {label for label, h in now.items() if h != before[label]}

    changed = changed_after("coco.yaml")
    assert changed == {s.label for s in stages if s.kind == "coco"} and changed

    changed = changed_after("pretrain_mae.yaml")
    mae = {s.label for s in stages if s.backbone in ("mae-norm-pixel", "mae-pixel")}
    assert changed == mae | {s.label for s in stages if s.kind == "coco"}
    assert any(s.kind == "visualize" for s in stages if s.label in changed)
