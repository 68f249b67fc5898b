"""External image tokenizers for the MAE token target (`--target token --tokenizer FILE`): the
paper's Table 1d / Table 7 token rows use DALL-E's dVAE, as BEiT does; BEiT v2 brings VQ-KD.

    load(FILE, mean=, std=, trust=) -> (tokenizer, meta)     meta["kind"] names what was read

Kinds, recognised from the file's keys:
  dall-e        openai/DALL-E `encoder.pkl`, a pickled `dall_e.encoder.Encoder` module (needs
                trust=True: unpickling runs code; the `dall_e` package is not needed, its classes
                are read as plain modules), or that module's state_dict (`blocks.input.w`, ...)
                saved with torch.save (read with weights_only). Re-implemented below from
                dall_e/encoder.py + utils.py: a 7x7 conv, 4 groups of residual blocks (widths
                1, 2, 4, 8 x n_hid, 2x2 max-pool after groups 1-3), ReLU + 1x1 conv to the
                8192-way logits; input map_pixels(x) = 0.8 x + 0.1 of [0, 1] pixels; stride 8.
  beit-v2-vqkd  BEiT v2's VQ-KD tokenizer state dict (unilm beit2/modeling_vqkd.py: `encoder.*`
                a BEiT ViT with mean-pooling fc_norm, `encode_task_layer` Linear-Tanh-Linear to
                32 dims, `quantize.embedding.weight` [8192, 32]; token = nearest code of the
                l2-normalised feature); input [0, 1] pixels scaled to [-1, 1]; stride = patch.
  maebench-dvae the dVAE `maebench pretrain --method dvae` trains (backbones/dvae.py): a
                CPU-scale stand-in, labelled as such in the results row (tokenizer_kind).

Every tokenizer takes the MAE's normalised images, undoes mean/std (external tokenizers read
pixels), resizes so that its token grid equals the MAE patch grid (BEiT feeds DALL-E 112 px for
a 224 px ViT/16), and returns one index per patch, row-major: tokenize(imgs, grid) -> [N, h*w].
"""
from __future__ import annotations

import math
import pickle
import re
import types
from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from maebench import torch_io
from maebench.errors import MaebenchError, first_line

KIND_LABELS = {"dall-e": "DALL-E dVAE (openai/DALL-E encoder.pkl)",
               "beit-v2-vqkd": "BEiT v2 VQ-KD",
               "maebench-dvae": "self-trained dVAE (maebench pretrain --method dvae; CPU scale, not the paper's)"}
LOGIT_LAPLACE_EPS = 0.1      # dall_e/utils.py: map_pixels


# ---- DALL-E's encoder, re-implemented (parameter names as in the release) ---------------------
class DalleConv(nn.Module):
    """dall_e.utils.Conv2d: weight `w`, bias `b`, 'same' padding for odd kernels."""

    def __init__(self, n_in: int, n_out: int, kw: int):
        super().__init__()
        self.kw = kw
        self.w = nn.Parameter(torch.randn(n_out, n_in, kw, kw) / math.sqrt(n_in * kw ** 2))
        self.b = nn.Parameter(torch.zeros(n_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x.float(), self.w, self.b, padding=(self.kw - 1) // 2)


class DalleBlock(nn.Module):
    """id_path (1x1 conv when widths differ) + (1 / n_layers^2) * res_path (4 ReLU-convs)."""

    def __init__(self, n_in: int, n_out: int, n_layers: int):
        super().__init__()
        hid = n_out // 4
        self.post_gain = 1 / n_layers ** 2
        self.id_path = DalleConv(n_in, n_out, 1) if n_in != n_out else nn.Identity()
        self.res_path = nn.Sequential(OrderedDict([
            ("relu_1", nn.ReLU()), ("conv_1", DalleConv(n_in, hid, 3)),
            ("relu_2", nn.ReLU()), ("conv_2", DalleConv(hid, hid, 3)),
            ("relu_3", nn.ReLU()), ("conv_3", DalleConv(hid, hid, 3)),
            ("relu_4", nn.ReLU()), ("conv_4", DalleConv(hid, n_out, 1))]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.id_path(x) + self.post_gain * self.res_path(x)


class DalleEncoder(nn.Module):
    """[N, C, H, W] mapped pixels -> logits [N, vocab, H/8, W/8] (DALL-E defaults: n_hid 256,
    2 blocks per group, vocab 8192)."""
    downsample = 8

    def __init__(self, n_hid: int = 256, n_blk_per_group: int = 2, input_channels: int = 3,
                 vocab_size: int = 8192):
        super().__init__()
        n_layers = 4 * n_blk_per_group
        widths = (1, 1, 2, 4, 8)            # input width, then groups 1-4 (x n_hid)
        groups = [("input", DalleConv(input_channels, n_hid, 7))]
        for g in range(1, 5):
            blocks = [(f"block_{i + 1}", DalleBlock((widths[g - 1] if i == 0 else widths[g]) * n_hid,
                                                    widths[g] * n_hid, n_layers)) for i in range(n_blk_per_group)]
            if g < 4:
                blocks.append(("pool", nn.MaxPool2d(kernel_size=2)))
            groups.append((f"group_{g}", nn.Sequential(OrderedDict(blocks))))
        groups.append(("output", nn.Sequential(OrderedDict([
            ("relu", nn.ReLU()), ("conv", DalleConv(8 * n_hid, vocab_size, 1))]))))
        self.blocks = nn.Sequential(OrderedDict(groups))
        self.vocab_size = vocab_size

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor]) -> "DalleEncoder":
        w = state["blocks.input.w"]
        blocks = {m.group(1) for k in state if (m := re.match(r"blocks\.group_1\.(block_\d+)\.", k))}
        model = cls(n_hid=w.shape[0], n_blk_per_group=len(blocks), input_channels=w.shape[1],
                    vocab_size=state["blocks.output.conv.w"].shape[0])
        model.load_state_dict(state)
        return model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)


class _Placeholder(nn.Module):
    """Stands in for a dall_e class while unpickling: keeps the module's parameters and children."""

    def forward(self, *_):      # never called: only the state dict is read
        raise RuntimeError("placeholder module")


class _DalleUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if module == "dall_e" or module.startswith("dall_e."):
            return _Placeholder
        return super().find_class(module, name)


_DALLE_PICKLE = types.SimpleNamespace(Unpickler=_DalleUnpickler, load=pickle.load, __name__="dalle_pickle")


def read_dalle_pickle(path: Path) -> dict[str, torch.Tensor]:
    """The state dict of a pickled dall_e Encoder (full unpickling: only for trusted files)."""
    module = torch.load(path, map_location="cpu", weights_only=False, pickle_module=_DALLE_PICKLE)
    if not isinstance(module, nn.Module):
        raise MaebenchError(f"{path}: the pickle holds a {type(module).__name__}, not the DALL-E encoder module")
    return {k: v.detach().float() for k, v in module.state_dict().items()}


# ---- BEiT v2 VQ-KD -----------------------------------------------------------------------------
class VQKDTokenizer(nn.Module):
    """The encoder half of VQ-KD: BEiT ViT -> fc_norm(patch tokens) -> task layer -> nearest code."""

    def __init__(self, state: dict[str, torch.Tensor]):
        super().__init__()
        from maebench.backbones.catalogue import infer_arch
        from maebench.backbones.build import build_model

        enc = {k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")}
        dim, depth = enc["cls_token"].shape[-1], 1 + max(int(k.split(".")[1]) for k in enc if k.startswith("blocks."))
        arch = infer_arch(dim, depth)
        if arch is None:
            raise MaebenchError(f"VQ-KD encoder of width {dim} and depth {depth} matches no known ViT size")
        patch = enc["patch_embed.proj.weight"].shape[-1]
        grid = math.isqrt(enc["pos_embed"].shape[1] - 1)
        self.encoder = build_model("beit", arch, img_size=grid * patch, patch_size=patch, global_pool="avg",
                                   vit_kwargs={"use_abs_pos_emb": True, "use_rel_pos_bias": False})
        enc = {k: v for k, v in enc.items() if not k.startswith("head.")}
        self.encoder.load_state_dict(enc, strict=True)
        code = state["quantize.embedding.weight"]
        self.encode_task_layer = nn.Sequential(nn.Linear(dim, dim), nn.Tanh(), nn.Linear(dim, code.shape[1]))
        self.encode_task_layer.load_state_dict({k[len("encode_task_layer."):]: v for k, v in state.items()
                                                if k.startswith("encode_task_layer.")})
        self.register_buffer("codebook", code.float())
        self.downsample, self.vocab_size = patch, code.shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[N, 3, H, W] in [-1, 1] -> token ids [N, h*w]."""
        feats = self.encoder.forward_features(x)[:, self.encoder.num_prefix_tokens:]
        z = F.normalize(self.encode_task_layer(self.encoder.fc_norm(feats)), dim=-1)
        dist = z.pow(2).sum(-1, keepdim=True) + self.codebook.pow(2).sum(-1) - 2 * z @ self.codebook.t()
        return dist.argmin(-1)


# ---- one interface -----------------------------------------------------------------------------
class PixelTokenizer(nn.Module):
    """A frozen external tokenizer behind the interface the MAE reads (vocab_size, tokenize)."""

    def __init__(self, kind: str, net: nn.Module, *, mean, std):
        super().__init__()
        self.kind, self.net, self.vocab_size = kind, net, net.vocab_size
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    @torch.no_grad()
    def tokenize(self, imgs: torch.Tensor, grid: tuple[int, int] | None = None) -> torch.Tensor:
        x = (imgs.float() * self.std + self.mean).clamp(0, 1)         # back to [0, 1] pixels
        if grid is not None:
            size = (grid[0] * self.net.downsample, grid[1] * self.net.downsample)
            if tuple(x.shape[-2:]) != size:
                x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
        if self.kind == "dall-e":
            logits = self.net((1 - 2 * LOGIT_LAPLACE_EPS) * x + LOGIT_LAPLACE_EPS)
            return logits.argmax(dim=1).flatten(1)
        return self.net(x * 2 - 1)


def detect_kind(state: dict) -> str | None:
    if "blocks.input.w" in state and "blocks.output.conv.w" in state:
        return "dall-e"
    if "quantize.embedding.weight" in state and "encoder.patch_embed.proj.weight" in state:
        return "beit-v2-vqkd"
    return None


def load(name_or_path: str, *, mean, std, trust: bool = False) -> tuple[nn.Module, dict]:
    """-> (frozen tokenizer with .vocab_size and .tokenize(imgs, grid), metadata incl. "kind")."""
    from maebench.backbones.dvae import load_tokenizer, tokenizer_path

    path = tokenizer_path(name_or_path)
    try:
        ck = torch_io.load(path)
    except torch_io.CheckpointError as e:
        if not e.needs_trust:
            raise MaebenchError(f"{path}: cannot read tokenizer file ({e.cause})") from None
        if not trust:
            raise MaebenchError(f"{path}: a pickled module (e.g. DALL-E's encoder.pkl); reading it runs code "
                                "inside the file: pass --trust-tokenizer if you trust its source, or save "
                                "its state_dict() and pass that") from None
        try:
            ck = read_dalle_pickle(path)
        except MaebenchError:
            raise
        except Exception as e:  # noqa: BLE001 - a pickle that is not DALL-E's module
            raise MaebenchError(f"{path}: cannot read the pickled tokenizer ({first_line(e, 160, typed=True)})") from None
    if isinstance(ck, dict) and isinstance(ck.get("maebench"), dict) and ck["maebench"].get("kind") == "dvae":
        model, meta = load_tokenizer(str(path))
        return model, {**meta, "kind": "maebench-dvae", "label": KIND_LABELS["maebench-dvae"]}
    state = ck
    for key in ("model", "state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict) and detect_kind(state) is None:
            state = state[key]
    kind = detect_kind(state) if isinstance(state, dict) else None
    if kind is None:
        raise MaebenchError(f"{path}: not a tokenizer maebench reads (DALL-E encoder, BEiT v2 VQ-KD, or a "
                            "`maebench pretrain --method dvae` file)")
    try:
        net = DalleEncoder.from_state_dict(state) if kind == "dall-e" else VQKDTokenizer(state)
    except (KeyError, RuntimeError, ValueError) as e:
        raise MaebenchError(f"{path}: {kind} tokenizer weights do not fit its architecture "
                            f"({first_line(e, 160, typed=True)})") from None
    tok = PixelTokenizer(kind, net, mean=mean, std=std).eval().requires_grad_(False)
    return tok, {"kind": kind, "label": KIND_LABELS[kind], "path": str(path), "vocab_size": tok.vocab_size}
