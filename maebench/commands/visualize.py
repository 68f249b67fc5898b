"""`maebench visualize --backbone NAME --images DIR`: MAE reconstruction figures.

One PNG per image: original, masked input, reconstruction, and reconstruction with the visible
patches pasted back (the paper's Fig. 2-4). Needs a backbone registered with its MAE decoder
(a `maebench pretrain --method mae` result, or an official full checkpoint such as
mae-vit-l-full); an encoder-only backbone is refused with an error saying so.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from maebench.backbones.mae_names import FAMILY
from maebench.errors import MaebenchError, UsageError

TARGET_BY_FAMILY = {family: target for target, family in FAMILY.items()}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backbone", required=True, metavar="NAME", help="a registered MAE with its decoder")
    p.add_argument("--images", required=True, metavar="DIR", help="folder of images (searched recursively)")
    p.add_argument("--out", metavar="DIR", default="reconstructions",
                   help="where the PNGs go (default: ./reconstructions)")
    p.add_argument("--mask-ratio", type=float,
                   help="share of patches removed (default: the backbone's pretraining ratio, else 0.75)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random masks (default 0)")
    p.add_argument("--limit", type=int, metavar="N", help="only the first N images (sorted by path)")
    p.add_argument("--per-folder", type=int, metavar="N",
                   help="only the first N images of each folder (e.g. N per class of a val/ split)")
    p.add_argument("--grid", metavar="FILE.png", help="also write every image's panels into this one figure")
    p.add_argument("--tokenizer", metavar="NAME|FILE",
                   help="dVAE tokenizer of a token-target MAE (default: the one its run recorded)")
    p.add_argument("--decoder-heads", type=int, metavar="N",
                   help="decoder attention heads, when neither the checkpoint nor the default "
                        "(decoder width / 32, as every released MAE) is right")
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")


def main(args: argparse.Namespace) -> int:
    import torch

    from maebench.backbones import registry
    from maebench.backbones.reconstruction import PANELS, reconstruct, save_grid, to_numpy
    from maebench.backbones.mae import from_state_dict
    from maebench.backbones.catalogue import arch_dims
    from maebench.data.files import is_image_file, load_rgb, require_dir
    from maebench.data.transforms import classification_eval

    # 1. validate: backbone with a decoder, images, options ----------------------------------
    if args.mask_ratio is not None and not 0 <= args.mask_ratio < 1:
        raise UsageError(f"--mask-ratio must lie in [0, 1), got {args.mask_ratio}")
    e = registry.entry(args.backbone)
    if e.family not in TARGET_BY_FAMILY:
        raise MaebenchError(f"backbone '{e.name}' (family {e.family}) is not a masked autoencoder: "
                            "nothing to reconstruct with")
    state = registry.load_mae_state(args.backbone)      # refuses a backbone without a decoder
    if "decoder_embed.weight" not in state:
        raise MaebenchError(f"backbone '{e.name}' has no MAE decoder weights: reconstruction figures need "
                            "a full MAE checkpoint")
    meta = registry.load_meta(e.name)      # what a `maebench pretrain` run recorded: heads, target
    if meta.get("mask_tokens_in_encoder"):
        raise MaebenchError(f"backbone '{e.name}' was pretrained with mask tokens in the encoder (the Table 1c "
                            "ablation); its registered weights omit the encoder's [M] token, so it cannot "
                            "reconstruct")
    root = require_dir(args.images, "--images directory")
    files = sorted(p for p in root.rglob("*") if p.is_file() and is_image_file(p.name))
    if args.per_folder is not None:
        chosen: list[Path] = []
        taken: dict[Path, int] = {}
        for f in files:
            taken[f.parent] = taken.get(f.parent, 0) + 1
            if taken[f.parent] <= args.per_folder:
                chosen.append(f)
        files = chosen
    if args.limit is not None:
        files = files[:max(args.limit, 0)]
    if not files:
        raise MaebenchError(f"no images (.jpg, .jpeg, .png, .bmp, .webp) under {root}")
    target = meta.get("target") or TARGET_BY_FAMILY[e.family]
    if target == "pca":
        raise UsageError(f"backbone '{e.name}' predicts {meta.get('pca_components')} principal coefficients per "
                         "patch, not pixels: its reconstructions are not drawn")
    dec_dim = state["decoder_embed.weight"].shape[0]
    heads = args.decoder_heads or meta.get("decoder_num_heads") or max(1, dec_dim // 32)
    if dec_dim % heads:
        raise UsageError(f"decoder width {dec_dim} is not divisible by {heads} heads (--decoder-heads)")
    tokenizer = None
    if target == "dvae":
        tok = args.tokenizer or meta.get("tokenizer")
        if not tok:
            raise UsageError(f"backbone '{e.name}' predicts dVAE tokens: pass --tokenizer NAME|FILE to decode them")
        from maebench.backbones.dvae import load_tokenizer
        tokenizer, _ = load_tokenizer(tok)
    mask_ratio = args.mask_ratio if args.mask_ratio is not None else float(meta.get("mask_ratio", 0.75))

    # 2. model --------------------------------------------------------------------------------------
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model = from_state_dict(state, num_heads=arch_dims(e.arch)[2], patch_size=e.patch_size,
                            decoder_num_heads=heads, target=target,
                            masking=meta.get("masking", "random")).to(device).eval()
    transform = classification_eval(e.img_size, e.mean, e.std, crop_pct=1.0)   # whole image, resized
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    # 3. one figure per image; masks from (seed, image index) so a rerun draws the same masks ----
    L = model.patch_embed.num_patches
    grid_rows = []
    for i, path in enumerate(files):
        x = transform(load_rgb(path)).unsqueeze(0).to(device)
        noise = torch.rand(1, L, generator=torch.Generator().manual_seed(args.seed * 1_000_003 + i)).to(device)
        panels = reconstruct(model, x, mean=e.mean, std=e.std, mask_ratio=mask_ratio, noise=noise,
                             tokenizer=tokenizer)
        rel = path.relative_to(root).with_suffix("")
        dest = out / ("_".join(rel.parts) + ".png")
        row = [to_numpy(panels[k][0]) for k in PANELS]
        save_grid([row], dest, title=f"{e.name}: {rel} (mask {mask_ratio:.2f})")
        grid_rows.append(row)
    if args.grid:
        Path(args.grid).parent.mkdir(parents=True, exist_ok=True)
        save_grid(grid_rows, args.grid, groups_per_row=2 if len(grid_rows) > 4 else 1,
                  title=f"{e.name}: {len(grid_rows)} images, mask {mask_ratio:.2f}, seed {args.seed}")
    print(f"wrote {len(files)} reconstruction figure(s) to {out}{' and the grid ' + args.grid if args.grid else ''} "
          f"(backbone {e.name}, target {target}, mask {mask_ratio:.2f}, seed {args.seed})")
    return 0
