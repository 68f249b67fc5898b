"""Which stages the demo runs: the backbones compared, the transfer tasks on each, and every
stage as a literal `maebench` command line (printed before it runs, so any stage can be copied
and run alone), with the stages it needs and its time estimate. Recipes live in the protocols'
`vit-micro` entries (docs/cpu-recipes.md); this module only says which stages run."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from maebench.backbones.pretraining import METHODS
from maebench.launch.jobs import Job, Resources
from maebench.launch.settings import protocol_resources
from maebench.tasks.table import TASKS

# The backbones compared: key -> (pretraining command, or None for the random-init scratch ViT).
PRETRAIN = {
    "mae-norm-pixel": ["--method", "mae", "--target", "norm-pixel"],
    "mae-pixel": ["--method", "mae", "--target", "pixel"],
    "mocov3": ["--method", "mocov3"],
    "supervised": ["--method", "supervised"],
    "scratch": None,
}
assert all(cmd is None or cmd[1] in METHODS for cmd in PRETRAIN.values())
SCRATCH = "scratch-vit-micro"

# Task options of the demo's comparison (what is measured, not how: recipes live in the protocols).
TASK_ARGS = {
    "finetune": ["--labels-per-class", "100"],                 # low-label fine-tuning
    "partial": ["--labels-per-class", "100"],                  # the same labels, last K blocks tuned
    "linprobe": ["--cached-features", "--labels-per-class", "1000"],
    "knn": ["--labels-per-class", "1000"],
}
PARTIAL_K = ("0", "0.5", "1", "2")       # K = all is the fine-tuning row (partial.yaml = finetune.yaml)
PARTIAL_BACKBONES = ("mae-norm-pixel", "mocov3")
DATA_KIND = {"coco": "coco", "ade20k": "ade20k"}

# Seconds each stage takes in one of two lanes (one torch thread each, side by side) on an idle
# 2-core machine (docs/cpu-recipes.md): the ETA and the budget rule read them. Keyed by stage
# kind, then backbone where they differ.
ESTIMATE = {
    "data": 15, "visualize": 10, "leaderboard": 15,
    "pretrain": {"mae-norm-pixel": 130, "mae-pixel": 120, "mocov3": 615, "supervised": 265},
    "finetune": 58, "partial": 42, "linprobe": 54, "knn": 8, "coco": 190, "ade20k": 68,
}
# --search: a searched stage's estimate is its own times this (its trials, at most the vit-micro
# search budget in full runs, then the final run; maebench/protocols/*.yaml by_arch.vit-micro.search)
SEARCH_FACTOR = {"finetune": 4.0, "partial": 4.0, "coco": 2.6, "ade20k": 2.6}
# (task, backbone) pairs the full demo leaves out to stay within 25 minutes on 2 cores; the
# report says so in their cells. `maebench demo --all` runs them too.
LEFT_OUT = {("coco", "mae-pixel"), ("ade20k", "mae-pixel"), ("coco", "mocov3"), ("ade20k", "mocov3")}

QUICK_WORLD = ["--train-per-class", "100", "--val-per-class", "20", "--coco-train-images", "16",
               "--coco-val-images", "8", "--ade-train-images", "16", "--ade-val-images", "8"]
QUICK_EPOCHS = {"pretrain": "1", "finetune": "2", "partial": "1", "linprobe": "2", "coco": "1", "ade20k": "2"}
QUICK_TASK_ARGS = {"finetune": ["--labels-per-class", "20"], "partial": ["--labels-per-class", "30"],  # K=0: batch 256
                   "linprobe": ["--cached-features"], "knn": []}


@dataclass
class Stage:
    label: str
    argv: list[str]
    kind: str
    backbone: str | None = None
    seed: int | None = None
    estimate: float = 0.0
    extra: dict = field(default_factory=dict)
    needs: tuple[str, ...] = ()          # labels of the stages that must finish first

    def job(self, settings) -> Job:
        """The stage as the launcher runs it: its protocol's vit-micro resources (the launcher
        options over them); the data and figure stages ask for one CPU."""
        protocol = None if self.kind in ("data", "visualize") else \
            f"pretrain_{PRETRAIN[self.backbone][1]}" if self.kind == "pretrain" else self.kind
        base = protocol_resources(protocol, "vit-micro") if protocol else Resources(time_min=30)
        return Job(self.label, self.argv, needs=self.needs, estimate=self.estimate,
                   resources=settings.resources(base), resumable=protocol is not None)


def _longer(key: str, mae_epochs: int | None) -> int | None:
    """The epochs --mae-epochs sets for this backbone's pretraining (MAE only), None otherwise."""
    return mae_epochs if PRETRAIN[key] is not None and PRETRAIN[key][1] == "mae" else None


def backbone_name(key: str, quick: bool, mae_epochs: int | None = None) -> str:
    """demo-<key>, demo-quick-<key>; an MAE backbone pretrained for --mae-epochs N ends in -Nep."""
    if PRETRAIN[key] is None:
        return SCRATCH
    n = _longer(key, mae_epochs)
    return ("demo-quick-" if quick else "demo-") + key + (f"-{n}ep" if n else "")


def plan(world: Path, results: Path, seeds: list[int], quick: bool, run_all: bool,
         fashion_dir: str | None, mae_epochs: int | None = None,
         search: bool = False) -> tuple[list[Stage], list[tuple[str, str]]]:
    """(stages to run, (task, backbone key) pairs left out for time); mae_epochs: the MAE
    pretrainings' epochs when not the protocol's; search: every transfer stage with --search."""
    common = ["--results", str(results)]
    data_argv = ["data", "prepare", "fashion", "--out", str(world), *(QUICK_WORLD if quick else [])]
    if fashion_dir:
        data_argv += ["--fashion-dir", fashion_dir]
    data = Stage("prepare the fashion world", data_argv, "data", estimate=ESTIMATE["data"])
    stages = [data]
    for key, cmd in PRETRAIN.items():
        if cmd is not None:
            n = _longer(key, mae_epochs)
            epochs = ["--epochs", str(n)] if n else ["--epochs", QUICK_EPOCHS["pretrain"]] if quick else []
            stages.append(Stage(f"pretrain {key}", ["pretrain", *cmd, "--arch", "vit-micro", "--data",
                                                    str(world / "classification"),
                                                    "--name", backbone_name(key, quick, mae_epochs),
                                                    *epochs, *common, "--seed", "0"],
                                "pretrain", key, estimate=ESTIMATE["pretrain"][key] * (n or 1), needs=(data.label,)))
    left_out = []
    for task in TASKS:
        for key in PRETRAIN:
            if task == "partial" and key not in PARTIAL_BACKBONES:
                continue
            if not quick and not run_all and (task, key) in LEFT_OUT:
                left_out.append((task, key))
                continue
            for k in (PARTIAL_K if task == "partial" else (None,)):
                for seed in seeds:
                    stages.append(_transfer(task, key, k, seed, world, common, quick, mae_epochs, search))
    root = Path(results).parent
    stages.append(Stage("MAE reconstructions of held-out test images",
                        ["visualize", "--backbone", backbone_name("mae-norm-pixel", quick, mae_epochs), "--images",
                         str(world / "classification" / "val"), "--per-folder", "1",       # one test image per class
                         "--out", str(root / "reconstructions"), "--grid", str(root / "reconstructions.png")],
                        "visualize", "mae-norm-pixel", estimate=ESTIMATE["visualize"]))
    return _with_needs(stages), left_out


def _with_needs(stages: list[Stage]) -> list[Stage]:
    """A stage on a pretrained backbone waits for its pretraining (the others for the data);
    k-NN waits for the linear probe of the same backbone and seed, whose cached features it reads."""
    by = {(s.kind, s.backbone, s.seed): s.label for s in stages}
    for s in stages:
        if s.kind in ("data", "pretrain"):
            continue
        first = by.get(("pretrain", s.backbone, None), stages[0].label)
        probe = by.get(("linprobe", s.backbone, s.seed)) if s.kind == "knn" else None
        s.needs = (first,) + ((probe,) if probe else ())
    return stages


def _transfer(task: str, key: str, k: str | None, seed: int, world: Path, common: list[str], quick: bool,
              mae_epochs: int | None, search: bool = False) -> Stage:
    opts = list((QUICK_TASK_ARGS if quick else TASK_ARGS).get(task, [])) + (["--search"] if search else [])
    if k is not None:
        opts += ["--blocks", k]
    if quick and task in QUICK_EPOCHS:
        opts += ["--epochs", QUICK_EPOCHS[task]]
    argv = ["run", "--task", task, "--backbone", backbone_name(key, quick, mae_epochs), "--data",
            str(world / DATA_KIND.get(task, "classification")), *opts, *common, "--seed", str(seed)]
    swept = task == "linprobe" and "--no-sweep" not in opts and {"--cached-features", "--sweep"} & set(opts)
    how = " (searched)" if search else " (swept)" if swept else ""
    label = f"{task}{how}{'' if k is None else ' K=' + k} {key} (seed {seed})"
    factor = SEARCH_FACTOR.get(task, 1.0) if search and k != "0" else 1.0
    return Stage(label, argv, task, key, seed, float(ESTIMATE[task]) * factor, {"blocks": k})
