"""Frozen-feature evaluation through the CLI at CPU scale (vit-micro, 16 px, 4 classes x 10
training images): the linear-probe sweep's row, selection that never reads the evaluation
labels, logistic regression, one feature cache shared by the three protocols, low-label
subsets stored with the row, --seeds with mean / std / interval, and leaderboard --compare."""
import json
import shutil
import statistics
from pathlib import Path

import pytest
import torch

from maebench.cli import main
from maebench.results import ResultsStore

FAST = ["--set", "num_workers=0", "--set", "eval_batch_size=16", "--set", "warmup_epochs=0"]
SWEEP = ["--search-space", "base_lr=0.3,3.0,30.0", "--search-space", "weight_decay=0.0"]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    from maebench.backbones.vit import create_vit
    out = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        path = tmp_path_factory.mktemp("ckpt") / f"micro{seed}.pth"
        torch.save(create_vit("vit-micro", img_size=16, patch_size=4).state_dict(), path)
        out.append(path)
    return out


@pytest.fixture
def micro(checkpoints):
    from maebench.backbones import registry
    for name, path in zip(("micro", "micro-b"), checkpoints):
        registry.register(name, path, arch="vit-micro", fmt="timm", img_size=16, patch_size=4)
    return "micro"


def rows(results=None, **kw):
    return ResultsStore(results).rows(**kw)


def run(*args):
    return main(["run", *map(str, args)])


def sweep(data, *extra):
    return run("--task", "linprobe", "--backbone", "micro", "--data", data, "--sweep", "--epochs", 2,
               "--batch-size", 8, *FAST, *SWEEP, *extra)


def test_sweep_row_stores_the_grid_every_held_out_score_the_choice_and_the_final_score(micro, small_set, capsys):
    assert sweep(small_set) == 0
    out = capsys.readouterr().out
    (row,) = rows(task="linprobe")
    sw = row.metrics["sweep"]
    assert row.config["sweep"] is True and row.config["search"]["holdout"] == 0.1 and row.config["augment"] is False
    assert sw["grid"] == {"lr": [0.3, 3.0, 30.0], "weight_decay": [0.0], "pooling": ["cls", "avg"], "blocks": [1, 4],
                          "probe_feature": "token"}   # a maebench ViT: its probe feature is [cls]
    assert len(sw["heads"]) == 12 and all(0 <= h["holdout_top1"] <= 100 for h in sw["heads"])
    assert (sw["fit_images"], sw["holdout_images"]) == (36, 4)            # 1 of each class's 10 held out
    best = max(h["holdout_top1"] for h in sw["heads"])
    assert sw["chosen"]["holdout_top1"] == best
    c = sw["chosen"]
    assert f"chosen lr {c['lr']:g}, weight decay {c['weight_decay']:g}, {c['pooling']}, last {c['blocks']}" in out
    assert f"top1 {row.metrics['top1']:.2f}" in out and row.metrics["val_images"] == 12
    assert sw["lr_at_grid_edge"] == (c["lr"] in (0.3, 30.0)) == ("at the edge of the grid" in out)


def test_poisoned_evaluation_labels_do_not_change_the_chosen_head(micro, small_set, tmp_path):
    """The same training set with the val split's labels permuted (every val image moved to
    another class folder): every held-out score and the chosen head are identical."""
    poisoned = tmp_path / "poisoned"
    shutil.copytree(small_set, poisoned)
    classes = sorted(p.name for p in (poisoned / "val").iterdir())
    for i, c in enumerate(classes):                        # class i's images go to class i+1
        for f in sorted((poisoned / "val" / c).iterdir()):
            f.rename(poisoned / "val" / classes[(i + 1) % len(classes)] / f"moved-{c}-{f.name}")
    assert sweep(small_set) == 0
    assert sweep(poisoned, "--results", tmp_path / "p.sqlite", "--out", tmp_path / "p-run") == 0
    (clean,), (bad,) = rows(task="linprobe"), rows(tmp_path / "p.sqlite", task="linprobe")
    assert bad.metrics["sweep"]["heads"] == clean.metrics["sweep"]["heads"]
    assert bad.metrics["sweep"]["chosen"] == clean.metrics["sweep"]["chosen"]
    assert bad.metrics["feature_cache"]["val"] == "miss"   # the val files changed: a new cache key


def test_logreg_head_chooses_C_on_the_held_out_slice(micro, small_set, capsys):
    assert run("--task", "linprobe", "--head", "logreg", "--backbone", micro, "--data", small_set,
               "--set", "logreg_Cs=[0.01,1.0,100.0]", *FAST) == 0
    (row,) = rows(task="linprobe")
    sw = row.metrics["sweep"]
    assert row.config["head"] == "logreg" and row.config["sweep"] is True
    assert [h["C"] for h in sw["heads"]] == [0.01, 1.0, 100.0]
    assert sw["chosen"]["C"] in (0.01, 1.0, 100.0) and f"chosen C {sw['chosen']['C']:g}" in capsys.readouterr().out


def test_one_feature_extraction_serves_linprobe_logreg_and_knn_and_cache_clear_frees_it(micro, small_set, capsys):
    assert sweep(small_set) == 0
    assert run("--task", "linprobe", "--head", "logreg", "--backbone", micro, "--data", small_set, *FAST) == 0
    assert run("--task", "knn", "--backbone", micro, "--data", small_set, "--set", "num_workers=0") == 0
    status = {r.config.get("head", "knn") + str(r.config.get("k", "")): r.metrics["feature_cache"] for r in rows()}
    assert list(status.values()) == [{"train": "miss", "val": "miss"}] + [{"train": "hit", "val": "hit"}] * 2
    knn = rows(task="knn")[0]
    assert {(g["k"], g["temperature"]) for g in knn.metrics["grid"]} == {
        (k, t) for k in (10, 20, 100, 200) for t in (0.02, 0.07, 0.1, 0.2)}
    headline = next(g for g in knn.metrics["grid"] if (g["k"], g["temperature"]) == (20, 0.07))
    assert headline["top1"] == knn.metrics["top1"]
    capsys.readouterr()
    assert main(["cache", "list"]) == 0
    listing = capsys.readouterr().out
    assert "2 entries" in listing and "4 / cls+avg" in listing
    assert main(["cache", "clear"]) == 0 and "removed 2 feature-cache entries" in capsys.readouterr().out
    assert main(["cache", "list"]) == 0 and "no cached features" in capsys.readouterr().out


def test_a_low_label_run_encodes_only_its_labelled_images_unless_the_whole_split_is_cached(micro, small_set, capsys):
    from maebench.tasks import feature_cache
    knn = ["--task", "knn", "--backbone", micro, "--data", small_set, "--set", "num_workers=0"]
    assert run(*knn, "--labels-per-class", 2) == 0                  # 8 of the 40 training images
    sizes = sorted(e["shape"][0] for e in feature_cache.entries())
    assert sizes == [8, 12]                                         # the labelled 8 and the 12 val images
    assert run(*knn, "--labels-per-class", 2, "--seed", 1) == 0      # another subset: encoded on its own
    assert sorted(e["shape"][0] for e in feature_cache.entries()) == [8, 8, 12]
    assert run(*knn) == 0                                           # all labels: the whole split
    assert run(*knn, "--labels-per-class", 3) == 0                  # now served by the whole split's entry
    assert rows(task="knn")[-1].metrics["feature_cache"] == {"train": "hit", "val": "hit"}
    assert sorted(e["shape"][0] for e in feature_cache.entries()) == [8, 8, 12, 40]


@pytest.mark.parametrize("flag", [["--labels-per-class", 2], ["--label-fraction", 0.5]])
def test_low_label_subset_is_drawn_from_the_seed_and_stored_with_the_row(micro, small_set, flag):
    for seed in (0, 1):
        assert run("--task", "knn", "--backbone", micro, "--data", small_set, "--seed", seed, *flag,
                   "--set", "num_workers=0") == 0
    a, b = (r.metrics["label_subset"] for r in rows(task="knn"))
    n = 8 if flag[0] == "--labels-per-class" else 20
    assert a["n"] == b["n"] == n and a["of"] == 40 and (a["seed"], b["seed"]) == (0, 1)
    assert a["indices"] != b["indices"] and len(set(a["indices"])) == n
    from maebench.data.imagefolder import ImageFolder, stratified_subset
    targets = ImageFolder(small_set, "train").targets
    want = stratified_subset(targets, labels_per_class=2 if n == 8 else None, fraction=0.5 if n == 20 else None, seed=1)
    assert b["indices"] == want


def test_three_seeds_give_mean_std_and_interval_in_the_summary_and_the_paired_comparison(micro, small_set, capfd, tmp_path):
    common = ["--task", "knn", "--data", small_set, "--label-fraction", 0.5, "--seeds", "0,1,2", "--set", "num_workers=0"]
    assert run(*common, "--backbone", "micro") == 0
    out = capfd.readouterr().out
    assert run(*common, "--backbone", "micro-b") == 0
    a = {r.seed: r.metrics["top1"] for r in rows(task="knn", backbone="micro")}
    b = {r.seed: r.metrics["top1"] for r in rows(task="knn", backbone="micro-b")}
    assert sorted(a) == sorted(b) == [0, 1, 2]
    # the summary line and file, checked against statistics and t(0.975, 2) = 4.3027
    mean, std = statistics.fmean(a.values()), statistics.stdev(a.values())
    half = 4.302653 * std / 3 ** 0.5
    line = f"seeds 0,1,2: knn top1 {mean:.2f} ± {std:.2f} (sample std), 95% Student-t interval " \
           f"[{mean - half:.2f}, {mean + half:.2f}], n=3"
    assert line in out
    path = Path(out.split("seed summary: ")[1].split()[0])
    (summary,) = json.loads(path.read_text())["summaries"]
    assert summary["mean"] == pytest.approx(mean) and summary["ci95"] == pytest.approx([mean - half, mean + half])
    # leaderboard --compare: per-seed differences, their mean, std and interval
    diff = [a[s] - b[s] for s in (0, 1, 2)]
    capfd.readouterr()
    assert main(["leaderboard", "--compare", "micro", "micro-b", "--format", "json"]) == 0
    (cmp,) = json.loads(capfd.readouterr().out)["comparisons"]
    assert cmp["task"] == "knn" and cmp["seeds"] == [0, 1, 2] and cmp["recipe"] == "F=0.5"
    d = cmp["difference"]
    assert d["mean"] == pytest.approx(statistics.fmean(diff)) and d["n"] == 3
    if statistics.stdev(diff) > 0:
        h = 4.302653 * statistics.stdev(diff) / 3 ** 0.5
        assert d["ci95"] == pytest.approx([d["mean"] - h, d["mean"] + h])
    assert cmp["a"]["mean"] == pytest.approx(mean) and cmp["a"]["std"] == pytest.approx(std)
    assert main(["leaderboard", "--compare", "micro", "micro-b", "--format", "github"]) == 0
    table = capfd.readouterr().out
    assert "micro − micro-b" in table and f"{mean:.2f} ± {std:.2f} [{mean - half:.2f}, {mean + half:.2f}] (n=3)" in table
    assert "95% Student-t" in table
    # seeds already done are reported, not retrained, and still count in the summary
    common[common.index("0,1,2")] = "0,1,2,3"
    assert run(*common, "--backbone", "micro") == 0
    out = capfd.readouterr().out
    assert out.count("is already done") == 3 and "n=4" in out and len(rows(task="knn", backbone="micro")) == 4


@pytest.mark.parametrize("args, message", [
    (["--task", "linprobe", "--holdout", 0.2], "--holdout applies to the sweep"),
    (["--task", "linprobe", "--head", "logreg", "--no-sweep"], "no --no-sweep mode"),
    (["--task", "knn", "--sweep"], "--sweep applies to --task linprobe"),
    (["--task", "linprobe", "--sweep", "--holdout", 1.5], "strictly between 0 and 1"),
    (["--task", "linprobe", "--search", "--search-space", "feature_pooling=max"], "feature_pooling"),
    (["--task", "knn", "--seeds", "0,x"], "--seeds expects whole numbers"),
])
def test_bad_frozen_options_are_one_line_usage_errors(micro, small_set, capsys, args, message):
    assert run(*args, "--backbone", micro, "--data", small_set, "--set", "num_workers=0") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not rows(status=None)
