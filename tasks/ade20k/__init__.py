"""`maebench run --task ade20k`: UperNet semantic segmentation on a registered ViT (MAE paper
A.4, Table 5).

    maebench run --task ade20k --backbone NAME [--data DIR]
                 [--num-classes K --ignore-index 255 --reduce-zero-label/--no-reduce-zero-label]

DIR is an ADEChallengeData2016-layout directory (images/{training,validation}/*.jpg,
annotations/{training,validation}/*.png: 150 classes, 0 = "other" ignored) or any set of
image / label-PNG pairs in that layout with its own class count and ignore value; without
--data, the embedded generated set (its meta.json gives 8 classes). Training runs through
the runner's engine.fit (AdamW, warm-up + poly, layer decay, AMP on CUDA, DDP under torchrun,
checkpoints, --resume); the result row holds mIoU, mAcc, aAcc (percent) and per_class_iou.
A search trial (RunSpec.trial_holdout) never reads the validation split: it trains on part of
the training pairs and scores the rest (`holdout_split`).

Patch sizes: a ViT whose patch is not a power of two (14: DINOv2, EVA-02, CLIP ViT-L/14, MAE
ViT-H/14) runs with its patch embedding resampled to 16 px, the rule COCO uses (tasks/pyramid.py
`pyramid_patch`, detectron2's p14to16 for ViTDet-H): the 512 crop is then a 32 x 32 grid, as for
a patch-16 model, and the pyramid's levels sit at strides 4..32. (DINOv2's own linear heads
instead resize to 518 or pad; one rule for both dense tasks was chosen here.) The row's config
records it (`patch_rule: resample-14-to-16`), and so does the log line; crop_size must be a
multiple of the patch after the rule. A patch that divides the crop (16 on 512, 14 on 56) runs
unchanged, with no `patch_rule`.

Package layout: transforms.py (joint image/label augmentation), relpos.py (zero-init relative
position bias), model.py (ViT + the shared pyramid + UperNet +
auxiliary FCN, the loss), evaluate.py (whole / sliding-window inference, confusion-matrix metrics).
"""
from __future__ import annotations

import json
from pathlib import Path

from maebench.data import dataset_name, default_dataset
from maebench.errors import MaebenchError, UsageError, unknown
from maebench.runspec import RunSpec

TASK = "ade20k"
EVAL_MODES = ("whole", "slide")
SCHEDULES = ("poly", "cosine")


def recipes(spec: RunSpec):
    from maebench.backbones import registry

    if not spec.backbone:
        raise UsageError("--task ade20k needs --backbone NAME")
    entry = registry.entry(spec.backbone)
    root, dataset = data_root(spec.data)
    from maebench.tasks.pyramid import apply_patch_rule, describe_patch
    cfg = spec.load_config(arch=entry.arch, flags=label_flags(spec.options, root))
    patch = apply_patch_rule(cfg, entry.patch_size, cfg["crop_size"])   # 14 -> 16 (patch_rule), before the run id
    cfg = check_config(cfg, patch)
    if not entry.any_size and cfg["eval_mode"] == "whole":
        raise UsageError(f"backbone '{spec.backbone}' ({entry.model}) has relative position tables fixed to the crop "
                         "size: use --set eval_mode=slide")
    if not entry.present:
        raise registry.missing_weights_error(entry)
    # reads every label map: errors before any row; a search trial's val is held-out training images
    train_set, val_set = open_data(root, cfg, entry, holdout=spec.trial_holdout, seed=spec.seed,
                                   score_held_out=not spec.trial_reported)

    import torch

    from maebench import distributed, optim, runs
    from maebench.flops import count_flops
    from maebench.runner import Recipe
    from maebench.tasks.ade20k.evaluate import evaluate
    from maebench.tasks.ade20k.model import segmentation_loss

    device = distributed.init(spec.device, deterministic=spec.deterministic)
    from maebench.microbatch import micro_batch
    micro = micro_batch(cfg["batch_size"], distributed.world_size(), cfg["accum_iter"])
    if micro < 2:
        raise UsageError(f"the per-process batch is {micro} image(s): the heads' BatchNorm needs at least 2 "
                         "(raise batch_size or lower accum_iter)")
    torch.manual_seed(spec.seed)          # the heads' initialisation is part of the run's recipe
    model, entry = build_model(spec.backbone, cfg, device)
    groups = optim.param_groups(model, weight_decay=cfg["weight_decay"], layer_decay=cfg["layer_decay"],
                                num_layers=len(model.backbone.vit.blocks), vit_prefix="backbone.vit.")
    crop = cfg["crop_size"]
    model.to(device).eval()   # eval: count without touching BatchNorm statistics (aux head not counted)
    flops = count_flops(lambda: model(torch.zeros(1, 3, crop, crop, device=device)))
    model.train()
    log = print if distributed.is_main() else (lambda *_: None)
    images = (f"{len(val_set)} val images" if spec.trial_holdout is None or spec.trial_reported else
              f"held-out {len(val_set)} of the {len(train_set) + len(val_set)} training images")
    log(f"ade20k: {spec.backbone} ({entry.arch}, {describe_patch(entry.patch_size, patch)}) + UperNet, {len(train_set)} train / "
        f"{images}, {cfg['num_classes']} classes, crop {crop}, "
        f"out_indices {model.backbone.out_indices}, rel_pos_bias {cfg['rel_pos_bias']}, "
        f"eval {cfg['eval_mode']}, {flops / 1e9:.2f} GFLOPs/image")

    def loss_fn(m, batch, dev):
        images, labels = batch
        logits, aux = m(images.to(dev, non_blocking=True))
        return segmentation_loss(logits, aux, labels.to(dev, non_blocking=True),
                                 ignore_index=cfg["ignore_index"], aux_weight=cfg["aux_weight"])

    def evaluate_fn(m):
        return evaluate(m, val_set, num_classes=cfg["num_classes"], ignore_index=cfg["ignore_index"],
                        device=device, mode=cfg["eval_mode"], crop=crop, stride=cfg["stride"],
                        num_workers=cfg["num_workers"], amp=cfg["amp"])

    def report(metrics: dict, run) -> None:
        log(f"ade20k {spec.backbone} on {dataset}: {summary(metrics)}  (run {run.run_id})")

    yield Recipe(task=TASK, backbone=spec.backbone, dataset=dataset, config=cfg, device=device,
                 backbone_info=runs.backbone_info(entry), checkpoint_sha256=entry.sha256, desc=TASK, log=log,
                 model=model, train_set=train_set, loss_fn=loss_fn, param_groups=groups, evaluate=evaluate_fn,
                 flops_per_image=flops, report=report)


# ---- inputs -----------------------------------------------------------------------------------
def data_root(data: str | None) -> tuple[Path, str]:
    """(dataset directory, the row's dataset name): --data DIR or the embedded generated set."""
    if data:
        root = Path(data).expanduser().resolve()
        if (root / "ADEChallengeData2016").is_dir() and not (root / "images").is_dir():
            root = root / "ADEChallengeData2016"     # the folder holding it, as resolve_ade20k accepts
        return root, dataset_name(root)
    return default_dataset("ade20k"), "shapes"


def label_flags(options: dict, root: Path) -> dict:
    """The label options (--num-classes, --ignore-index, --reduce-zero-label; None = not given)
    as config keys. A directory written by maebench (meta.json) supplies its own label
    conventions unless the command line overrides."""
    meta = {}
    meta_file = root / "meta.json"
    if meta_file.is_file():
        try:
            meta = json.loads(meta_file.read_text())
        except (OSError, ValueError) as e:
            raise MaebenchError(f"cannot read {meta_file}: {e}") from None
    if meta.get("kind") not in (None, "ade20k"):
        raise MaebenchError(f"{root} holds a generated '{meta.get('kind')}' set, not an ADE20K-layout one")

    def pick(name):
        given = options.get(name)
        return given if given is not None else meta.get(name)

    return {name: pick(name) for name in ("num_classes", "ignore_index", "reduce_zero_label")}


def check_config(cfg: dict, patch_size: int) -> dict:
    """Task-specific checks config.load cannot know; returns cfg with integral epochs as int."""
    if cfg["eval_mode"] not in EVAL_MODES:
        raise unknown("inference mode (eval_mode)", cfg["eval_mode"], EVAL_MODES)
    if cfg["schedule"] not in SCHEDULES:
        raise unknown("lr schedule", cfg["schedule"], SCHEDULES)
    k, ignore = cfg["num_classes"], cfg["ignore_index"]
    if not isinstance(k, int) or k < 2:
        raise UsageError(f"the number of classes must be an integer >= 2, got {k!r}")
    if 0 <= ignore < k:
        raise UsageError(f"ignore_index {ignore} is one of the {k} class ids; use a value outside 0..{k - 1} (e.g. 255)")
    crop = cfg["crop_size"]
    if not isinstance(crop, int) or crop <= 0 or crop % patch_size:
        raise UsageError(f"config key 'crop_size' must be a positive multiple of the patch size {patch_size}, got {crop!r}")
    if not isinstance(cfg["stride"], int) or not 0 < cfg["stride"] <= crop:
        raise UsageError(f"config key 'stride' must lie in (0, crop_size={crop}], got {cfg['stride']!r}")
    lo_hi = cfg["ratio_range"]
    if not (isinstance(lo_hi, list) and len(lo_hi) == 2 and 0 < lo_hi[0] <= lo_hi[1]):
        raise UsageError(f"config key 'ratio_range' must be [low, high] with 0 < low <= high, got {lo_hi}")
    for key, low, high in (("flip", 0, 1), ("cat_max_ratio", 0, 1), ("dropout", 0, 1)):
        if not low <= cfg[key] <= high:
            raise UsageError(f"config key '{key}' must lie in [{low}, {high}], got {cfg[key]}")
    for key in ("channels", "aux_channels", "num_workers"):
        if not isinstance(cfg[key], int) or cfg[key] < (0 if key == "num_workers" else 1):
            raise UsageError(f"config key '{key}' must be a {'non-negative' if key == 'num_workers' else 'positive'} "
                             f"integer, got {cfg[key]!r}")
    out = cfg["out_indices"]
    if out and not (isinstance(out, list) and len(out) == 4 and all(isinstance(i, int) for i in out)
                    and out == sorted(set(out)) and out[0] >= 0):
        raise UsageError(f"config key 'out_indices' must be [] or 4 increasing block indices, got {out}")
    return cfg


def open_data(root: Path, cfg: dict, entry, holdout: float | None = None, seed: int = 0,
              score_held_out: bool = True):
    """(train, val) SegmentationPairs with the protocol's transforms; pairing problems raise here.
    With `holdout` (a search trial's fraction) train is the training pairs less that part and val
    the held-out part (`holdout_split`; the validation split is never listed or read), or, with
    `score_held_out` false (a reused trial), the validation split."""
    from maebench.data.ade20k import SegmentationPairs, resolve_ade20k
    from maebench.tasks.ade20k.transforms import SegEvalTransform, SegTrainTransform

    train_tf = SegTrainTransform(img_size=cfg["img_size"], crop_size=cfg["crop_size"], mean=entry.mean,
                                 std=entry.std, ignore_index=cfg["ignore_index"], ratio_range=cfg["ratio_range"],
                                 cat_max_ratio=cfg["cat_max_ratio"], flip=cfg["flip"], photometric=cfg["photometric"])
    eval_tf = SegEvalTransform(img_size=cfg["img_size"], mean=entry.mean, std=entry.std)
    labels = dict(num_classes=cfg["num_classes"], ignore_index=cfg["ignore_index"],
                  reduce_zero_label=cfg["reduce_zero_label"])
    train_set = SegmentationPairs(*resolve_ade20k(root, "training"), transforms=train_tf, **labels)
    if holdout is not None:
        train_set, val_set = holdout_split(train_set, eval_tf, holdout, seed)
    if holdout is None or not score_held_out:
        val_set = SegmentationPairs(*resolve_ade20k(root, "validation"), transforms=eval_tf, **labels)
    for dataset in (train_set, val_set):
        check_labels(dataset.pairs, **labels)
    return train_set, val_set


def holdout_split(train_set, eval_transforms, fraction: float, seed: int):
    """A search trial's (fit set, held-out set): the training pairs, in stem order, split by image
    (maebench/data/heldout.py `by_image`); the held-out set gets the evaluation transforms."""
    import copy

    from maebench.data import heldout

    fit, held = heldout.by_image(len(train_set.pairs), fraction, seed)
    fit_set, held_set = copy.copy(train_set), copy.copy(train_set)
    fit_set.pairs = [train_set.pairs[i] for i in fit]
    held_set.pairs = [train_set.pairs[i] for i in held]
    held_set.transforms = eval_transforms
    return fit_set, held_set


def check_labels(pairs: list[tuple[str, str]], *, num_classes: int, ignore_index: int,
                 reduce_zero_label: bool) -> None:
    """Read every label map once before the run exists: its size against its image's header and
    its values against the class count. The reader checks the same per item, but inside a
    DataLoader worker hours into training, after the run's row exists; here a bad file is a
    one-line error naming it, and no row is left. Threads, because PNG decoding releases the GIL
    (ADE20K's 22,210 maps take well under a minute on a few cores)."""
    import os
    from concurrent.futures import ThreadPoolExecutor

    from maebench.data.files import image_size, load_label
    from maebench.data.seg_labels import map_label, size_problem

    def one(pair):
        image_path, label_path = pair
        raw = load_label(label_path)
        size = image_size(image_path)
        if size is None:
            raise MaebenchError(f"cannot read image {image_path}")
        problem = size_problem(size, image_path, label_path, raw)
        if problem:
            raise MaebenchError(problem)
        map_label(raw, num_classes, ignore_index, reduce_zero_label, name=label_path)

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        for _ in pool.map(one, pairs):     # the first bad file in name order raises
            pass


# ---- model ------------------------------------------------------------------------------------
def build_model(backbone: str, cfg: dict, device):
    """(UperNetSegmentor, entry): the backbone at the crop's grid with drop path, plus the heads.
    Under torchrun on GPUs the heads' BatchNorm becomes SyncBatchNorm (2 images per GPU in the
    paper's setup: per-GPU statistics would be too noisy), as in the released configs."""
    import torch.nn as nn

    from maebench.backbones import registry
    from maebench import distributed
    from maebench.tasks.ade20k.model import UperNetSegmentor
    from maebench.tasks.pyramid import run_patch

    e = registry.entry(backbone)
    extra = {"dynamic_img_size": True} if e.any_size else {}   # whole-image inference at any size
    patch = run_patch(cfg, e.patch_size)       # the config's patch_rule: 14 -> 16 (tasks/pyramid.py)
    vit, entry = registry.load(backbone, img_size=cfg["crop_size"], drop_path_rate=cfg["drop_path"],
                               resample_patch=patch, **extra)
    out = cfg["out_indices"] or None
    if out and out[-1] >= len(vit.blocks):
        raise UsageError(f"config key 'out_indices' {out} names a block beyond the backbone's {len(vit.blocks)}")
    grid = cfg["crop_size"] // patch
    model = UperNetSegmentor(vit, num_classes=cfg["num_classes"], window=(grid, grid), out_indices=out,
                             rel_pos_bias=cfg["rel_pos_bias"], channels=cfg["channels"],
                             aux_channels=cfg["aux_channels"], dropout=cfg["dropout"])
    if distributed.is_dist() and device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return model, entry


def summary(metrics: dict) -> str:
    return " ".join(f"{k} {metrics[k]:.2f}" for k in ("mIoU", "mAcc", "aAcc") if k in metrics)
