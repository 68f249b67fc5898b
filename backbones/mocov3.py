"""MoCo v3 for ViT (Chen, Xie, He, "An Empirical Study of Training Self-Supervised Vision
Transformers", ICCV 2021): the contrastive baseline the MAE paper compares against.

Two views of each image go through a base encoder (ViT + projection MLP + prediction MLP,
trained by gradients) and a momentum encoder (ViT + projection MLP, an exponential moving
average of the base one). Each view's query must pick out the other view's key among the keys
of every image in the global batch (InfoNCE); there is no memory queue in v3, the batch is the
dictionary, which is why the keys are gathered across processes.

Choices that matter, all as in the official release (facebookresearch/moco-v3):
- Projection MLP 3 layers, prediction MLP 2 layers, hidden 4096, output 256; Linear layers
  without bias, BatchNorm + ReLU between them, a last BatchNorm without affine on the
  projection output (SimCLR's design); the predictor ends on a bare Linear.
- Loss = CE(q . k / T) * 2T for each direction: multiplying by 2T undoes the 1/T scaling of
  the gradient, so the loss magnitude (and the best lr) barely moves with T.
- Momentum m follows a half cosine from 0.99 to 1 over training, per optimizer step.
- ViT details: fixed 2-D sin-cos position embeddings; the MoCo initialisation (xavier-uniform
  Linear layers, Q/K/V treated as three matrices, patch projection uniform like a Linear);
  optionally a frozen *random* patch projection (stop-gradient on patch_embed), the paper's
  fix for the training instability that shows up as loss spikes ("dips" in kNN accuracy).

The encoder is timm's VisionTransformer from `backbones.vit.create_vit`, with the projection MLP
as its `head`, so `base_encoder.*` keys (minus `head.*`) are the downstream backbone, exactly
like the released `module.base_encoder.` checkpoints.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from maebench.backbones.pos_embed import get_2d_sincos_pos_embed
from maebench.backbones.vit import create_vit
from maebench import distributed as dist


# --------------------------------------------------------------------------------------------
# Pieces that are pure functions (tested by hand computations)
# --------------------------------------------------------------------------------------------
def momentum_at(step: float, total_steps: float, base: float = 0.99) -> float:
    """Half-cosine increase of the momentum: `base` at step 0, exactly 1.0 at `total_steps`.

    Early in training the key encoder follows the query encoder quickly (keys stay relevant
    while features change fast); at the end it is frozen, so the targets stop moving."""
    progress = min(max(step / max(total_steps, 1), 0.0), 1.0)
    return 1.0 - 0.5 * (1.0 + math.cos(math.pi * progress)) * (1.0 - base)


@torch.no_grad()
def concat_all_gather(t: torch.Tensor) -> torch.Tensor:
    """[N, C] on every process -> [world * N, C], rank order. No gradient flows through it,
    which is fine: it is only used for keys, which come from the no-grad momentum encoder."""
    if not dist.is_dist():
        return t
    out = [torch.empty_like(t) for _ in range(dist.world_size())]
    torch.distributed.all_gather(out, t.contiguous())
    return torch.cat(out, dim=0)


def contrastive_loss(q: torch.Tensor, k: torch.Tensor, temperature: float) -> torch.Tensor:
    """InfoNCE of queries q [N, C] against this process's keys k [N, C] plus every other
    process's keys; the positive of q[i] is k[i], i.e. row N * rank + i of the gathered keys.

    Returns CE(logits / T) * 2T (see the module docstring for the 2T)."""
    # fp32 even under AMP: at T = 0.2 bf16 cosines (3 significant digits) would blur the logits
    with torch.autocast(q.device.type, enabled=False):
        q = F.normalize(q.float(), dim=1)
        k = F.normalize(k.float(), dim=1)
        k_all = concat_all_gather(k)                                   # [world * N, C]
        logits = q @ k_all.t() / temperature                           # [N, world * N]
        n = q.shape[0]
        labels = torch.arange(n, device=q.device) + n * dist.rank()    # positives: our own keys
        return F.cross_entropy(logits, labels) * (2 * temperature)


def build_mlp(num_layers: int, in_dim: int, hidden_dim: int, out_dim: int, last_bn: bool) -> nn.Sequential:
    """Linear (no bias: BN follows) -> BN -> ReLU, repeated; the last Linear is followed by a
    BatchNorm without affine when `last_bn` (projection head) and by nothing otherwise
    (prediction head)."""
    layers: list[nn.Module] = []
    for i in range(num_layers):
        d_in = in_dim if i == 0 else hidden_dim
        d_out = out_dim if i == num_layers - 1 else hidden_dim
        layers.append(nn.Linear(d_in, d_out, bias=False))
        if i < num_layers - 1:
            layers += [nn.BatchNorm1d(d_out), nn.ReLU(inplace=True)]
        elif last_bn:
            layers.append(nn.BatchNorm1d(d_out, affine=False))
    return nn.Sequential(*layers)


def moco_vit(arch: str, *, img_size: int, patch_size: int | None, in_chans: int = 3,
             stop_grad_patch_embed: bool = True, drop_path_rate: float = 0.0) -> nn.Module:
    """A ViT encoder initialised the MoCo v3 way (see the module docstring); no head yet."""
    vit = create_vit(arch, img_size=img_size, patch_size=patch_size, in_chans=in_chans,
                     num_classes=0, global_pool="token", drop_path_rate=drop_path_rate,
                     weight_init="moco")
    # fixed sin-cos position embeddings ([cls] row zero), not learned
    grid = vit.patch_embed.grid_size
    pe = get_2d_sincos_pos_embed(vit.embed_dim, grid, cls_token=True)
    with torch.no_grad():
        vit.pos_embed.copy_(torch.from_numpy(pe).unsqueeze(0))
    vit.pos_embed.requires_grad = False
    # patch projection: uniform like a Linear layer of fan-in 3 * p * p (it is one, on patches)
    proj = vit.patch_embed.proj
    fan = in_chans * proj.kernel_size[0] * proj.kernel_size[1]
    bound = math.sqrt(6.0 / float(fan + vit.embed_dim))
    nn.init.uniform_(proj.weight, -bound, bound)
    nn.init.zeros_(proj.bias)
    if stop_grad_patch_embed:
        proj.weight.requires_grad = False
        proj.bias.requires_grad = False
    return vit


# --------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------
class MoCoV3(nn.Module):
    """forward(x1, x2) -> symmetric InfoNCE loss (a scalar).

    The momentum encoder moves once per optimizer step, before the step's first forward, with
    m = momentum_at(step, total_steps): `on_step` is the training loop's per-step hook, and the
    loop's step counts (restored on --resume) drive the schedule.
    """

    def __init__(self, arch: str, *, img_size: int, patch_size: int | None = None, in_chans: int = 3,
                 dim: int = 256, mlp_dim: int = 4096, temperature: float = 0.2,
                 base_momentum: float = 0.99, stop_grad_patch_embed: bool = True, drop_path_rate: float = 0.0):
        super().__init__()
        self.temperature = temperature
        self.base_momentum = base_momentum
        kw = dict(img_size=img_size, patch_size=patch_size, in_chans=in_chans,
                  stop_grad_patch_embed=stop_grad_patch_embed, drop_path_rate=drop_path_rate)
        # -- base encoder: ViT -> [cls] after norm -> projection MLP (as its head) -------------
        self.base_encoder = moco_vit(arch, **kw)
        width = self.base_encoder.embed_dim
        self.base_encoder.head = build_mlp(3, width, mlp_dim, dim, last_bn=True)
        # -- prediction MLP: only on the query side (the asymmetry that BYOL/MoCo v3 rely on) ---
        self.predictor = build_mlp(2, dim, mlp_dim, dim, last_bn=False)
        # -- momentum encoder: same architecture, starts as a copy, never gets gradients ------
        self.momentum_encoder = moco_vit(arch, **kw)
        self.momentum_encoder.head = build_mlp(3, width, mlp_dim, dim, last_bn=True)
        self.momentum_encoder.load_state_dict(self.base_encoder.state_dict())
        for p in self.momentum_encoder.parameters():
            p.requires_grad = False

    # MoCo momentum update ------------------------------------------------------------------
    @torch.no_grad()
    def update_momentum_encoder(self, m: float) -> None:
        """k <- m * k + (1 - m) * q for every parameter pair (buffers, i.e. BN statistics of the
        momentum side, are its own, as in the official code)."""
        ks = list(self.momentum_encoder.parameters())
        qs = [p.detach() for p in self.base_encoder.parameters()]
        torch._foreach_mul_(ks, m)
        torch._foreach_add_(ks, qs, alpha=1.0 - m)

    def on_step(self, step: int, total_steps: int) -> None:
        """engine.fit's per-step hook: move the momentum encoder with the scheduled m."""
        self.update_momentum_encoder(momentum_at(step, total_steps, self.base_momentum))

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        """x1, x2: [N, 3, H, W], two augmentations of the same N images."""
        q1 = self.predictor(self.base_encoder(x1))          # [N, dim]
        q2 = self.predictor(self.base_encoder(x2))
        with torch.no_grad():
            k1 = self.momentum_encoder(x1)                  # [N, dim], targets
            k2 = self.momentum_encoder(x2)
        return (contrastive_loss(q1, k2, self.temperature)
                + contrastive_loss(q2, k1, self.temperature))

    # export ------------------------------------------------------------------------------------
    def encoder_state_dict(self) -> dict[str, torch.Tensor]:
        """The base ViT without its projection head: timm VisionTransformer keys (the backbone)."""
        return {k: v.detach().clone() for k, v in self.base_encoder.state_dict().items()
                if not k.startswith("head.")}
