"""`maebench pretrain --method supervised`: a ViT trained from scratch with labels (DeiT recipe).

This is the "supervised" baseline of the MAE paper's transfer tables: the same ViT, trained on
labelled images instead of by reconstruction. Recipe in maebench/protocols/pretrain_supervised.yaml:
AdamW with warm-up + cosine, RandAugment(9, 0.5) and random erasing in the input pipeline,
mixup 0.8 / cutmix 1.0 with label smoothing 0.1 folded into soft targets, drop path 0.1.

The runner trains the recipe through `maebench.engine.fit`, evaluates top-1 on the `val` split, stores a
`pretrain-supervised` row (metrics `loss` = final-epoch mean training loss, `top1` in percent),
and registers the encoder (classifier dropped) as a backbone of family `supervised`.

Configuration and data resolution are those of MAE pretraining (backbones/pretraining/mae_method.py); the
helpers at the bottom (`backbone_name`, `register_encoder`) are shared with the
other baseline entry point, backbones/pretraining/mocov3_method.py.
"""
from __future__ import annotations

from pathlib import Path

from maebench.backbones.pretraining.mae_method import load_config, resolve_data
from maebench.errors import MaebenchError, UsageError
from maebench.runspec import RunSpec

METHOD = "supervised"
PROTOCOL = "pretrain_supervised"
FAMILY = "supervised"


def recipes(spec: RunSpec):
    import torch

    from maebench.backbones.vit import create_vit
    from maebench.classification import classification_loss, uses_mixup
    from maebench.classification import evaluate as top_k
    from maebench.microbatch import micro_batch
    from maebench import distributed, flops, optim
    from maebench.data.imagefolder import ImageFolder
    from maebench.runner import Recipe

    # 1. validate everything before a results row exists ------------------------------------
    cfg = load_config(spec)
    data_dir, dataset = resolve_data(spec.data)
    device = distributed.init(spec.device, deterministic=spec.deterministic)
    micro = micro_batch(cfg["batch_size"], distributed.world_size(), cfg["accum_iter"])
    mixing = uses_mixup(cfg)
    if mixing and micro % 2:
        raise UsageError(f"mixup/cutmix pair images within a batch: the per-process batch ({micro}) must be "
                         "even; change batch_size or set aug.mixup=0 aug.cutmix=0")
    train_set = ImageFolder(data_dir, "train", transform=train_transform(cfg))
    val_set = ImageFolder(data_dir, "val", transform=eval_transform(cfg))
    num_classes = len(train_set.classes)
    if len(val_set) == 0:
        raise MaebenchError(f"{data_dir}/val holds no images: the supervised run reports top-1 on it")
    name = backbone_name(spec.backbone, METHOD, cfg, dataset, FAMILY)

    # 2. model, loss ---------------------------------------------------------------------------
    torch.manual_seed(spec.seed)
    model = create_vit(cfg["arch"], img_size=cfg["img_size"], patch_size=cfg["patch_size"],
                       num_classes=num_classes, global_pool="token", drop_path_rate=cfg["drop_path"])
    flops_per_image = flops.count_flops(lambda: model(torch.zeros(1, 3, cfg["img_size"], cfg["img_size"])))
    loss_fn = classification_loss(cfg, num_classes)

    def evaluate(m) -> dict[str, float]:
        """Top-1 (percent) on val; every image counted once across processes."""
        return top_k(m, val_set, batch_size=max(micro, 64), device=device, num_workers=cfg["num_workers"],
                     amp=cfg["amp"])

    # 3. after training: register the encoder ---------------------------------------------------
    def finish(result, run) -> dict:
        encoder = {k: v for k, v in result.model.state_dict().items() if not k.startswith("head.")}
        register_encoder(name, encoder, cfg, out_dir=run.out_dir, family=FAMILY, method=METHOD,
                         run_id=run.run_id, dataset=dataset, history=result.history)
        return {"loss": result.history[-1]["loss"], "top1": result.metrics["top1"]}

    def report(metrics: dict, run) -> None:
        print(f"pretrain {METHOD}: loss {metrics['loss']:.4f}, top-1 {metrics['top1']:.2f}% on {dataset} val; "
              f"registered backbone '{name}' (family {FAMILY})")

    yield Recipe(task=f"pretrain-{METHOD}", backbone=name, dataset=dataset, config=cfg, device=device,
                 backbone_info={"family": FAMILY, "arch": cfg["arch"]}, desc=f"pretrain {METHOD}",
                 model=model, train_set=train_set, loss_fn=loss_fn, evaluate=evaluate,
                 param_groups=optim.param_groups(model, weight_decay=cfg["weight_decay"]),
                 flops_per_image=flops_per_image, metrics=finish, report=report)


# --------------------------------------------------------------------------------------------
# Recipe pieces
# --------------------------------------------------------------------------------------------
def train_transform(cfg: dict):
    """The classification recipe's training transform (maebench/classification.py) with this
    protocol's keys: DeiT's random-resized crop, flip, RandAugment, random erasing."""
    from maebench.data.transforms import IMAGENET_MEAN, IMAGENET_STD
    from maebench.classification import train_transform as recipe_transform
    aug = cfg["aug"]
    return recipe_transform(cfg["img_size"], IMAGENET_MEAN, IMAGENET_STD, scale=(aug["crop_min"], 1.0),
                            color_jitter=aug["color_jitter"] or None, rand_augment=aug["rand_augment"], reprob=aug["reprob"])


def eval_transform(cfg: dict):
    from maebench.data.transforms import classification_eval
    return classification_eval(cfg["img_size"], crop_pct=cfg["aug"]["eval_crop_pct"])


# --------------------------------------------------------------------------------------------
# Shared by the baseline entry points (supervised, mocov3)
# --------------------------------------------------------------------------------------------
def backbone_name(given: str | None, method: str, cfg: dict, dataset: str, family: str) -> str:
    """--name, or `<method>-<arch>-<dataset>`, checked as the registry will check it."""
    from maebench.backbones.registry import check_name
    return check_name(given or f"{method}-{cfg['arch']}-{dataset}".lower(), arch=cfg["arch"],
                      patch_size=cfg["patch_size"], family=family)


def register_encoder(name: str, encoder: dict, cfg: dict, *, out_dir: Path, family: str, method: str,
                     run_id: str, dataset: str, history: list[dict]) -> None:
    """Write encoder.pth in the maebench format into the run directory and register it as
    backbone `name` (rank 0; the others wait, so that every process returns after it exists)."""
    from maebench.backbones import registry
    from maebench import distributed
    from maebench.torch_io import save_atomic
    from maebench.data.transforms import IMAGENET_MEAN, IMAGENET_STD

    if distributed.is_main():
        path = Path(out_dir) / "encoder.pth"
        meta = {"arch": cfg["arch"], "patch_size": cfg["patch_size"], "img_size": cfg["img_size"],
                "in_chans": 3, "family": family, "method": method,
                "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD), "dataset": dataset,
                "epochs": cfg["epochs"], "run_id": run_id, "loss_history": [h["loss"] for h in history]}
        save_atomic({"model": {k: v.detach().cpu() for k, v in encoder.items()}, "maebench": meta}, path)
        registry.register(name, path, fmt="maebench", force=True, family=family, arch=cfg["arch"],
                          patch_size=cfg["patch_size"], img_size=cfg["img_size"],
                          mean=IMAGENET_MEAN, std=IMAGENET_STD,
                          source=f"maebench pretrain --method {method} (run {run_id})")
    distributed.barrier()
