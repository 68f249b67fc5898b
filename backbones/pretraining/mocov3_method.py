"""`maebench pretrain --method mocov3`: MoCo v3 self-supervised pretraining of a ViT.

The contrastive baseline of the MAE paper. Model and loss in backbones/mocov3.py, recipe in
maebench/protocols/pretrain_mocov3.yaml. The runner trains the recipe through `maebench.engine.fit` (the same
loop, checkpoints, --resume, DDP and progress line as MAE pretraining); the run stores a
`pretrain-mocov3` row (metric `loss`, the final-epoch mean of the symmetric InfoNCE) and
registers the base encoder (without its projection head) as a backbone of family `contrastive`.

Labels of the ImageFolder set are ignored. Under DDP the BatchNorm layers of the MLP heads are
synchronised (SyncBatchNorm, CUDA only) and the keys are gathered from every process, so the
contrastive batch is the global batch, as in the release.
"""
from __future__ import annotations

from maebench.backbones.pretraining.mae_method import load_config, resolve_data
from maebench.backbones.pretraining.supervised_method import backbone_name, register_encoder
from maebench.errors import MaebenchError
from maebench.runspec import RunSpec
from maebench.microbatch import micro_batch

METHOD = "mocov3"
PROTOCOL = "pretrain_mocov3"
FAMILY = "contrastive"


def recipes(spec: RunSpec):
    import torch
    import torch.nn as nn

    from maebench.backbones.mocov3 import MoCoV3
    from maebench import distributed, flops, optim
    from maebench.data.imagefolder import ImageFolder
    from maebench.runner import Recipe

    # 1. validate everything before a results row exists ------------------------------------
    cfg = load_config(spec)
    moco = cfg["moco"]
    if moco["temperature"] <= 0:
        raise MaebenchError(f"moco.temperature must be > 0, got {moco['temperature']}")
    if not 0 <= moco["momentum"] <= 1:
        raise MaebenchError(f"moco.momentum must lie in [0, 1], got {moco['momentum']}")
    data_dir, dataset = resolve_data(spec.data)
    device = distributed.init(spec.device, deterministic=spec.deterministic)
    micro = micro_batch(cfg["batch_size"], distributed.world_size(), cfg["accum_iter"])
    if micro < 2:
        raise MaebenchError(f"the per-process batch is {micro}: BatchNorm in the MoCo heads and the "
                                   "contrastive loss need at least 2 images per process")
    train_set = ImageFolder(data_dir, "train", transform=TwoCrops(cfg))
    name = backbone_name(spec.backbone, METHOD, cfg, dataset, FAMILY)

    # 2. model -------------------------------------------------------------------------------------
    torch.manual_seed(spec.seed)
    model = MoCoV3(cfg["arch"], img_size=cfg["img_size"], patch_size=cfg["patch_size"], dim=moco["dim"],
                   mlp_dim=moco["mlp_dim"], temperature=moco["temperature"], base_momentum=moco["momentum"],
                   stop_grad_patch_embed=moco["stop_grad_patch_embed"], drop_path_rate=moco["drop_path"])
    flops_per_image = _flops_per_image(model, cfg["img_size"], flops)
    if distributed.is_dist() and device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)

    def loss_fn(m, batch, dev):
        (x1, x2), _ = batch                  # two views [N, 3, H, W]; labels unused
        return m(x1.to(dev, non_blocking=True), x2.to(dev, non_blocking=True)), {}

    # 3. after training: register the base encoder ----------------------------------------------
    def finish(result, run) -> dict:
        register_encoder(name, result.model.encoder_state_dict(), cfg, out_dir=run.out_dir, family=FAMILY,
                         method=METHOD, run_id=run.run_id, dataset=dataset, history=result.history)
        return {"loss": result.history[-1]["loss"]}

    def report(metrics: dict, run) -> None:
        print(f"pretrain {METHOD}: loss {metrics['loss']:.4f} on {dataset}; "
              f"registered backbone '{name}' (family {FAMILY})")

    yield Recipe(task=f"pretrain-{METHOD}", backbone=name, dataset=dataset, config=cfg, device=device,
                 backbone_info={"family": FAMILY, "arch": cfg["arch"]}, desc=f"pretrain {METHOD}",
                 model=model, train_set=train_set, loss_fn=loss_fn, on_step=model.on_step,
                 param_groups=optim.param_groups(model, weight_decay=cfg["weight_decay"]),
                 flops_per_image=flops_per_image, metrics=finish, report=report)


def _flops_per_image(model, img_size: int, flops) -> float:
    """FLOPs per image such that engine.fit's 3 x (forward + backward) is right: both views go
    through the base encoder + predictor (forward and backward: x3) and the momentum encoder
    (forward only: x1, hence the / 3)."""
    import torch
    x = torch.zeros(2, 3, img_size, img_size)          # 2: BatchNorm needs more than one sample
    was = model.training
    model.eval()
    with torch.no_grad():
        f_query = flops.count_flops(lambda: model.predictor(model.base_encoder(x))) / 2
        f_key = flops.count_flops(lambda: model.momentum_encoder(x)) / 2
    model.train(was)
    return 2 * (f_query + f_key / 3)


class TwoCrops:
    """PIL image -> (view1, view2): BYOL's asymmetric augmentation pair, as MoCo v3 uses it.

    Both views: random-resized crop, colour jitter (p 0.8), grayscale (p 0.2), flip; view 1 is
    always blurred, view 2 rarely blurred but sometimes solarized. The blur radius is given in
    pixels of a 224 px image and scaled with the image size, so that at 32 px it blurs the same
    share of the object instead of wiping out a 4 px patch."""

    def __init__(self, cfg: dict):
        from torchvision import transforms as T
        from torchvision.transforms import InterpolationMode

        from maebench.data.transforms import IMAGENET_MEAN, IMAGENET_STD
        aug, size = cfg["aug"], cfg["img_size"]
        scale = size / 224.0
        sigma = (aug["blur_sigma"][0] * scale, aug["blur_sigma"][1] * scale)

        def view(i: int):
            steps = [T.RandomResizedCrop(size, scale=(aug["crop_min"], 1.0), interpolation=InterpolationMode.BICUBIC),
                     T.RandomApply([T.ColorJitter(*aug["color_jitter"])], p=aug["color_jitter_prob"]),
                     T.RandomGrayscale(p=aug["grayscale_prob"]),
                     T.RandomApply([PILGaussianBlur(sigma)], p=aug["blur_prob"][i])]
            if aug["solarize_prob"][i] > 0:
                steps.append(T.RandomSolarize(128, p=aug["solarize_prob"][i]))
            steps += [T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
            return T.Compose(steps)

        self.view1, self.view2 = view(0), view(1)

    def __call__(self, image):
        return self.view1(image), self.view2(image)


class PILGaussianBlur:
    """Gaussian blur with a radius drawn uniformly from `sigma` (torch RNG: seeded per worker)."""

    def __init__(self, sigma: tuple[float, float]):
        self.sigma = sigma

    def __call__(self, image):
        import torch
        from PIL import ImageFilter
        radius = float(torch.empty(()).uniform_(*self.sigma))
        return image.filter(ImageFilter.GaussianBlur(radius=radius)) if radius > 0 else image

    def __repr__(self) -> str:
        return f"PILGaussianBlur(sigma={self.sigma})"

