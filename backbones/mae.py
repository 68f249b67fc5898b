"""Masked Autoencoder (He et al., "Masked Autoencoders Are Scalable Vision Learners", 2021).

The whole method in one file: patchify, mask, encode the visible patches, decode with mask
tokens, and a loss on the removed patches only. Parameter names, shapes and the constructor
follow the official release (facebookresearch/mae, models_mae.py), so an official full
checkpoint loads into this model and this model's checkpoints load into the official code:

    patch_embed.proj.{weight,bias}  cls_token  pos_embed (fixed sin-cos, requires_grad=False)
    blocks.N.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}.*  norm.*
    decoder_embed.*  mask_token  decoder_pos_embed (fixed)  decoder_blocks.N.*  decoder_norm.*
    decoder_pred.*

maebench's own options (keyword-only, defaults reproduce the release):
    target     "pixel" | "norm-pixel" | "dvae"; `norm_pix_loss=True` is the release's spelling
               of "norm-pixel". "dvae" predicts codebook indices of a frozen tokenizer
               (backbones/dvae.py) with cross-entropy; decoder_pred then has vocab_size outputs.
    masking    "random" | "block" | "grid" (backbones/masking.py)
    mask_tokens_in_encoder   the Table 1c / Table 2 ablation: the encoder runs on all patches,
               a learned [M] token (`encoder_mask_token`, present only then) in the removed places.
"""
from __future__ import annotations

from functools import partial

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import PatchEmbed
from timm.models.vision_transformer import Block

from maebench.backbones.mae_names import MASKINGS, check_target
from maebench.backbones.masking import sample as sample_mask
from maebench.backbones.pos_embed import get_2d_sincos_pos_embed
from maebench.errors import MaebenchError, UsageError, unknown
from maebench.grad_ckpt import run_blocks


class MaskedAutoencoderViT(nn.Module):
    """Masked Autoencoder with a VisionTransformer backbone."""

    def __init__(self, img_size=224, patch_size=16, in_chans=3,
                 embed_dim=1024, depth=24, num_heads=16,
                 decoder_embed_dim=512, decoder_depth=8, decoder_num_heads=16,
                 mlp_ratio=4., norm_layer=nn.LayerNorm, norm_pix_loss=False, *,
                 target: str | None = None, masking: str = "random",
                 mask_tokens_in_encoder: bool = False, vocab_size: int | None = None,
                 pca_components: int | None = None):
        super().__init__()
        target = target or ("norm-pixel" if norm_pix_loss else "pixel")
        check_target(target)
        target = "dvae" if target == "token" else target   # one cross-entropy, whichever tokenizer made the ids
        if masking not in MASKINGS:
            raise unknown("masking", masking, MASKINGS)
        if target == "dvae" and not vocab_size:
            raise UsageError("target 'dvae' needs vocab_size (the tokenizer's codebook size)")
        if target == "pca" and not 0 < (pca_components or 0) <= patch_size ** 2 * in_chans:
            raise UsageError(f"target 'pca' needs pca_components between 1 and the patch's {patch_size ** 2 * in_chans} "
                             f"values, got {pca_components}")
        self.target, self.masking = target, masking
        self.norm_pix_loss = target == "norm-pixel"
        self.mask_tokens_in_encoder = mask_tokens_in_encoder
        self.in_chans, self.vocab_size = in_chans, vocab_size
        self._tokenizer: tuple = ()   # (frozen DiscreteVAE,) for target "dvae"; see attach_tokenizer
        self._pca: tuple = ()         # (mean [P], basis [P, K]) for target "pca"; see attach_pca
        self.pca_components = pca_components
        self.grad_checkpointing = False   # timm's switch (set_grad_checkpointing), read by both block loops

        # --------------------------------------------------------------------------
        # MAE encoder specifics
        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim)
        num_patches = self.patch_embed.num_patches

        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        # fixed sin-cos embedding: a Parameter (not a buffer) so the key sits in the state dict
        # exactly where the release has it; requires_grad=False keeps it out of the optimizer
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, embed_dim), requires_grad=False)
        if mask_tokens_in_encoder:
            self.encoder_mask_token = nn.Parameter(torch.zeros(1, 1, embed_dim))

        self.blocks = nn.ModuleList([
            Block(embed_dim, num_heads, mlp_ratio, qkv_bias=True, norm_layer=norm_layer)
            for _ in range(depth)])
        self.norm = norm_layer(embed_dim)
        # --------------------------------------------------------------------------

        # --------------------------------------------------------------------------
        # MAE decoder specifics
        self.decoder_embed = nn.Linear(embed_dim, decoder_embed_dim, bias=True)

        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_embed_dim))

        self.decoder_pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, decoder_embed_dim),
                                              requires_grad=False)

        self.decoder_blocks = nn.ModuleList([
            Block(decoder_embed_dim, decoder_num_heads, mlp_ratio, qkv_bias=True, norm_layer=norm_layer)
            for _ in range(decoder_depth)])

        self.decoder_norm = norm_layer(decoder_embed_dim)
        # pixels of one patch, or one logit per codebook entry for the token target
        out_dim = vocab_size if target == "dvae" else pca_components if target == "pca" else patch_size ** 2 * in_chans
        self.decoder_pred = nn.Linear(decoder_embed_dim, out_dim, bias=True)
        # --------------------------------------------------------------------------

        self.initialize_weights()

    # ------------------------------------------------------------------------------
    # initialisation (brief section 1: xavier Linear, patch embed like a Linear,
    # tokens N(0, 0.02), LayerNorm 1 / 0, fixed sin-cos position embeddings)
    def initialize_weights(self):
        grid = self.patch_embed.grid_size
        self.pos_embed.data.copy_(torch.from_numpy(
            get_2d_sincos_pos_embed(self.pos_embed.shape[-1], grid, cls_token=True)).unsqueeze(0))
        self.decoder_pos_embed.data.copy_(torch.from_numpy(
            get_2d_sincos_pos_embed(self.decoder_pos_embed.shape[-1], grid, cls_token=True)).unsqueeze(0))

        # the patch embedding is a Linear on flattened patches written as a strided conv
        w = self.patch_embed.proj.weight.data
        torch.nn.init.xavier_uniform_(w.view([w.shape[0], -1]))

        torch.nn.init.normal_(self.cls_token, std=.02)
        torch.nn.init.normal_(self.mask_token, std=.02)
        if self.mask_tokens_in_encoder:
            torch.nn.init.normal_(self.encoder_mask_token, std=.02)

        self.apply(self._init_weights)

    def _init_weights(self, m):
        if isinstance(m, nn.Linear):
            # the release uses xavier_uniform (as JAX ViT), not timm's trunc_normal
            torch.nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.constant_(m.bias, 0)
        elif isinstance(m, nn.LayerNorm):
            nn.init.constant_(m.bias, 0)
            nn.init.constant_(m.weight, 1.0)

    # ------------------------------------------------------------------------------
    # patches <-> images
    @property
    def patch_size(self) -> int:
        return self.patch_embed.patch_size[0]

    def patchify(self, imgs):
        """imgs: [N, C, H, W] -> x: [N, L, p*p*C], each patch flattened as (row, column, channel)."""
        p, c = self.patch_size, self.in_chans
        n, _, H, W = imgs.shape
        assert H % p == 0 and W % p == 0, f"image {H}x{W} is not a whole number of {p}px patches"
        h, w = H // p, W // p
        x = imgs.reshape(n, c, h, p, w, p)
        x = torch.einsum("nchpwq->nhwpqc", x)
        return x.reshape(n, h * w, p * p * c)

    def unpatchify(self, x, grid: tuple[int, int] | None = None):
        """x: [N, L, p*p*C] -> imgs: [N, C, H, W]; the grid defaults to the model's (a square)."""
        p, c = self.patch_size, self.in_chans
        h, w = grid or self.patch_embed.grid_size
        assert h * w == x.shape[1]
        x = x.reshape(x.shape[0], h, w, p, p, c)
        x = torch.einsum("nhwpqc->nchpwq", x)
        return x.reshape(x.shape[0], c, h * p, w * p)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """timm's switch: recompute each encoder and decoder block in the backward (maebench/grad_ckpt.py)."""
        self.grad_checkpointing = enable

    # ------------------------------------------------------------------------------
    # encoder
    def forward_encoder(self, x, mask_ratio, noise=None):
        """x: [N, C, H, W] -> latent [N, 1 + K, D] (K visible, or all L with mask tokens in
        the encoder), mask [N, L] (0 keep, 1 remove), ids_restore [N, L]."""
        x = self.patch_embed(x)                                   # [N, L, D]
        N, L, D = x.shape
        ids_keep, ids_restore, mask = sample_mask(
            self.masking, N, self.patch_embed.grid_size, mask_ratio, noise=noise, device=x.device)

        if self.mask_tokens_in_encoder:
            # ablation: every patch goes through the encoder, removed ones as the [M] token
            w = mask.unsqueeze(-1).to(x.dtype)                    # [N, L, 1]
            x = x * (1 - w) + self.encoder_mask_token.to(x.dtype) * w
            x = x + self.pos_embed[:, 1:, :]                      # [N, L, D]
        else:
            # position first, then drop: each kept token remembers where it came from
            x = x + self.pos_embed[:, 1:, :]
            # gather with an expanded index (a view), not an [N, K, D] int64 copy
            x = torch.gather(x, 1, ids_keep.unsqueeze(-1).expand(-1, -1, D))   # [N, K, D]

        cls_token = self.cls_token + self.pos_embed[:, :1, :]
        x = torch.cat((cls_token.expand(N, -1, -1), x), dim=1)   # [N, 1 + K, D]

        x = run_blocks(self, self.blocks, x)
        x = self.norm(x)
        return x, mask, ids_restore

    # ------------------------------------------------------------------------------
    # decoder
    def forward_decoder(self, x, ids_restore):
        """x: [N, 1 + K, D] -> pred [N, L, p*p*C] (or [N, L, vocab] for the token target)."""
        x = self.decoder_embed(x)                                 # [N, 1 + K, Dd]
        N, L = ids_restore.shape
        Dd = x.shape[-1]

        if not self.mask_tokens_in_encoder:
            # append one shared mask token per removed patch, then undo the shuffle
            mask_tokens = self.mask_token.to(x.dtype).expand(N, L + 1 - x.shape[1], -1)
            x_ = torch.cat([x[:, 1:, :], mask_tokens], dim=1)     # [N, L, Dd], shuffled order
            x_ = torch.gather(x_, 1, ids_restore.unsqueeze(-1).expand(-1, -1, Dd))  # image order
            x = torch.cat([x[:, :1, :], x_], dim=1)               # [N, 1 + L, Dd]
        # (with mask tokens in the encoder, x already holds all L patches in image order)

        x = x + self.decoder_pos_embed
        x = run_blocks(self, self.decoder_blocks, x)
        x = self.decoder_norm(x)
        x = self.decoder_pred(x)
        return x[:, 1:, :]                                        # drop [cls]: [N, L, out]

    # ------------------------------------------------------------------------------
    # targets and loss
    def attach_tokenizer(self, tokenizer: nn.Module) -> None:
        """Use a frozen dVAE (backbones/dvae.py) for the "dvae" target.

        Kept inside a tuple on purpose: it is not a registered submodule, so it is absent from
        state_dict() (the checkpoint stays in the official layout), from parameters() (the
        optimizer never sees it) and from DDP's gradient synchronisation.
        """
        if self.target != "dvae":
            raise MaebenchError(f"a tokenizer is only used by target 'dvae' (this model: '{self.target}')")
        if tokenizer.vocab_size != self.vocab_size:
            raise MaebenchError(f"tokenizer codebook has {tokenizer.vocab_size} entries, the decoder predicts "
                                f"{self.vocab_size}")
        tokenizer.eval().requires_grad_(False)
        self._tokenizer = (tokenizer,)

    def attach_pca(self, mean: torch.Tensor, basis: torch.Tensor) -> None:
        """The "pca" target's projection (Table 1d's PCA row): a patch's coefficients on the K
        largest principal components of the training patches (`pca_basis`). Outside the state
        dict, like the tokenizer: recomputed from the data, never part of the checkpoint."""
        if self.target != "pca" or basis.shape[1] != self.pca_components:
            raise MaebenchError(f"a PCA basis of {basis.shape[1]} components does not fit this model "
                                f"(target '{self.target}', pca_components {self.pca_components})")
        self._pca = (mean.float(), basis.float())

    def patch_targets(self, imgs):
        """The regression target per patch: [N, L, p*p*C] (normalised per patch for norm-pixel;
        [N, L, K] principal coefficients for pca)."""
        target = self.patchify(imgs)
        if self.target == "pca":
            if not self._pca:
                raise MaebenchError("target 'pca' needs its basis: attach_pca(*pca_basis(model, images))")
            mean, basis = (t.to(target.device) for t in self._pca)
            return (target - mean) @ basis
        if self.norm_pix_loss:
            # each patch by its own mean and (unbiased, as released) variance; eps 1e-6
            mean = target.mean(dim=-1, keepdim=True)
            var = target.var(dim=-1, keepdim=True)
            target = (target - mean) / (var + 1.e-6) ** .5
        return target

    def token_targets(self, imgs):
        """Codebook index of every patch from the frozen tokenizer: [N, L] int64."""
        if not self._tokenizer:
            raise MaebenchError("target 'dvae' needs a frozen dVAE tokenizer: train one with "
                                "`maebench pretrain --method dvae --name TOK` and pass --tokenizer TOK")
        tok = self._tokenizer[0]
        if next(tok.parameters()).device != imgs.device:
            tok.to(imgs.device)
        with torch.no_grad():
            return tok.tokenize(imgs, grid=self.patch_embed.grid_size)

    def forward_loss(self, imgs, pred, mask):
        """imgs: [N, C, H, W]; pred: [N, L, out]; mask: [N, L], 0 keep, 1 remove.
        Mean loss over the removed patches only: visible ones would reward copying."""
        if self.target == "dvae":
            ids = self.token_targets(imgs)                        # [N, L]
            loss = F.cross_entropy(pred.float().transpose(1, 2), ids, reduction="none")  # [N, L]
        else:
            target = self.patch_targets(imgs)
            loss = (pred.float() - target) ** 2
            loss = loss.mean(dim=-1)                              # [N, L], mean loss per patch
        return (loss * mask).sum() / mask.sum()

    def forward(self, imgs, mask_ratio=0.75, noise=None):
        """-> (loss, pred [N, L, out], mask [N, L]); `noise` [N, L] fixes the masking."""
        latent, mask, ids_restore = self.forward_encoder(imgs, mask_ratio, noise)
        pred = self.forward_decoder(latent, ids_restore)
        loss = self.forward_loss(imgs, pred, mask)
        return loss, pred, mask


# ------------------------------------------------------------------------------------------
# construction: `vit-<size>` encoders with the released decoder (512-d, 8 blocks, 16 heads) by default
# ------------------------------------------------------------------------------------------
def _mae(embed_dim, depth, num_heads, patch_size, decoder=(512, 8, 16), **kwargs):
    dd, dn, dh = decoder
    defaults = dict(patch_size=patch_size, embed_dim=embed_dim, depth=depth, num_heads=num_heads,
                    decoder_embed_dim=dd, decoder_depth=dn, decoder_num_heads=dh, mlp_ratio=4,
                    norm_layer=partial(nn.LayerNorm, eps=1e-6))
    return MaskedAutoencoderViT(**{**defaults, **kwargs})


def create_mae(arch: str, *, img_size: int = 224, patch_size: int | None = None, in_chans: int = 3,
               decoder_embed_dim: int = 512, decoder_depth: int = 8, decoder_num_heads: int = 16,
               mlp_ratio: float = 4.0, **kwargs) -> MaskedAutoencoderViT:
    """An MAE over a `vit-<size>` encoder (catalogue.yaml `architectures`) with any decoder."""
    from maebench.backbones.catalogue import arch_dims
    embed_dim, depth, num_heads, default_patch = arch_dims(arch)
    model = _mae(embed_dim, depth, num_heads, patch_size or default_patch,
                 decoder=(decoder_embed_dim, decoder_depth, decoder_num_heads),
                 img_size=img_size, in_chans=in_chans, mlp_ratio=mlp_ratio, **kwargs)
    model.arch = arch
    return model


def from_state_dict(state: dict[str, torch.Tensor], *, num_heads: int, patch_size: int,
                    decoder_num_heads: int = 16, **kwargs) -> MaskedAutoencoderViT:
    """Build the model a full MAE state dict (official keys) was saved from, and load it.

    Widths, depths, image size and channels are read off the tensors; attention heads are not
    recorded in the weights, so they are arguments (16 for every released decoder).
    """
    if "decoder_embed.weight" not in state or "mask_token" not in state:
        raise MaebenchError("this checkpoint has no MAE decoder weights (decoder_embed, mask_token): "
                            "an encoder-only file cannot reconstruct images")

    def depth_of(prefix: str) -> int:
        return 1 + max(int(k.split(".")[1]) for k in state if k.startswith(prefix + "."))

    embed_dim = state["cls_token"].shape[-1]
    dec_dim = state["decoder_embed.weight"].shape[0]
    in_chans = state["patch_embed.proj.weight"].shape[1]
    side = round((state["pos_embed"].shape[1] - 1) ** 0.5)
    out = state["decoder_pred.weight"].shape[0]
    pixel_out = patch_size ** 2 * in_chans
    if out != pixel_out:
        kwargs.setdefault("target", "dvae")
        kwargs.setdefault("vocab_size", out)
    model = MaskedAutoencoderViT(
        img_size=side * patch_size, patch_size=patch_size, in_chans=in_chans,
        embed_dim=embed_dim, depth=depth_of("blocks"), num_heads=num_heads,
        decoder_embed_dim=dec_dim, decoder_depth=depth_of("decoder_blocks"),
        decoder_num_heads=decoder_num_heads,
        mlp_ratio=state["blocks.0.mlp.fc1.weight"].shape[0] / embed_dim,
        norm_layer=partial(nn.LayerNorm, eps=1e-6),
        mask_tokens_in_encoder="encoder_mask_token" in state, **kwargs)
    model.load_state_dict(state)
    return model


@torch.no_grad()
def pca_basis(model: MaskedAutoencoderViT, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean [P], basis [P, K]): the mean patch and the K = model.pca_components principal
    directions (largest variance first) of every patch of `images` [N, C, H, W]."""
    patches = model.patchify(images.float()).flatten(0, 1).double()          # [N * L, P]
    mean = patches.mean(0)
    cov = (patches - mean).T @ (patches - mean) / (len(patches) - 1)
    values, vectors = torch.linalg.eigh(cov)                                  # ascending
    order = values.argsort(descending=True)[:model.pca_components]
    return mean.float(), vectors[:, order].float()
