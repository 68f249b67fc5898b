"""`--search` (maebench/search.py): the choice is made on held-out training data only, recorded
with every trial, reused when the search runs again, and bad spaces fail before anything runs.

Tiny: vit-micro at 16 px on 4 classes x 10 training images, 3 epochs, a 2-4 point space."""
import shutil
from pathlib import Path

import pytest

from maebench.cli import main
from maebench.results import ResultsStore

FAST = ["--set", "num_workers=0", "--set", "eval_batch_size=16", "--set", "warmup_epochs=0"]
TRAIN = ["--epochs", "3", "--batch-size", "8", *FAST]


@pytest.fixture
def micro(micro_checkpoint):
    from maebench.backbones import registry
    registry.register("micro", micro_checkpoint, arch="vit-micro", fmt="timm", img_size=16, patch_size=4,
                      family="mae-norm-pixel")
    return "micro"


def poisoned_copy(root, tmp_path) -> Path:
    """The same training split; the reported split's labels permuted (its class folders rotated)."""
    bad = tmp_path / "poisoned"
    shutil.copytree(root, bad)
    classes = sorted(p.name for p in (bad / "val").iterdir() if p.is_dir())
    for c in classes:
        (bad / "val" / c).rename(bad / "val" / f"_{c}")
    for c, d in zip(classes, classes[1:] + classes[:1]):
        (bad / "val" / f"_{c}").rename(bad / "val" / d)
    return bad


def run(*args):
    return main(["run", *map(str, args)])


def searched_row(results, task):
    (row,) = [r for r in ResultsStore(results).rows(task=task) if r.config.get("search")]
    return row


def trial_view(row):
    return [(t["params"], t["state"], t["score"]) for t in row.metrics["search"]["trials"]]


@pytest.mark.parametrize("task,extra", [
    ("finetune", ["--search-space", "lr_scale=1,4"]),
    ("partial", ["--blocks", "1", "--search-space", "lr_scale=1,4"]),
    ("linprobe", ["--set", "epochs=3", "--search-space", "base_lr=0.1,30", "--search-space", "feature_blocks=1"]),
    ("knn", []),
])
def test_the_choice_never_reads_the_reported_split(task, extra, micro, small_set, tmp_path):
    """Poisoning the reported split's labels changes the reported score, never the trials or the choice."""
    train = [] if task in ("knn", "linprobe") else TRAIN
    if task == "linprobe":
        extra = ["--batch-size", "8", "--set", "num_workers=0", *extra]
    if task == "knn":
        extra = ["--set", "num_workers=0"]
    for name, data in (("clean", small_set), ("poisoned", poisoned_copy(small_set, tmp_path))):
        assert run("--task", task, "--backbone", micro, "--data", data, *train, *extra, "--search",
                   "--results", tmp_path / f"{name}.sqlite", "--out", tmp_path / name) == 0
    clean, bad = searched_row(tmp_path / "clean.sqlite", task), searched_row(tmp_path / "poisoned.sqlite", task)
    assert trial_view(clean) == trial_view(bad)
    assert clean.metrics["search"]["chosen"] == bad.metrics["search"]["chosen"]
    assert clean.config["search"]["holdout"] > 0 and clean.metrics["search"]["selected_on"].startswith("held-out")


def test_finetune_search_records_trials_and_retrains_the_choice(micro, small_set, tmp_path):
    results = tmp_path / "r.sqlite"
    assert run("--task", "finetune", "--backbone", micro, "--data", small_set, *TRAIN, "--results", results,
               "--search", "--search-space", "lr_scale=0.5,1,2", "--search-space", "global_pool=avg,token") == 0
    (row,) = ResultsStore(results).rows(task="finetune")           # the user's store: the final row alone
    rec = row.metrics["search"]
    assert row.config["search"]["space"] == {"lr_scale": [1.0, 0.5, 2.0], "global_pool": ["avg", "token"]}
    assert [t["params"] for t in rec["trials"]][0] == {"lr_scale": 1.0, "global_pool": "avg"}   # the recipe's point first
    assert {t["state"] for t in rec["trials"]} <= {"complete", "pruned", "skipped"}
    assert rec["cost"] == pytest.approx(sum(t["cost"] for t in rec["trials"]), abs=1e-3)
    best = max((t for t in rec["trials"] if t["state"] == "complete"), key=lambda t: t["score"])
    assert rec["chosen"] == best["params"] and rec["score"] == best["score"]
    for key, value in rec["chosen"].items():                       # retrained with the chosen values
        assert row.config[key] == value
    assert row.metrics["val_images"] == 12                          # scored once on the reported split
    trials = ResultsStore(Path(rec["dir"]) / "trials.sqlite").rows(status=None)
    assert trials and all(t.split == "train-held-out" and t.config["trial_holdout"] == 0.2 for t in trials)
    assert all(t.metrics.get("val_images", 8) == 8 for t in trials if t.status == "done")   # 2 of 10 per class


def test_a_killed_search_reuses_its_finished_trials(micro, small_set, tmp_path, monkeypatch):
    from maebench import runner
    args = ["--task", "finetune", "--backbone", micro, "--data", small_set, *TRAIN, "--out", tmp_path / "run",
            "--search", "--search-space", "lr_scale=1,2,4", "--search-space", "global_pool=avg", "--search-budget", "10"]
    real, calls = runner.run_recipe, []

    def dies_on_the_second_trial(spec, recipe):
        calls.append(spec.trial_holdout)
        if spec.trial_holdout is not None and len(calls) == 2:
            raise KeyboardInterrupt
        return real(spec, recipe)

    monkeypatch.setattr(runner, "run_recipe", dies_on_the_second_trial)
    assert run(*args) != 0                      # interrupted during the second trial
    calls.clear()
    monkeypatch.setattr(runner, "run_recipe", lambda spec, recipe: (calls.append(spec.trial_holdout), real(spec, recipe))[1])
    assert run(*args) == 0
    assert calls == [0.2, 0.2, None]            # trials 2 and 3 ran, trial 1 was reused; then the final run
    row = searched_row(None, "finetune")
    assert len(row.metrics["search"]["trials"]) == 3


def test_seeds_search_once_and_reuse_the_choice(micro, small_set, tmp_path):
    assert run("--task", "finetune", "--backbone", micro, "--data", small_set, *TRAIN, "--seeds", "0,1",
               "--search", "--search-space", "lr_scale=1,2", "--search-space", "global_pool=avg") == 0
    rows = {r.seed: r for r in ResultsStore().rows(task="finetune")}
    assert set(rows) == {0, 1}
    assert rows[0].config == rows[1].config                         # one recipe: the seed-0 choice
    assert rows[1].metrics["search"]["reused_from_seed"] == 0 and "reused_from_seed" not in rows[0].metrics["search"]
    assert rows[0].config["search"]["seed"] == 0


def test_the_budget_skips_points_and_says_so(micro, small_set, tmp_path):
    assert run("--task", "finetune", "--backbone", micro, "--data", small_set, *TRAIN, "--search",
               "--search-space", "lr_scale=1,2,4,8", "--search-space", "global_pool=avg", "--search-budget", "0.9") == 0
    rec = searched_row(None, "finetune").metrics["search"]
    states = [t["state"] for t in rec["trials"]]
    assert states[0] == "complete" and "skipped" in states and rec["skipped"] == states.count("skipped")


def test_unsearched_fine_tuning_reads_the_familys_own_pooled_feature(micro_checkpoint, small_set):
    from maebench.backbones import registry
    registry.register("moco", micro_checkpoint, arch="vit-micro", fmt="timm", img_size=16, patch_size=4,
                      family="contrastive")
    registry.register("mae", micro_checkpoint, arch="vit-micro", fmt="timm", img_size=16, patch_size=4,
                      family="mae-pixel")
    for name in ("moco", "mae"):
        assert run("--task", "finetune", "--backbone", name, "--data", small_set, "--epochs", 1,
                   "--batch-size", 8, *FAST) == 0
    pools = {r.backbone: r.config["global_pool"] for r in ResultsStore().rows(task="finetune")}
    assert pools == {"moco": "token", "mae": "avg"}


@pytest.mark.parametrize("space,named", [
    ("lr_sclae=1,2", "lr_sclae"),             # unknown key
    ("lr_scale=", "lr_scale"),                # no value
    ("lr_scale=fast,2", "lr_scale"),          # wrong type
    ("lr_scale=-1,2", "lr_scale"),            # out of range
    ("global_pool=avg,mean", "global_pool"),  # not a choice
])
def test_a_bad_space_is_one_line_exit_2_naming_the_key(space, named, micro, small_set, capsys):
    assert run("--task", "finetune", "--backbone", micro, "--data", small_set, *TRAIN, "--search",
               "--search-space", space) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and named in err[0]
    assert ResultsStore().rows(status=None) == []


def test_a_config_without_a_space_names_the_protocol_file(micro, small_set, tmp_path, capsys):
    cfg = tmp_path / "nospace.yaml"
    cfg.write_text("search:\n  space: {}\n")
    assert run("--task", "finetune", "--backbone", micro, "--data", small_set, *TRAIN, "--config", cfg,
               "--search") == 2
    err = capsys.readouterr().err
    assert "maebench/protocols/finetune.yaml" in err and "search" in err


def test_a_class_the_held_out_part_would_empty_is_named(micro, small_set, capsys):
    assert run("--task", "finetune", "--backbone", micro, "--data", small_set, "--epochs", 1, "--batch-size", 2,
               *FAST, "--labels-per-class", 1, "--search", "--search-space", "lr_scale=1,2") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "class 'circle' has 1 labelled image" in err[0]


def test_search_options_need_search(micro, small_set, capsys):
    assert run("--task", "finetune", "--backbone", micro, "--data", small_set, "--search-budget", 2) == 2
    assert "--search" in capsys.readouterr().err


# ---- COCO and ADE20K: the same rule, held out by image -------------------------------------------
def rotated(folder: Path) -> None:
    """Every file of `folder` takes the next one's name: valid files, each paired with the wrong labels."""
    files = sorted(p for p in folder.iterdir() if p.is_file())
    for p in files:
        p.rename(p.with_name("_" + p.name))
    for src, dst in zip(files, files[1:] + files[:1]):
        src.with_name("_" + src.name).rename(dst)


@pytest.mark.parametrize("task,poison,sets", [
    ("coco", ("val",), ["img_size=64", "eval_batch_size=4"]),
    ("ade20k", ("annotations", "validation"), []),
])
def test_dense_searches_never_read_the_reported_split(task, poison, sets, micro32, dense_sets, tmp_path):
    clean = dense_sets[task]
    bad = shutil.copytree(clean, tmp_path / "poisoned" / clean.name)
    rotated(bad.joinpath(*poison))
    for name, data in (("clean", clean), ("poisoned", bad)):
        assert run("--task", task, "--backbone", micro32, "--data", data, "--epochs", 2, "--batch-size", 4,
                   "--set", "num_workers=0", "--set", "warmup_epochs=0", *[x for s in sets for x in ("--set", s)],
                   "--search", "--search-space", "lr_scale=1,2", "--search-space", "layer_decay=0.9",
                   "--results", tmp_path / f"{name}.sqlite", "--out", tmp_path / name) == 0
    a, b = searched_row(tmp_path / "clean.sqlite", task), searched_row(tmp_path / "poisoned.sqlite", task)
    assert trial_view(a) == trial_view(b) and a.metrics["search"]["chosen"] == b.metrics["search"]["chosen"]
    assert all(t["state"] != "skipped" for t in a.metrics["search"]["trials"])


def test_search_reuse_scores_the_best_trials_model_without_retraining(micro, small_set, tmp_path, monkeypatch):
    from maebench import engine
    assert run("--task", "finetune", "--backbone", micro, "--data", small_set, *TRAIN, "--search",
               "--search-space", "lr_scale=1,2", "--search-space", "global_pool=avg", "--search-reuse") == 0
    row = searched_row(None, "finetune")
    rec = row.metrics["search"]
    best = [t for t in rec["trials"] if t["params"] == rec["chosen"]][0]
    assert row.config["search"]["reused_trial"] == best["run_id"]
    assert row.config["trial_holdout"] == 0.2                       # trained on the training data less the held-out part
    assert row.metrics["val_images"] == 12                          # scored on the reported split
    steps = []
    monkeypatch.setattr(engine, "train_one_epoch", lambda *a, **k: steps.append(1))
    assert run("--task", "finetune", "--backbone", micro, "--data", small_set, *TRAIN, "--search",
               "--search-space", "lr_scale=1,2", "--search-space", "global_pool=avg", "--search-reuse",
               "--results", tmp_path / "again.sqlite") == 0
    again = searched_row(tmp_path / "again.sqlite", "finetune")
    assert steps == [] and again.metrics["top1"] == row.metrics["top1"]   # no epoch trained: the trial's weights


def test_search_reuse_needs_one_seed_and_a_trained_task(micro, small_set, capsys):
    assert run("--task", "finetune", "--backbone", micro, "--data", small_set, "--search", "--search-reuse",
               "--seeds", "0,1") == 2
    assert "--search-reuse" in capsys.readouterr().err


@pytest.mark.parametrize("task,extra", [
    ("knn", ["--set", "num_workers=0"]),
    ("linprobe", ["--batch-size", "8", "--set", "num_workers=0", "--set", "epochs=3",
                  "--search-space", "base_lr=0.1,30", "--search-space", "feature_blocks=1,4"]),
])
def test_joint_searches_choose_once_for_every_seed(task, extra, micro, small_set):
    assert run("--task", task, "--backbone", micro, "--data", small_set, *extra, "--search", "--seeds", "0,1") == 0
    rows = {r.seed: r for r in ResultsStore().rows(task=task)}
    assert rows[0].config == rows[1].config                          # one cell: the seed-0 search's config
    first, later = rows[0].metrics["search"], rows[1].metrics["search"]
    assert later["reused_from_seed"] == 0 and later["chosen"] == first["chosen"] and later["trials"] == first["trials"]


def test_pruner_none_trains_every_point_to_the_end_and_a_bad_pruner_is_named(micro, small_set, tmp_path, capsys):
    cfg = tmp_path / "exhaustive.yaml"
    cfg.write_text("search:\n  pruner: none\n")
    assert run("--task", "finetune", "--backbone", micro, "--data", small_set, *TRAIN, "--config", cfg, "--search",
               "--search-space", "lr_scale=1,2,4", "--search-space", "global_pool=avg", "--search-budget", 10) == 0
    rec = searched_row(None, "finetune").metrics["search"]
    assert [t["state"] for t in rec["trials"]] == ["complete"] * 3 and all(t["epochs"] == 3 for t in rec["trials"])
    cfg.write_text("search:\n  pruner: hyperband\n")
    assert run("--task", "finetune", "--backbone", micro, "--data", small_set, *TRAIN, "--config", cfg,
               "--search") == 2
    assert "search.pruner" in capsys.readouterr().err


def test_search_workers_run_the_trials_as_jobs_and_choose_as_one_process_does(micro, small_set, tmp_path, monkeypatch,
                                                                              capfd):
    """With the pruner off the trials do not depend on their order: two worker jobs (local lanes,
    one shared journal) give the same trials and choice as one process, and the command then
    only retrains the choice."""
    from maebench import runner
    cfg = tmp_path / "exhaustive.yaml"
    cfg.write_text("search:\n  pruner: none\n")
    args = ["--task", "finetune", "--backbone", micro, "--data", small_set, *TRAIN, "--config", cfg, "--search",
            "--search-space", "lr_scale=1,2,4", "--search-space", "global_pool=avg", "--search-budget", 10]
    assert run(*args, "--out", tmp_path / "one", "--results", tmp_path / "one.sqlite") == 0
    alone = searched_row(tmp_path / "one.sqlite", "finetune")
    calls, real = [], runner.run_recipe
    monkeypatch.setattr(runner, "run_recipe", lambda spec, recipe: (calls.append(spec.trial_holdout), real(spec, recipe))[1])
    capfd.readouterr()
    assert run(*args, "--out", tmp_path / "two", "--search-workers", 2, "--jobs", 2) == 0
    out = capfd.readouterr().out
    assert calls == [None]                                 # this process: the final run alone
    both = searched_row(None, "finetune")
    assert trial_view(both) == trial_view(alone) and both.metrics["search"]["chosen"] == alone.metrics["search"]["chosen"]
    logs = sorted(Path(__import__("os").environ["MAEBENCH_HOME"]).glob("jobs/search-finetune-*/*search_worker*.log"))
    assert [log.read_text().count("search: trial ") for log in logs] == [2, 1]   # points 0, 2 and point 1
    assert "== search worker 0/2" in out


def test_search_workers_need_a_search_of_trained_trials(micro, small_set, capsys):
    assert run("--task", "knn", "--backbone", micro, "--data", small_set, "--search", "--search-workers", 2) == 2
    assert "--search-workers" in capsys.readouterr().err
    assert run("--task", "finetune", "--backbone", micro, "--data", small_set, "--search-worker", "2/2") == 2
