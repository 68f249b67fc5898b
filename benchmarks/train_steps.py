"""The four training workloads of the report, each built the way its maebench task builds it.

    MAE pretraining   backbones.mae.create_mae + the pretrain_mae protocol (norm-pixel, mask 0.75,
                      512-d x 8 decoder, AdamW betas 0.9/0.95), pretraining transform (RRC + flip)
    fine-tuning       tasks.finetune.build_classifier + classification.classification_loss (mixup / cutmix, label
                      smoothing), layer-decay groups, finetune transform (RandAug, erasing)
    COCO Mask R-CNN   tasks.coco.model.build_mask_rcnn on the vit-fpn neck, LSJ transform,
                      tasks.coco.loss_fn (the five Mask R-CNN losses)
    ADE20K UperNet    tasks.ade20k.build_model (zero-init relative position bias, UperNet +
                      auxiliary FCN), tasks.ade20k.open_data's transforms, segmentation_loss

Every backbone is the random-init `scratch-*` entry of the chosen architecture (speed does not
depend on the weights). The COCO and ADE20K heads take the protocols' CPU-scale sizes
(`by_arch: vit-micro`: FPN 64 channels, 256-d box head, 64-d mask head; UperNet 64 channels),
at the image size given here. One batch is read through the task's own dataset and transforms
once and reused, so the timed step is model + loss + backward + fused AdamW, like one engine.fit
iteration without data loading (measured separately in data_loading.py).

`Workload.compute()` is forward + backward, `Workload.optimizer_step()` the optimizer step and
zero_grad; `eval_forward()` an eval-mode, no-grad forward of an eval batch; `evaluate(n)` the
task's own evaluation function over the first n val images (reader, transforms, forward,
metric bookkeeping; 0 workers).
"""
from __future__ import annotations

import argparse
import contextlib
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# architecture -> the random-init catalogue entry of that architecture
SCRATCH = {"vit-micro": "scratch-vit-micro", "vit-tiny": "scratch-vit-t", "vit-small": "scratch-vit-s",
           "vit-base": "scratch-vit-b"}


@dataclass
class Workload:
    name: str
    setting: str                        # what was built, in words, for the report
    batch_size: int
    model: object
    compute: Callable[[], None]         # forward + backward of the training batch
    optimizer_step: Callable[[], None]  # optimizer.step() + zero_grad
    eval_batch_size: int = 0
    eval_forward: Callable[[], object] | None = None
    evaluate: Callable[[int], int] | None = None     # n val images -> images evaluated
    extra: dict = field(default_factory=dict)


def _autocast(device, amp: bool):
    """Autocast exactly as engine.fit does it (maebench.amp)."""
    from maebench.amp import autocast
    return autocast(device, amp)


def first_batch(dataset, batch_size: int, collate_fn=None, seed: int = 0):
    """One shuffled batch read through the dataset's own transforms (seeded)."""
    import torch
    from torch.utils.data import DataLoader
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    return next(iter(DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=g,
                                collate_fn=collate_fn, num_workers=0)))


def _to(batch, device):
    import torch
    if torch.is_tensor(batch):
        return batch.to(device)
    if isinstance(batch, dict):
        return {k: _to(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to(v, device) for v in batch)
    return batch


def _train_fns(model, optimizer, loss_fn, batch, device, amp):
    def compute():
        with _autocast(device, amp):
            loss, _ = loss_fn(model, batch, device)
        loss.backward()

    def optimizer_step():
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return compute, optimizer_step


# ---- MAE pretraining ---------------------------------------------------------------------------
def mae(arch: str, img_size: int, batch_size: int, device, amp: bool = False) -> Workload:
    import torch

    from maebench.backbones.mae import create_mae
    from maebench import config, engine, optim
    from maebench.data import default_dataset
    from maebench.data.imagefolder import ImageFolder
    from maebench.data.transforms import classification_train

    cfg = config.load("pretrain_mae", arch=arch, flags={"img_size": img_size, "batch_size": batch_size})
    patch = cfg["patch_size"]
    torch.manual_seed(0)
    model = create_mae(arch, img_size=img_size, patch_size=patch, decoder_embed_dim=cfg["decoder_embed_dim"],
                       decoder_depth=cfg["decoder_depth"], decoder_num_heads=cfg["decoder_num_heads"],
                       mlp_ratio=cfg["mlp_ratio"], target=cfg["target"], masking=cfg["masking"]).to(device)
    train_set = ImageFolder(default_dataset("classification"), "train", transform=classification_train(
        img_size, cfg["mean"], cfg["std"], scale=cfg["crop_scale"]))
    batch = _to(first_batch(train_set, batch_size), device)
    opt = engine.build_optimizer(optim.param_groups(model, weight_decay=cfg["weight_decay"]),
                                 engine.TrainConfig.from_cfg(cfg))
    ratio = cfg["mask_ratio"]

    def loss_fn(m, b, dev):                       # as backbones/pretraining/mae_method.py
        loss, _, _ = m(b[0].to(dev, non_blocking=True), mask_ratio=ratio)
        return loss, {}

    compute, step = _train_fns(model, opt, loss_fn, batch, device, amp)
    grid = model.patch_embed.grid_size
    setting = (f"{arch}/{patch} MAE at {img_size} px ({grid[0]}x{grid[1]} patches, mask {ratio}), decoder "
               f"{cfg['decoder_embed_dim']}-d x {cfg['decoder_depth']}, {cfg['target']}, batch {batch_size}")
    return Workload("MAE pretraining", setting, batch_size, model, compute, step,
                    extra={"mask_ratio": ratio, "images": batch[0], "optimizer": opt})


# ---- end-to-end fine-tuning ----------------------------------------------------------------------
def finetune(arch: str, img_size: int, batch_size: int, device, amp: bool = False,
             eval_batch_size: int = 32) -> Workload:
    import torch
    from torch.utils.data import Subset

    from maebench.backbones import registry
    from maebench import config, engine
    from maebench.tasks.classification_data import eval_transform, finetune_train_transform, open_data
    from maebench.classification import classification_loss, evaluate
    from maebench.tasks.finetune import build_classifier, layer_decay_groups

    name = SCRATCH[arch]
    entry = registry.entry(name)
    cfg = config.load("finetune", arch=arch, flags={"img_size": img_size, "batch_size": batch_size})
    data = open_data(None)
    model = build_classifier(name, cfg, data.num_classes, seed=0).to(device)
    train_set = data.train_set(finetune_train_transform(cfg, entry.mean, entry.std))
    val_set = data.val_set(eval_transform(cfg, entry.mean, entry.std))
    batch = first_batch(train_set, batch_size)
    loss_fn = classification_loss(cfg, data.num_classes)
    opt = engine.build_optimizer(layer_decay_groups(model, cfg), engine.TrainConfig.from_cfg(cfg))
    compute, step = _train_fns(model, opt, loss_fn, batch, device, amp)
    x_val = first_batch(val_set, eval_batch_size)[0].to(device)

    @torch.no_grad()
    def eval_forward():
        model.eval()
        with _autocast(device, amp):
            out = model(x_val)
        model.train()
        return out

    def run_eval(n: int) -> int:
        subset = Subset(val_set, range(min(n, len(val_set))))
        evaluate(model, subset, batch_size=eval_batch_size, device=device, num_workers=0)
        return len(subset)

    setting = (f"{arch}/{entry.patch_size} classifier at {img_size} px, {data.num_classes} classes, "
               f"drop path {cfg['drop_path']}, mixup {cfg['aug']['mixup']} / cutmix {cfg['aug']['cutmix']}, "
               f"layer decay {cfg['layer_decay']}, batch {batch_size}")
    return Workload("fine-tuning", setting, batch_size, model, compute, step, eval_batch_size,
                    eval_forward, run_eval)


# ---- COCO Mask R-CNN ------------------------------------------------------------------------------
def coco(arch: str, img_size: int, batch_size: int, device, amp: bool = False,
         eval_batch_size: int = 4) -> Workload:
    import torch

    from maebench.backbones import registry
    from maebench import config, engine, optim
    from maebench.data import default_dataset
    from maebench.data.coco import CocoInstances
    from maebench.data.layout import resolve_coco
    from maebench.tasks.coco import check_config, loss_fn
    from maebench.tasks.coco.data import collate, eval_transform, train_transform
    from maebench.tasks.coco.evaluate import predict, score
    from maebench.tasks.coco.model import build_mask_rcnn, canvas_size

    name = SCRATCH[arch]
    entry = registry.entry(name)
    # the protocol's CPU-scale recipe (heads, anchors, RPN/RoI sampling), at this image size
    cfg = check_config(config.load("coco", arch="vit-micro", flags={"batch_size": batch_size},
                                   sets=[f"img_size={img_size}"]))
    paths = resolve_coco(default_dataset("coco"))
    train_set = CocoInstances(paths["train_images"], paths["train_json"], train=True,
                              transforms=train_transform(cfg, entry.mean))
    val_set = CocoInstances(paths["val_images"], paths["val_json"], train=False, transforms=eval_transform)
    torch.manual_seed(0)
    vit, _ = registry.load(name, img_size=canvas_size(cfg), drop_path_rate=cfg["drop_path"])
    model = build_mask_rcnn(vit, num_classes=train_set.num_classes, mean=entry.mean, std=entry.std, cfg=cfg).to(device)
    groups = optim.param_groups(model, weight_decay=cfg["weight_decay"], layer_decay=cfg["layer_decay"],
                                num_layers=len(vit.blocks), vit_prefix="backbone.vit.")
    opt = engine.build_optimizer(groups, engine.TrainConfig.from_cfg(cfg))
    batch = first_batch(train_set, batch_size, collate_fn=collate)
    compute, step = _train_fns(model, opt, loss_fn, batch, device, amp)
    val_images = [im.to(device) for im in first_batch(val_set, eval_batch_size, collate_fn=collate)[0]]

    @torch.no_grad()
    def eval_forward():
        model.eval()
        with _autocast(device, amp):
            out = model(val_images)
        model.train()
        return out

    def run_eval(n: int) -> int:
        ids = list(range(min(n, len(val_set))))
        results, _ = predict(model, val_set, device, batch_size=eval_batch_size, indices=ids)
        score(val_set.coco, results, trusted=True)      # COCOeval over all val ids (few seen: AP low)
        return len(ids)

    m = cfg["model"]
    setting = (f"{arch}/{entry.patch_size} + {cfg['neck']} neck + Mask R-CNN, LSJ {img_size} px canvas, "
               f"FPN {m['fpn_channels']} ch, box head {m['representation_size']}, mask head {m['mask_head_dim']}, "
               f"{m['rpn_batch_size_per_image']} RPN / {m['box_batch_size_per_image']} RoI samples per image, "
               f"batch {batch_size}")
    return Workload("COCO Mask R-CNN", setting, batch_size, model, compute, step, eval_batch_size,
                    eval_forward, run_eval)


# ---- ADE20K UperNet -------------------------------------------------------------------------------
def ade20k(arch: str, img_size: int, batch_size: int, device, amp: bool = False) -> Workload:
    import torch
    from torch.utils.data import Subset

    from maebench import config, engine, optim
    from maebench.data import default_dataset
    from maebench.tasks.ade20k import build_model, check_config, open_data, task_flags
    from maebench.tasks.ade20k.evaluate import evaluate
    from maebench.tasks.ade20k.model import segmentation_loss

    name = SCRATCH[arch]
    root = default_dataset("ade20k")
    args = argparse.Namespace(epochs=None, batch_size=batch_size, num_classes=None, ignore_index=None,
                              reduce_zero_label=None, deterministic=False)
    from maebench.backbones import registry
    patch = registry.entry(name).patch_size
    # the protocol's CPU-scale recipe (UperNet 64 channels, whole-image eval), at this crop size
    cfg = check_config(config.load("ade20k", arch="vit-micro", flags=task_flags(args, root),
                                   sets=[f"img_size={img_size}", f"crop_size={img_size}",
                                         f"stride={img_size // 2}"]), patch)
    torch.manual_seed(0)
    model, entry = build_model(name, cfg, device)
    model.to(device)
    train_set, val_set = open_data(root, cfg, entry)
    groups = optim.param_groups(model, weight_decay=cfg["weight_decay"], layer_decay=cfg["layer_decay"],
                                num_layers=len(model.backbone.vit.blocks), vit_prefix="backbone.vit.")
    opt = engine.build_optimizer(groups, engine.TrainConfig.from_cfg(cfg))
    batch = first_batch(train_set, batch_size)

    def loss_fn(m, b, dev):                       # as tasks/ade20k/__init__.py
        images, labels = b
        logits, aux = m(images.to(dev, non_blocking=True))
        return segmentation_loss(logits, aux, labels.to(dev, non_blocking=True),
                                 ignore_index=cfg["ignore_index"], aux_weight=cfg["aux_weight"])

    compute, step = _train_fns(model, opt, loss_fn, batch, device, amp)
    x_val = first_batch(val_set, 1)[0].to(device)           # one image, as evaluate() feeds them

    @torch.no_grad()
    def eval_forward():
        model.eval()
        with _autocast(device, amp):
            out = model.predict(x_val)
        model.train()
        return out

    def run_eval(n: int) -> int:
        subset = Subset(val_set, range(min(n, len(val_set))))
        evaluate(model, subset, num_classes=cfg["num_classes"], ignore_index=cfg["ignore_index"], device=device,
                 mode=cfg["eval_mode"], crop=cfg["crop_size"], stride=cfg["stride"], num_workers=0, amp=amp)
        return len(subset)

    setting = (f"{arch}/{patch} + UperNet ({cfg['channels']} ch) + aux FCN ({cfg['aux_channels']} ch), "
               f"relative position bias, crop {cfg['crop_size']} px, {cfg['num_classes']} classes, "
               f"batch {batch_size}; eval {cfg['eval_mode']}, one image per forward")
    return Workload("ADE20K UperNet", setting, batch_size, model, compute, step, 1, eval_forward, run_eval)


BUILDERS = {"mae": mae, "finetune": finetune, "coco": coco, "ade20k": ade20k}
