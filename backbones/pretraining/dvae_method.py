"""`maebench pretrain --method dvae`: train the discrete VAE tokenizer of the MAE "dvae" target.

Model in backbones/dvae.py, recipe in maebench/protocols/pretrain_dvae.yaml (DALL-E's dVAE at
the scale the config asks). The runner trains the recipe through `maebench.engine.fit` like
every other; the run stores a `pretrain-dvae` row (metric `loss`, plus `mse` and codebook
`perplexity` of the final epoch).

The tokenizer is not a ViT backbone, so it is not put in the backbone registry. It is written
to the run directory as final.pth ({"model": state dict, "maebench": {"kind": "dvae", ...}}) and
copied to $MAEBENCH_HOME/weights/tokenizers/NAME.pth, where
`maebench pretrain --method mae --target dvae --tokenizer NAME` finds it.
"""
from __future__ import annotations

from maebench.errors import UsageError
from maebench.runspec import RunSpec

PROTOCOL = "pretrain_dvae"


def recipes(spec: RunSpec):
    import torch

    from maebench.backbones.dvae import CONSTRUCTOR_KEYS, DiscreteVAE
    from maebench.backbones.pretraining.mae_method import load_config, resolve_data
    from maebench.backbones.registry import check_name
    from maebench import distributed, flops, optim
    from maebench.torch_io import save_atomic
    from maebench.data.imagefolder import ImageFolder
    from maebench.data.transforms import classification_train
    from maebench.home import weights_dir
    from maebench.runner import Recipe

    # 1. validate everything before a results row exists ----------------------------------------
    cfg = load_config(spec)
    if cfg["img_size"] % cfg["downsample"]:
        raise UsageError(f"img_size {cfg['img_size']} is not a multiple of the dVAE downsample {cfg['downsample']}")
    if not 0 <= cfg["anneal_fraction"] <= 1:
        raise UsageError(f"anneal_fraction must lie in [0, 1], got {cfg['anneal_fraction']}")
    if not 0 < cfg["tau_end"] <= cfg["tau_start"]:
        raise UsageError(f"need 0 < tau_end <= tau_start, got {cfg['tau_end']} and {cfg['tau_start']}")
    data_dir, dataset = resolve_data(spec.data)
    name = check_name(spec.backbone or f"dvae-{cfg['vocab_size']}-{cfg['arch']}-{dataset}".lower())
    device = distributed.init(spec.device, deterministic=spec.deterministic)
    train_set = ImageFolder(data_dir, "train", transform=classification_train(
        cfg["img_size"], cfg["mean"], cfg["std"], scale=cfg["crop_scale"]))

    # 2. model and loss ---------------------------------------------------------------------------
    torch.manual_seed(spec.seed)
    model_kwargs = {k: cfg[k] for k in CONSTRUCTOR_KEYS if k in cfg}
    model_kwargs.update(in_chans=3)
    model = DiscreteVAE(**model_kwargs)
    accum = cfg["accum_iter"]

    def on_step(step: int, total_steps: int) -> None:
        """The temperature anneals over `anneal_fraction` of the run's forward passes; the
        loop's step counts (restored on --resume) place the model on that schedule."""
        model.anneal_steps = round(cfg["anneal_fraction"] * total_steps * accum)
        model.step.fill_(step * accum)
    with torch.no_grad():   # no_grad: not a training pass, the anneal step stays 0
        flops_per_image = flops.count_flops(lambda: model(torch.zeros(1, 3, cfg["img_size"], cfg["img_size"])))

    def loss_fn(m, batch, dev):
        imgs, _ = batch
        loss, _, logs = m(imgs.to(dev, non_blocking=True))
        return loss, logs

    # 3. after training: store and publish the tokenizer -----------------------------------------
    published = weights_dir() / "tokenizers" / f"{name}.pth"

    def finish(result, run) -> dict:
        last = result.history[-1]
        if distributed.is_main():
            meta = {"kind": "dvae", **model_kwargs, "anneal_steps": model.anneal_steps, "img_size": cfg["img_size"],
                    "patch_size": cfg["patch_size"], "arch": cfg["arch"], "mean": list(cfg["mean"]),
                    "std": list(cfg["std"]), "dataset": dataset, "run_id": run.run_id}
            payload = {"model": {k: v.detach().cpu() for k, v in result.model.state_dict().items()}, "maebench": meta}
            save_atomic(payload, run.out_dir / "final.pth")
            save_atomic(payload, published)
        distributed.barrier()
        return {"loss": last["loss"], "mse": last["mse"], "perplexity": last["perplexity"]}

    def report(metrics: dict, run) -> None:
        print(f"pretrain dvae: {cfg['vocab_size']} codes on {dataset}: loss {metrics['loss']:.4f}, "
              f"codebook perplexity {metrics['perplexity']:.1f}; tokenizer '{name}' at {published}")

    yield Recipe(task="pretrain-dvae", backbone=name, dataset=dataset, config=cfg, device=device,
                 desc="pretrain dvae", model=model, train_set=train_set, loss_fn=loss_fn, on_step=on_step,
                 param_groups=optim.param_groups(model, weight_decay=cfg["weight_decay"]),
                 flops_per_image=flops_per_image, metrics=finish, report=report)
