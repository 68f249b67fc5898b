"""Discrete VAE tokenizer (DALL-E style) for the MAE "dvae" target (paper Table 1d / Table 7).

A convolutional encoder maps an image to a grid of logits over a codebook; training relaxes
the discrete choice with Gumbel-softmax, whose temperature is annealed from `tau_start` to
`tau_end` (DALL-E: 1 -> 1/16, exponentially); a convolutional decoder reconstructs the image
from the (soft) codes. Once trained and frozen, `tokenize` gives one codebook index per MAE
patch, which the MAE decoder predicts with cross-entropy.

    image [N, C, H, W] --encoder--> logits [N, V, H/f, W/f] --gumbel softmax--> codes [N, V, h, w]
        --codebook--> [N, E, h, w] --decoder--> reconstruction [N, C, H, W]

`downsample` f (a power of two) need not equal the MAE patch size: as in BEiT (a 224 px ViT/16
uses DALL-E's f = 8 tokenizer on 112 px inputs), `tokenize` resizes the image to grid x f so
that the token grid matches the patch grid.

Images are in the same normalised space as the MAE inputs (same mean / std); the checkpoint
records them and `maebench pretrain --method mae --target dvae` refuses a mismatch.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from maebench.errors import MaebenchError, UsageError


class ResBlock(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.body = nn.Sequential(nn.ReLU(), nn.Conv2d(dim, dim, 3, padding=1),
                                  nn.ReLU(), nn.Conv2d(dim, dim, 1))

    def forward(self, x):
        return x + self.body(x)


class DiscreteVAE(nn.Module):
    def __init__(self, vocab_size: int = 8192, downsample: int = 8, in_chans: int = 3,
                 hidden: int = 128, code_dim: int = 256, num_resblocks: int = 1,
                 tau_start: float = 1.0, tau_end: float = 1.0 / 16, anneal_steps: int = 0,
                 kl_weight: float = 0.0):
        super().__init__()
        stages = int(round(math.log2(downsample)))
        if downsample < 1 or 2 ** stages != downsample:
            raise UsageError(f"dVAE downsample must be a power of two, got {downsample}")
        if vocab_size < 2:
            raise UsageError(f"dVAE vocab_size must be at least 2, got {vocab_size}")
        self.vocab_size, self.downsample, self.in_chans = vocab_size, downsample, in_chans
        self.tau_start, self.tau_end, self.anneal_steps = tau_start, tau_end, anneal_steps
        self.kl_weight = kl_weight
        # training forward passes so far (micro-batches); a buffer, so the anneal resumes
        # from the checkpoint exactly where it stopped
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

        # encoder: [N, C, H, W] -> [N, V, H/f, W/f]
        enc = [nn.Conv2d(in_chans, hidden, 3, padding=1)]
        for _ in range(stages):
            enc += [*(ResBlock(hidden) for _ in range(num_resblocks)),
                    nn.Conv2d(hidden, hidden, 4, stride=2, padding=1)]
        enc += [*(ResBlock(hidden) for _ in range(num_resblocks)), nn.ReLU(), nn.Conv2d(hidden, vocab_size, 1)]
        self.encoder = nn.Sequential(*enc)

        # codebook: one embedding per token; soft codes mix them
        self.codebook = nn.Embedding(vocab_size, code_dim)

        # decoder: [N, E, h, w] -> [N, C, H, W]
        dec = [nn.Conv2d(code_dim, hidden, 1)]
        for _ in range(stages):
            dec += [*(ResBlock(hidden) for _ in range(num_resblocks)),
                    nn.ConvTranspose2d(hidden, hidden, 4, stride=2, padding=1)]
        dec += [*(ResBlock(hidden) for _ in range(num_resblocks)), nn.ReLU(), nn.Conv2d(hidden, in_chans, 3, padding=1)]
        self.decoder = nn.Sequential(*dec)

    # ---- temperature schedule --------------------------------------------------------------
    def temperature(self, step: int | None = None) -> float:
        """Exponential anneal tau_start -> tau_end over `anneal_steps` forward passes, then constant."""
        step = int(self.step) if step is None else step
        if self.anneal_steps <= 0:
            return self.tau_end
        t = min(1.0, step / self.anneal_steps)
        return self.tau_start * (self.tau_end / self.tau_start) ** t

    # ---- training --------------------------------------------------------------------------
    def forward(self, imgs):
        """imgs [N, C, H, W] -> (loss, reconstruction [N, C, H, W], logs).

        loss = MSE(reconstruction, imgs) + kl_weight * KL(q(z|x) || uniform prior)."""
        f = self.downsample
        if imgs.shape[-1] % f or imgs.shape[-2] % f:
            raise MaebenchError(f"dVAE input {imgs.shape[-2]}x{imgs.shape[-1]} is not divisible by "
                                f"its downsampling factor {f}")
        tau = self.temperature()
        logits = self.encoder(imgs)                                   # [N, V, h, w]
        soft = F.gumbel_softmax(logits, tau=tau, hard=False, dim=1)   # [N, V, h, w]
        z = torch.einsum("nvhw,ve->nehw", soft, self.codebook.weight)  # [N, E, h, w]
        recon = self.decoder(z)
        mse = F.mse_loss(recon, imgs)
        log_q = F.log_softmax(logits, dim=1)
        # KL(q || uniform) = sum q log q + log V, averaged over token positions
        kl = (log_q.exp() * log_q).sum(1).mean() + math.log(self.vocab_size)
        loss = mse + self.kl_weight * kl
        if self.training and torch.is_grad_enabled():
            self.step += 1
        with torch.no_grad():   # codebook usage: exp(entropy of the mean code distribution)
            usage = log_q.exp().mean(dim=(0, 2, 3))
            perplexity = torch.exp(-(usage * (usage + 1e-10).log()).sum())
        logs = {"mse": mse.detach(), "kl": kl.detach(), "tau": torch.tensor(tau), "perplexity": perplexity}
        return loss, recon, logs

    # ---- frozen use --------------------------------------------------------------------------
    def _resize_to(self, imgs, grid: tuple[int, int] | None):
        if grid is None:
            return imgs
        size = (grid[0] * self.downsample, grid[1] * self.downsample)
        if tuple(imgs.shape[-2:]) == size:
            return imgs
        return F.interpolate(imgs, size=size, mode="bilinear", align_corners=False, antialias=True)

    @torch.no_grad()
    def tokenize(self, imgs, grid: tuple[int, int] | None = None):
        """imgs [N, C, H, W] -> codebook indices [N, h*w] (row-major, like the MAE's patches);
        with `grid`, the image is first resized so that the token grid is `grid`."""
        logits = self.encoder(self._resize_to(imgs, grid))           # [N, V, h, w]
        return logits.argmax(dim=1).flatten(1)

    @torch.no_grad()
    def decode(self, ids, grid: tuple[int, int]):
        """indices [N, h*w] -> image [N, C, h*f, w*f]."""
        z = self.codebook(ids).reshape(ids.shape[0], grid[0], grid[1], -1).permute(0, 3, 1, 2)
        return self.decoder(z)


# ------------------------------------------------------------------------------------------
# checkpoint: {"model": state_dict, "maebench": {"kind": "dvae", constructor args, mean, std}}
# ------------------------------------------------------------------------------------------
CONSTRUCTOR_KEYS = ("vocab_size", "downsample", "in_chans", "hidden", "code_dim", "num_resblocks",
                    "tau_start", "tau_end", "anneal_steps", "kl_weight")


def tokenizer_path(name_or_path: str):
    """A tokenizer file: an existing path, or the NAME given to `pretrain --method dvae`
    ($MAEBENCH_HOME/weights/tokenizers/NAME.pth)."""
    from pathlib import Path

    from maebench.home import weights_dir
    p = Path(name_or_path).expanduser()
    if p.is_file():
        return p
    named = weights_dir() / "tokenizers" / f"{name_or_path}.pth"
    if named.is_file():
        return named
    raise MaebenchError(f"tokenizer '{name_or_path}' not found: neither a file nor a name in {named.parent} "
                        "(train one with `maebench pretrain --method dvae --name NAME`)")


def load_tokenizer(name_or_path: str) -> tuple[DiscreteVAE, dict]:
    """-> (frozen DiscreteVAE in eval mode, its metadata)."""
    from maebench.torch_io import load
    path = tokenizer_path(name_or_path)
    ck = load(path)
    meta = ck.get("maebench") if isinstance(ck, dict) else None
    if not isinstance(meta, dict) or meta.get("kind") != "dvae" or "model" not in ck:
        raise MaebenchError(f"{path} is not a maebench dVAE tokenizer (no 'maebench' metadata of kind 'dvae')")
    model = DiscreteVAE(**{k: meta[k] for k in CONSTRUCTOR_KEYS if k in meta})
    model.load_state_dict(ck["model"])
    model.eval().requires_grad_(False)
    return model, dict(meta, path=str(path))
