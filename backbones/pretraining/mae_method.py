"""`maebench pretrain --method mae`: MAE pretraining of a ViT, registered as a backbone.

Model in backbones/mae.py, recipe in maebench/protocols/pretrain_mae.yaml (the paper's Table 8).
The runner trains its recipe through `maebench.engine.fit` (AdamW with per-iteration warm-up + cosine,
accumulation, bf16 autocast on CUDA / fp32 on CPU, DDP under torchrun, checkpoints every
`checkpoint_every` epochs in the official layout {"model", "optimizer", "epoch", ...}, exact
`--resume`, NaN stop); the run stores a `pretrain-mae` row with metric `loss` (final-epoch mean
of the masked-patch loss).

Outputs, in the run directory ($MAEBENCH_HOME/runs/<run id>/ or --out):
    checkpoint.pth   the training checkpoint (engine.fit), for --resume
    final.pth        {"model": full MAE state dict (official keys, encoder + decoder),
                      "maebench": {"arch", "patch_size", "img_size", "family", "target", ...}}
and final.pth is registered as backbone NAME (--name; default mae-<target>-<arch>-<dataset>, with
target token-<tokenizer kind> for --target token and token-selftrained-dvae for --target dvae),
family mae-pixel / mae-norm-pixel / mae-token by target, so `maebench run ... --backbone NAME`
and `maebench visualize --backbone NAME` find it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from maebench.errors import MaebenchError, UsageError
from maebench.runspec import RunSpec

PROTOCOL = "pretrain_mae"


# --------------------------------------------------------------------------------------------
# configuration and validation (shared with backbones/pretraining/dvae_method.py)
# --------------------------------------------------------------------------------------------
def load_config(spec: RunSpec, flags: dict[str, Any] | None = None) -> dict[str, Any]:
    """Protocol defaults <- by_arch <- --config <- named flags <- --set, for the run's arch.

    The architecture picks the `by_arch` table and may itself come from --config or --set, so
    when the merged arch differs from the one first assumed, merge again with it."""
    from maebench.backbones.catalogue import arch_dims      # torch-free: errors come before torch loads
    from maebench import config

    flags = {name: spec.option(name) for name in ("arch", "img_size", "patch_size")} | (flags or {})
    arch = spec.option("arch") or config.protocol_defaults(spec.program.protocol)["arch"]
    for _ in range(2):
        cfg = spec.load_config(arch=arch, flags=flags)
        if cfg["arch"] == arch:
            break
        arch = cfg["arch"]
    arch_dims(cfg["arch"])                    # unknown architecture -> UsageError with suggestions
    if cfg["img_size"] % cfg["patch_size"]:
        raise UsageError(f"img_size {cfg['img_size']} is not a multiple of patch_size {cfg['patch_size']}")
    if cfg["batch_size"] % cfg["accum_iter"]:
        raise UsageError(f"batch_size {cfg['batch_size']} is not divisible by accum_iter {cfg['accum_iter']}")
    return cfg


def resolve_data(data: str | None) -> tuple[Path, str]:
    """(ImageFolder root, short dataset name for the results row); default: the shapes set."""
    from maebench.data import dataset_name, default_dataset

    if data:
        root = Path(data).expanduser()
        if not (root / "train").is_dir():
            raise MaebenchError(f"--data {root}: no train/ split (expected DIR/train/<class>/<image>)")
        return root, dataset_name(root)
    return default_dataset("classification"), dataset_name(None)


def check_mae_config(cfg: dict) -> None:
    from maebench.backbones.mae_names import check_masking, check_target

    check_target(cfg["target"])
    check_masking(cfg["masking"], cfg["mask_ratio"])
    from maebench.data.transforms import PRETRAIN_AUGMENTATIONS
    if cfg["augmentation"] not in PRETRAIN_AUGMENTATIONS:
        raise UsageError(f"config key 'augmentation' must be one of {', '.join(PRETRAIN_AUGMENTATIONS)}, "
                         f"got {cfg['augmentation']!r}")
    for key in ("decoder_embed_dim", "decoder_depth", "decoder_num_heads"):
        if not isinstance(cfg[key], int) or cfg[key] < 1:
            raise UsageError(f"config key '{key}' must be a positive whole number, got {cfg[key]!r}")
    if cfg["decoder_embed_dim"] % cfg["decoder_num_heads"]:
        raise UsageError(f"decoder_embed_dim {cfg['decoder_embed_dim']} is not divisible by "
                         f"decoder_num_heads {cfg['decoder_num_heads']}")
    if cfg["target"] == "dvae" and not cfg["tokenizer"]:
        raise UsageError("--target dvae needs a frozen tokenizer: pass --tokenizer NAME|FILE "
                         "(train one with `maebench pretrain --method dvae --name NAME`)")
    if cfg["target"] == "token" and not cfg["tokenizer"]:
        raise UsageError("--target token needs --tokenizer FILE (DALL-E's encoder.pkl or its state dict, "
                         "a BEiT v2 VQ-KD state dict, or a `maebench pretrain --method dvae` NAME)")
    if cfg["target"] not in ("dvae", "token") and cfg["tokenizer"]:
        raise UsageError(f"--tokenizer is only used by --target token or dvae (target is '{cfg['target']}')")


# --------------------------------------------------------------------------------------------
# the recipe
# --------------------------------------------------------------------------------------------
def recipes(spec: RunSpec):
    from maebench.backbones.mae_names import FAMILY

    # 1. validate everything before a results row exists (option typos before torch loads) ---
    cfg = load_config(spec, {k: spec.option(k) for k in ("target", "mask_ratio", "masking", "tokenizer")})
    trust = bool(spec.option("trust_tokenizer"))
    if trust and cfg["target"] != "token":
        raise UsageError("--trust-tokenizer is only used by --target token")
    check_mae_config(cfg)

    import torch

    from maebench.backbones import registry
    from maebench.backbones.dvae import load_tokenizer
    from maebench.backbones.mae import create_mae
    from maebench import distributed, flops, optim
    from maebench.data.imagefolder import ImageFolder
    from maebench.data.transforms import pretrain_augmentation
    from maebench.runner import Recipe

    tokenizer = None
    if cfg["target"] == "token":     # any kind backbones/tokenizers.py reads; recorded in the row
        from maebench.backbones import tokenizers
        tokenizer, tok_meta = tokenizers.load(cfg["tokenizer"], mean=cfg["mean"], std=cfg["std"], trust=trust)
        cfg["tokenizer_kind"] = tok_meta["kind"]
    if cfg["target"] == "dvae" or (tokenizer is not None and tok_meta["kind"] == "maebench-dvae"):
        tokenizer, tok_meta = load_tokenizer(cfg["tokenizer"])
        cfg["tokenizer_kind"] = "maebench-dvae"     # the self-trained, CPU-scale stand-in
        if list(tok_meta.get("mean", [])) != list(cfg["mean"]) or list(tok_meta.get("std", [])) != list(cfg["std"]):
            raise MaebenchError(f"tokenizer {tok_meta['path']} was trained on images normalised with mean "
                                f"{tok_meta.get('mean')} / std {tok_meta.get('std')}, this run uses "
                                f"{cfg['mean']} / {cfg['std']}: the tokens would not match")
    data_dir, dataset = resolve_data(spec.data)
    family = FAMILY[cfg["target"]]
    # the tokenizer's kind is in a token target's default name, so that the leaderboard, which
    # labels rows by backbone name, shows a self-trained (CPU-scale) dVAE as such
    target_tag = {"token": f"token-{cfg['tokenizer_kind']}", "dvae": "token-selftrained-dvae"}.get(cfg["target"], cfg["target"])
    name = registry.check_name(spec.backbone or f"mae-{target_tag}-{cfg['arch']}-{dataset}".lower(),
                               arch=cfg["arch"], patch_size=cfg["patch_size"], family=FAMILY[cfg["target"]])
    device = distributed.init(spec.device, deterministic=spec.deterministic)
    train_set = ImageFolder(data_dir, "train", transform=pretrain_augmentation(
        cfg["augmentation"], cfg["img_size"], cfg["mean"], cfg["std"], scale=cfg["crop_scale"]))

    # 2. model and loss ---------------------------------------------------------------------------
    torch.manual_seed(spec.seed)
    model = create_mae(cfg["arch"], img_size=cfg["img_size"], patch_size=cfg["patch_size"],
                       decoder_embed_dim=cfg["decoder_embed_dim"], decoder_depth=cfg["decoder_depth"],
                       decoder_num_heads=cfg["decoder_num_heads"], mlp_ratio=cfg["mlp_ratio"],
                       target=cfg["target"], masking=cfg["masking"],
                       mask_tokens_in_encoder=cfg["mask_tokens_in_encoder"],
                       vocab_size=tokenizer.vocab_size if tokenizer is not None else None,
                       pca_components=cfg["pca_components"] if cfg["target"] == "pca" else None)
    if tokenizer is not None:
        model.attach_tokenizer(tokenizer)
    if cfg["target"] == "pca":
        model.attach_pca(*_pca_basis(model, data_dir, cfg, spec.seed))
    mask_ratio = cfg["mask_ratio"]
    with torch.no_grad():   # one image's forward (masking included); fit multiplies by 3 for fwd+bwd
        flops_per_image = flops.count_flops(
            lambda: model(torch.zeros(1, 3, cfg["img_size"], cfg["img_size"]), mask_ratio=mask_ratio))

    def loss_fn(m, batch, dev):
        imgs, _ = batch                       # labels unused: self-supervised
        loss, _, _ = m(imgs.to(dev, non_blocking=True), mask_ratio=mask_ratio)
        return loss, {}

    # 3. after training: store the full MAE and register its encoder -----------------------------
    def finish(result, run) -> dict:
        losses = [h["loss"] for h in result.history]
        if distributed.is_main():
            # encoder_mask_token (ablation only) is no part of the official layout: the
            # registered backbone is the encoder every downstream task uses, which never sees [M]
            state = {k: v.detach().cpu() for k, v in result.model.state_dict().items()
                     if k != "encoder_mask_token"}
            meta = {"arch": cfg["arch"], "patch_size": cfg["patch_size"], "img_size": cfg["img_size"],
                    "in_chans": 3, "family": family, "method": "mae", "target": cfg["target"],
                    "mask_ratio": mask_ratio, "masking": cfg["masking"],
                    "mask_tokens_in_encoder": cfg["mask_tokens_in_encoder"],
                    "decoder_embed_dim": cfg["decoder_embed_dim"], "decoder_depth": cfg["decoder_depth"],
                    "decoder_num_heads": cfg["decoder_num_heads"], "mlp_ratio": cfg["mlp_ratio"],
                    "vocab_size": model.vocab_size, "tokenizer": tok_meta["path"] if tokenizer else None,
                    "pca_components": model.pca_components,
                    "tokenizer_kind": cfg["tokenizer_kind"],
                    "mean": list(cfg["mean"]), "std": list(cfg["std"]), "dataset": dataset,
                    "epochs": cfg["epochs"], "run_id": run.run_id, "loss_history": losses}
            save_final(run.out_dir / "final.pth", {"model": state, "maebench": meta}, name, family, cfg, run.run_id)
        distributed.barrier()
        curves["loss"] = losses
        curves["images_per_s"] = result.images_per_s
        # the pretraining's cost per image (forward and backward: 3x the forward), a study's cost column
        return {"loss": losses[-1], "train_gflops_per_image": round(3 * flops_per_image / 1e9, 6)}

    curves: dict = {}

    def report(metrics: dict, run) -> None:
        curve = " ".join(f"{x:.4f}" for x in curves["loss"])
        print(f"pretrain mae: {cfg['arch']} / {cfg['target']} / mask {mask_ratio} {cfg['masking']} on {dataset}: "
              f"loss per epoch {curve}; {curves['images_per_s']:.1f} images/s")
        print(f"registered backbone '{name}' (family {family}) from {run.out_dir / 'final.pth'}")

    yield Recipe(task="pretrain-mae", backbone=name, dataset=dataset, config=cfg, device=device,
                 backbone_info={"family": family, "arch": cfg["arch"]}, desc="pretrain mae",
                 model=model, train_set=train_set, loss_fn=loss_fn,
                 param_groups=optim.param_groups(model, weight_decay=cfg["weight_decay"]),
                 flops_per_image=flops_per_image,
                 # the ablation's encoder replaces the decoder's mask token: DDP must expect it unused
                 find_unused_parameters=cfg["mask_tokens_in_encoder"], metrics=finish, report=report)


PCA_IMAGES = 2048          # training images whose patches give the PCA target's basis


def _pca_basis(model, data_dir, cfg: dict, seed: int):
    """The PCA target's basis from the patches of PCA_IMAGES training images (a seeded draw),
    resized and normalised as the model sees them, without augmentation."""
    import torch
    from maebench.backbones.mae import pca_basis
    from maebench.data.imagefolder import ImageFolder
    from maebench.data.transforms import classification_eval
    images = ImageFolder(data_dir, "train", transform=classification_eval(cfg["img_size"], cfg["mean"], cfg["std"]))
    pick = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:PCA_IMAGES]
    return pca_basis(model, torch.stack([images[int(i)][0] for i in pick]))


def save_final(path: Path, payload: dict, name: str, family: str, cfg: dict, run_id: str) -> None:
    """final.pth in the run directory, registered as backbone `name` (rank 0)."""
    from maebench.backbones import registry
    from maebench.torch_io import save_atomic
    save_atomic(payload, path)
    registry.register(name, path, fmt="maebench", force=True, family=family, arch=cfg["arch"],
                      patch_size=cfg["patch_size"], img_size=cfg["img_size"], mean=cfg["mean"], std=cfg["std"],
                      source=f"maebench pretrain --method mae (run {run_id})")
