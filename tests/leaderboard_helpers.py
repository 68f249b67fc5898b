"""A results store filled with known rows, shared by the tests/test_leaderboard_*.py files.

Families come from each run's `backbone_family` config key, so these tests never depend on
the backbone registry (which may not know these names)."""
from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

from maebench.results import ResultsStore


def add(store: ResultsStore, task: str, backbone: str, dataset: str | None, metrics: dict | None,
        *, seed: int = 0, family: str = "mae-norm-pixel", arch: str = "vit-tiny", status: str = "done",
        wall: float | None = 10.0, mem: float | None = 100.0, ips: float | None = None,
        paper: list | None = None, **config) -> str:
    info = {"family": family, "arch": arch, **({"paper": paper} if paper else {})} if family else None
    run_id = store.start(task=task, backbone=backbone, dataset=dataset, config=config, seed=seed,
                         backbone_info=info)
    if status == "done":
        store.finish(run_id, metrics or {}, wall_time_s=wall, peak_mem_mb=mem, images_per_s=ips)
    elif status == "failed":
        store.fail(run_id, "RuntimeError: boom")
    return run_id


def known_store(path) -> ResultsStore:
    """The reference store. Hand-computed expectations are in the tests that use it:
    mae-tiny linprobe [shapes] 70, 72, 74 -> 72.00 ± 2.00, n = 3;
    mae-large-in1k fine-tune [ImageNet-1K] 85.5, 85.9 -> 85.70 ± 0.28, n = 2, paper 85.9 -> Δ -0.20;
    mae-large-in1k linear [ImageNet-1K] 75.0 -> paper 75.8 (Table 12) -> Δ -0.80."""
    store = ResultsStore(path)
    # pretraining runs: mask ratio and cost
    add(store, "pretrain-mae", "mae-tiny", "shapes", {"loss": 0.4}, mask_ratio=0.75,
        wall=100.0, mem=900.0, ips=500.0)
    add(store, "pretrain-mae", "mae-tiny-m50", "shapes", {"loss": 0.3}, mask_ratio=0.5,
        wall=80.0, mem=800.0, ips=600.0)
    for seed, v in enumerate((70.0, 72.0, 74.0)):
        add(store, "linprobe", "mae-tiny", "shapes", {"top1": v, "top5": 99.0}, seed=seed, wall=5.0, mem=300.0)
    add(store, "finetune", "mae-tiny", "shapes", {"top1": 80.0}, seed=0)
    add(store, "finetune", "mae-tiny", "shapes", {"top1": 82.0}, seed=1)
    add(store, "finetune", "mae-tiny", "fashion-mnist", {"top1": 88.0}, seed=0)
    for k, v in ((0, 60.0), (1, 65.0), (2, 70.0)):
        add(store, "partial", "mae-tiny", "shapes", {"top1": v}, blocks=k)
    add(store, "knn", "mae-tiny", "shapes", {"top1": 55.0})
    add(store, "coco", "mae-tiny", "shapes-coco", {"bbox/AP": 10.0, "segm/AP": 8.0, "bbox/AP50": 20.0})
    add(store, "ade20k", "mae-tiny", "shapes-seg", {"mIoU": 30.0, "mAcc": 40.0, "per_class_iou": [1, 2]})
    add(store, "linprobe", "mae-tiny-m50", "shapes", {"top1": 68.0})
    add(store, "finetune", "mae-tiny-m50", "shapes", {"top1": 79.0})
    add(store, "partial", "mae-tiny-m50", "shapes", {"top1": 58.0}, blocks=0)
    add(store, "partial", "mae-tiny-m50", "shapes", {"top1": 64.0}, blocks=1)
    add(store, "linprobe", "moco-tiny", "shapes", {"top1": 60.0}, family="contrastive")
    add(store, "finetune", "mae-large-in1k", "imagenet", {"top1": 85.5}, seed=0, arch="vit-large")
    add(store, "finetune", "mae-large-in1k", "imagenet", {"top1": 85.9}, seed=1, arch="vit-large")
    add(store, "linprobe", "mae-large-in1k", "ImageNet-1K", {"top1": 75.0}, arch="vit-large")
    add(store, "finetune", "mae-large-in1k", "shapes", {"top1": 90.0}, arch="vit-large")
    # never counted: a failed run and a run still running, with numbers that would show
    add(store, "linprobe", "mae-tiny", "shapes", None, seed=7, status="failed")
    add(store, "linprobe", "mae-tiny", "shapes", None, seed=8, status="running")
    add(store, "linprobe", "ghost", "shapes", None, status="failed")
    return store


PAPER_SCALE_BACKBONES = (  # name, family, arch
    ("mae-vit-large-normpix", "mae-norm-pixel", "vit-large"),
    ("mae-vit-large-pixel", "mae-pixel", "vit-large"),
    ("mocov3-vit-base", "contrastive", "vit-base"),
    ("supervised-vit-base", "supervised", "vit-base"),
    ("scratch-vit-large", "scratch", "vit-large"),
)
PARTIAL_K = (0, 0.5, 1, 2, 4, 24)


_BUILT: dict[str, Path] = {}


def paper_scale_store(path) -> ResultsStore:
    """5 backbones x the 6 tasks on the paper's datasets (so paper rows and deltas appear), with
    3 seeds per cell (so cells carry ± std), partial fine-tuning at six K, and their pretraining
    runs: the widest board the layout has to fit. Built once per test process, then copied."""
    if "wide" not in _BUILT:
        tmp = tempfile.mkdtemp(prefix="maebench-wide-")
        atexit.register(shutil.rmtree, tmp, True)
        _BUILT["wide"] = Path(tmp) / "results.sqlite"
        _fill_paper_scale(ResultsStore(_BUILT["wide"]))
    shutil.copyfile(_BUILT["wide"], path)
    return ResultsStore(path)


def _fill_paper_scale(store: ResultsStore) -> None:
    for b, (name, family, arch) in enumerate(PAPER_SCALE_BACKBONES):
        kw = {"family": family, "arch": arch}
        if family != "scratch":
            add(store, "pretrain-mae", name, "imagenet", {"loss": 0.4}, wall=36000.0 + b, mem=30000.0,
                ips=900.0 + b, mask_ratio=0.75, **kw)
        for seed in range(3):
            def v(base: float, t: int) -> float:      # a different order of backbones per task
                return round(base + 0.2 * seed + ((b * 7 + t * 3) % 5) * 0.6, 4)
            add(store, "finetune", name, "imagenet", {"top1": v(83.0, 0), "top5": v(96.0, 0)}, seed=seed, **kw)
            add(store, "linprobe", name, "imagenet", {"top1": v(70.0, 1), "top5": v(88.0, 1)}, seed=seed, **kw)
            add(store, "knn", name, "imagenet", {"top1": v(60.0, 2), "top5": v(80.0, 2)}, seed=seed, **kw)
            add(store, "ade20k", name, "ade20k", {"mIoU": v(48.0, 3), "mAcc": v(59.0, 3)}, seed=seed, **kw)
            add(store, "coco", name, "coco", {"bbox/AP": v(50.0, 4), "segm/AP": v(44.0, 4), "bbox/AP50": v(70.0, 4),
                                              "bbox/AP75": v(55.0, 4)}, seed=seed, **kw)
            for k in PARTIAL_K:
                add(store, "partial", name, "imagenet", {"top1": v(73.0 + k / 3, 5)}, seed=seed, blocks=k, **kw)


def markdown_tables(md: str) -> dict[str, tuple[list[str], list[list[str]]]]:
    """Every table of a markdown leaderboard: its '## ' title -> (header, rows), cells stripped
    ('**' best marks and '*' paper-row italics kept)."""
    tables, title, block = {}, None, []
    for line in [*md.splitlines(), ""]:
        if line.startswith("## "):
            title = line[3:].strip()
        if line.startswith("|"):
            block.append([c.strip() for c in line.strip()[1:-1].split("|")])
        elif block:
            key = title if title not in tables else f"{title} ({len(tables)})"
            tables[key] = (block[0], block[2:])
            block = []
    return tables


def plain(cell: str) -> str:
    """A markdown cell without its best / paper marks."""
    return cell.replace("**", "").strip("*")
