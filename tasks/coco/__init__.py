"""`maebench run --task coco`: Mask R-CNN + FPN on a registered ViT (MAE paper A.3, Table 4).

    maebench run --task coco --backbone NAME [--data DIR] [--neck vit-fpn|simple-pyramid|vitdet]
    maebench run --task coco --data DIR --eval-predictions FILE.json [--backbone NAME]

`recipes(spec)` builds the run; the runner trains it through engine.fit (AdamW, warm-up,
step/cosine, AMP, DDP, checkpoints, --resume, periodic evaluation); evaluation is pycocotools
COCOeval on the val split, with the detections written to <run dir>/coco_results.json.
--eval-predictions re-scores such a file against the dataset's val split with the same
evaluator and stores a row, without building a model or importing torch (rescore.py).
A search trial (RunSpec.trial_holdout) neither reads nor scores the val split: it trains on part
of the training images and scores the rest against the training file (`holdout_sets`).

Patch sizes: the canvas (1024 px, LSJ) is a multiple of 32, which a patch 14 does not divide.
Every neck therefore runs a patch-14 ViT (DINOv2, EVA-02, CLIP ViT-L/14, MAE ViT-H/14) with its
patch embedding resampled to 16 px, as detectron2's ViTDet-H does (mae_pretrain_vit_huge_p14to16;
tasks/pyramid.py `pyramid_patch`, one resampler: backbones/build.py `resample_patch_embed`):
vit-fpn and simple-pyramid load the ViT at the canvas's 16 px grid (position embeddings resized
to it once), vitdet keeps the pretraining grid's position embedding and resamples the kernel in
its encoder. The row's config says so (`patch_rule: resample-14-to-16`), and so does the log
line; a patch that divides the canvas (4, 8, 16; 14 on a 224 px canvas) runs unchanged, with no `patch_rule`.

Package layout: adapter.py (ViT -> FPN necks), vitdet.py (ViTDet as published: window attention,
relative position bias, its pyramid), model.py (Mask R-CNN), data.py (transforms), evaluate.py
(COCOeval, results files), rescore.py (--eval-predictions).
"""
from __future__ import annotations

from maebench.data import dataset_name, default_dataset
from maebench.errors import MaebenchError, UsageError, unknown
from maebench.runspec import RunSpec

TASK = "coco"
AUG_MODES = ("lsj", "resize")
SCHEDULES = ("step", "cosine")
# torchvision's loss names -> the short names of the progress line and the epoch history
LOSS_NAMES = {"loss_classifier": "cls", "loss_box_reg": "box", "loss_mask": "mask",
              "loss_objectness": "rpn_obj", "loss_rpn_box_reg": "rpn_box"}


# ---- inputs --------------------------------------------------------------------------------
def data_paths(data: str | None, train_json: str | None = None, val_json: str | None = None,
               images: str | None = None, *, need_train: bool = True) -> tuple[dict[str, str], str]:
    """({train_json, val_json, train_images, val_images}, dataset name) from --data DIR (COCO
    2017 or embedded layout), --train-json/--val-json/--images, or the embedded generated set."""
    from maebench.data.files import require_dir, require_file

    custom = [train_json, val_json, images]
    if any(custom):
        if data:
            raise UsageError("give either --data DIR or --train-json/--val-json/--images, not both")
        if not images or not val_json or (need_train and not train_json):
            need = "--val-json and --images" + (" (and --train-json to train)" if need_train else "")
            raise UsageError(f"a COCO-format set needs {need}")
        images = str(require_dir(images, "COCO images directory"))
        paths = {"train_json": str(require_file(train_json, "COCO annotation file")) if train_json else "",
                 "val_json": str(require_file(val_json, "COCO annotation file")),
                 "train_images": images, "val_images": images}
        return paths, dataset_name(images)
    from maebench.data.layout import resolve_coco
    if data:
        return resolve_coco(data), dataset_name(data)
    return resolve_coco(default_dataset("coco")), "shapes"


def check_config(cfg: dict) -> dict:
    """Task-specific checks config.load cannot know; returns cfg with integral epochs as int."""
    from maebench.tasks.coco.adapter import NECKS

    if cfg["neck"] not in NECKS:
        raise unknown("neck", cfg["neck"], NECKS)
    if cfg["aug"]["mode"] not in AUG_MODES:
        raise unknown("augmentation mode (aug.mode)", cfg["aug"]["mode"], AUG_MODES)
    if cfg["schedule"] not in SCHEDULES:
        raise unknown("lr schedule", cfg["schedule"], SCHEDULES)
    lo_hi = cfg["aug"]["scale_range"]
    if not (isinstance(lo_hi, list) and len(lo_hi) == 2 and 0 < lo_hi[0] <= lo_hi[1]):
        raise UsageError(f"config key 'aug.scale_range' must be [low, high] with 0 < low <= high, got {lo_hi}")
    if not 0 <= cfg["aug"]["flip"] <= 1:
        raise UsageError(f"config key 'aug.flip' must lie in [0, 1], got {cfg['aug']['flip']}")
    sizes = cfg["min_size"] if isinstance(cfg["min_size"], list) else [cfg["min_size"]]
    if not sizes or not all(isinstance(s, int) and 0 < s <= cfg["max_size"] for s in sizes):
        raise UsageError(f"config key 'min_size' must hold sizes in (0, max_size={cfg['max_size']}], got {cfg['min_size']}")
    for key in ("fpn_channels", "representation_size", "mask_head_dim", "rpn_batch_size_per_image",
                "box_batch_size_per_image", "box_detections_per_img"):
        if not isinstance(cfg["model"][key], int) or cfg["model"][key] <= 0:
            raise UsageError(f"config key 'model.{key}' must be a positive integer, got {cfg['model'][key]!r}")
    anchors = cfg["model"]["anchor_sizes"]
    if not (isinstance(anchors, list) and len(anchors) == 5 and all(isinstance(a, (int, float)) and a > 0 for a in anchors)):
        raise UsageError(f"config key 'model.anchor_sizes' needs 5 positive sizes (FPN levels P2-P6), got {anchors}")
    vd = cfg["vitdet"]
    if not isinstance(vd["window_size"], int) or vd["window_size"] < 0:
        raise UsageError(f"config key 'vitdet.window_size' must be an integer >= 0 (0 = all global), got {vd['window_size']!r}")
    if vd["global_blocks"] is not None and not (isinstance(vd["global_blocks"], list)
                                                and all(isinstance(i, int) for i in vd["global_blocks"])):
        raise UsageError(f"config key 'vitdet.global_blocks' must be null (ViTDet's rule) or a list of block indices, got {vd['global_blocks']!r}")
    if cfg["eval_batch_size"] <= 0:
        raise UsageError(f"config key 'eval_batch_size' must be > 0, got {cfg['eval_batch_size']}")
    return cfg


def check_canvas(cfg: dict, patch: int) -> None:
    """The canvas (a multiple of 32 by construction) must also be whole patches of the patch the
    run uses (after the patch rule); checked before any row exists."""
    from maebench.tasks.coco.model import canvas_size
    side = canvas_size(cfg)
    if side % patch:
        raise UsageError(f"detection canvas {side} px must be a multiple of 32 and of the patch size {patch}")


def holdout_sets(paths: dict[str, str], train_transforms, fraction: float, seed: int):
    """A search trial's (fit set, held-out set), both from the training annotation file: its
    images in id order split by image (maebench/data/heldout.py `by_image`). The held-out set is
    read as evaluation data, and its `coco` -- the ground truth COCOeval scores -- holds only the
    held-out images. The val json and images are never opened."""
    from maebench.data import coco_json, heldout
    from maebench.data.coco import CocoInstances
    from maebench.tasks.coco.data import ReportLoadErrors, eval_transform

    data = coco_json.load(paths["train_json"])
    ids = sorted(img["id"] for img in data["images"])
    fit, held = heldout.by_image(len(ids), fraction, seed)

    def part(positions: list[int], train: bool, transforms):
        return ReportLoadErrors(CocoInstances(paths["train_images"], paths["train_json"], train=train,
                                              transforms=transforms, image_ids=[ids[i] for i in positions], data=data))

    return part(fit, True, train_transforms), part(held, False, eval_transform)


# ---- training --------------------------------------------------------------------------------
def param_groups(model, cfg: dict, *, num_layers: int) -> list[dict]:
    """The optimizer groups. Layer-wise lr decay for every neck (detectron2's get_vit_lr_decay_rate
    for vitdet). Weight decay: `--neck vitdet` builds the groups as the ViTDet configs do
    (detectron2 get_default_optimizer_params: everything decayed, biases and the channels-first
    LayerNorms of the pyramid and heads included, except torch.nn norms (weight_decay_norm=0) and
    pos_embed (override 0) for B/L; nothing exempt for H, per vitdet.decay_norms /
    decay_pos_embed); the other necks keep the MAE/BEiT transfer rule (every 1-D tensor exempt)."""
    from maebench import optim

    common = dict(weight_decay=cfg["weight_decay"], layer_decay=cfg["layer_decay"], num_layers=num_layers,
                  vit_prefix="backbone.vit.")
    if cfg["neck"] != "vitdet":
        return optim.param_groups(model, **common)
    from maebench.tasks.pyramid import LayerNorm2d
    vd = cfg["vitdet"]
    return optim.detectron2_param_groups(
        model, weight_decay_norm=None if vd["decay_norms"] else 0.0,
        overrides={} if vd["decay_pos_embed"] else {"pos_embed": {"weight_decay": 0.0}},
        not_norms=(LayerNorm2d,), **common)


def loss_fn(model, batch, device):
    """Sum of torchvision's five Mask R-CNN losses (RPN objectness and box, RoI class, box, mask)."""
    import torch

    from maebench.tasks.coco.data import raise_load_failure

    raise_load_failure(batch)
    images, targets = batch
    images = [im.to(device, non_blocking=True) for im in images]
    targets = [{k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in t.items()}
               for t in targets]
    losses = model(images, targets)
    return sum(losses.values()), {LOSS_NAMES.get(k, k): v.detach() for k, v in losses.items()}


def recipes(spec: RunSpec):
    from maebench.backbones import registry

    if not spec.backbone:
        raise UsageError("--task coco needs --backbone NAME (or --eval-predictions FILE.json to re-score a file)")
    entry = registry.entry(spec.backbone)
    cfg = check_config(spec.load_config(arch=entry.arch, flags={"neck": spec.option("neck")}))
    from maebench.tasks.coco.model import canvas_size
    from maebench.tasks.pyramid import apply_patch_rule, describe_patch
    patch = apply_patch_rule(cfg, entry.patch_size, canvas_size(cfg))   # 14 -> 16 (patch_rule), before the run id
    check_canvas(cfg, patch)
    paths, dataset = data_paths(spec.data, spec.option("train_json"), spec.option("val_json"), spec.option("images"))
    if not entry.present:
        raise registry.missing_weights_error(entry)

    # torch only from here on
    from maebench import distributed, engine, optim, runs
    from maebench.data.coco import CocoInstances
    from maebench.runner import Recipe
    from maebench.tasks.coco.data import ReportLoadErrors, collate, eval_transform, train_transform
    from maebench.tasks.coco.evaluate import RESULTS_FILE, make_evaluator, summary
    from maebench.tasks.coco.model import build_mask_rcnn, canvas_size

    if spec.trial_holdout is None:
        train_set = ReportLoadErrors(CocoInstances(paths["train_images"], paths["train_json"], train=True,
                                                   transforms=train_transform(cfg, entry.mean)))
    else:
        train_set, val_set = holdout_sets(paths, train_transform(cfg, entry.mean), spec.trial_holdout, spec.seed)
        images = (f"{len(train_set)} train / held-out {len(val_set)} of the {len(train_set) + len(val_set)} "
                  "training images")
    if spec.trial_holdout is None or spec.trial_reported:     # a reused trial is scored on the val split
        val_set = ReportLoadErrors(CocoInstances(paths["val_images"], paths["val_json"], train=False,
                                                 transforms=eval_transform))
        if train_set.cat_ids != val_set.cat_ids:
            raise MaebenchError(f"{paths['train_json']} declares categories {train_set.cat_ids} but {paths['val_json']} "
                                f"declares {val_set.cat_ids}: labels would not match")
        images = f"{len(train_set)} train / {len(val_set)} val images"
    device = distributed.init(spec.device, deterministic=spec.deterministic)
    import torch
    torch.manual_seed(spec.seed)     # random parts (heads, a scratch backbone) are part of the run's recipe
    # vitdet keeps the pretraining grid's position embedding and resizes it per forward (detectron2),
    # and resamples a patch 14 itself (ViTDetEncoder); the other necks get the ViT at the canvas's
    # grid with the patch of the patch rule
    if cfg["neck"] == "vitdet":
        vit, entry = registry.load(spec.backbone, img_size=None, drop_path_rate=cfg["drop_path"])
    else:
        vit, entry = registry.load(spec.backbone, img_size=canvas_size(cfg), drop_path_rate=cfg["drop_path"],
                                   resample_patch=patch)
    model = build_mask_rcnn(vit, num_classes=train_set.num_classes, mean=entry.mean, std=entry.std, cfg=cfg)
    if cfg["neck"] == "vitdet":     # the checkpoint's relative position tables, where it has them; else zero
        from maebench.tasks.coco.vitdet import load_rel_pos
        n_tables = load_rel_pos(model.backbone.vit, registry.rel_pos_tables(spec.backbone))
        if n_tables and distributed.is_main():
            print(f"coco: {n_tables} relative position tables from {spec.backbone}'s checkpoint")
    groups = param_groups(model, cfg, num_layers=len(vit.blocks))
    log = print if distributed.is_main() else (lambda *_: None)
    log(f"coco: {spec.backbone} ({entry.arch}, {describe_patch(entry.patch_size, patch)}) + {cfg['neck']} + Mask R-CNN, "
        f"{images}, {train_set.num_classes} classes, "
        f"canvas {canvas_size(cfg)} px; skipped for training: {train_set.skipped}")
    log(optim.describe_groups(groups, engine.TrainConfig.from_cfg(cfg).peak_lr()))
    recipe = Recipe(task=TASK, backbone=spec.backbone, dataset=dataset, config=cfg, device=device,
                    backbone_info=runs.backbone_info(entry), checkpoint_sha256=entry.sha256, desc="coco", log=log,
                    model=model, train_set=train_set, loss_fn=loss_fn, param_groups=groups, collate_fn=collate)

    def setup(run) -> None:          # the evaluator writes its detections into the run directory
        recipe.evaluate = make_evaluator(val_set, out_dir=run.out_dir, device=device,
                                         batch_size=cfg["eval_batch_size"], num_workers=cfg["num_workers"], log=log)

    def report(metrics: dict, run) -> None:
        log(f"coco {spec.backbone}: {summary(metrics)}")
        log(f"detections: {run.out_dir / RESULTS_FILE}  (run {run.run_id})")

    recipe.setup, recipe.report = setup, report
    yield recipe
