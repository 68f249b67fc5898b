"""External tokenizers for the MAE token target (backbones/tokenizers.py): a small random
tokenizer written in DALL-E's release format (a pickled `dall_e.encoder.Encoder`, classes
written here after openai/DALL-E dall_e/encoder.py + utils.py) gives the same tokens as that
module, needs --trust-tokenizer, is also read as a state dict without trust, and drives
`maebench pretrain --method mae --target token`; a BEiT v2 VQ-KD state dict picks the nearest
code; the results row says which tokenizer made the targets."""
import math
import sys
import types
from collections import OrderedDict

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

from maebench import cli
from maebench.backbones import tokenizers
from maebench.errors import MaebenchError
from maebench.results import ResultsStore

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def dalle_classes():
    """Stand-ins for dall_e.utils.Conv2d, dall_e.encoder.EncoderBlock and Encoder with the
    release's attribute names and forward (attrs validation and fp16 left out)."""
    class Conv2d(nn.Module):
        def __init__(self, n_in, n_out, kw):
            super().__init__()
            self.n_in, self.n_out, self.kw = n_in, n_out, kw
            self.w = nn.Parameter(torch.randn(n_out, n_in, kw, kw) / math.sqrt(n_in * kw ** 2))
            self.b = nn.Parameter(torch.randn(n_out) * 0.1)

        def forward(self, x):
            return F.conv2d(x, self.w, self.b, padding=(self.kw - 1) // 2)

    class EncoderBlock(nn.Module):
        def __init__(self, n_in, n_out, n_layers):
            super().__init__()
            self.n_hid, self.post_gain = n_out // 4, 1 / n_layers ** 2
            self.id_path = Conv2d(n_in, n_out, 1) if n_in != n_out else nn.Identity()
            self.res_path = nn.Sequential(OrderedDict([
                ("relu_1", nn.ReLU()), ("conv_1", Conv2d(n_in, self.n_hid, 3)),
                ("relu_2", nn.ReLU()), ("conv_2", Conv2d(self.n_hid, self.n_hid, 3)),
                ("relu_3", nn.ReLU()), ("conv_3", Conv2d(self.n_hid, self.n_hid, 3)),
                ("relu_4", nn.ReLU()), ("conv_4", Conv2d(self.n_hid, n_out, 1))]))

        def forward(self, x):
            return self.id_path(x) + self.post_gain * self.res_path(x)

    class Encoder(nn.Module):
        def __init__(self, n_hid=8, n_blk_per_group=1, input_channels=3, vocab_size=16):
            super().__init__()
            self.device, self.requires_grad = torch.device("cpu"), False
            blk = lambda a, b: EncoderBlock(a, b, 4 * n_blk_per_group)   # noqa: E731
            r = range(n_blk_per_group)
            self.blocks = nn.Sequential(OrderedDict([
                ("input", Conv2d(input_channels, n_hid, 7)),
                ("group_1", nn.Sequential(OrderedDict([*[(f"block_{i + 1}", blk(n_hid, n_hid)) for i in r],
                                                       ("pool", nn.MaxPool2d(kernel_size=2))]))),
                ("group_2", nn.Sequential(OrderedDict([*[(f"block_{i + 1}", blk(n_hid if i == 0 else 2 * n_hid, 2 * n_hid)) for i in r],
                                                       ("pool", nn.MaxPool2d(kernel_size=2))]))),
                ("group_3", nn.Sequential(OrderedDict([*[(f"block_{i + 1}", blk(2 * n_hid if i == 0 else 4 * n_hid, 4 * n_hid)) for i in r],
                                                       ("pool", nn.MaxPool2d(kernel_size=2))]))),
                ("group_4", nn.Sequential(OrderedDict([*[(f"block_{i + 1}", blk(4 * n_hid if i == 0 else 8 * n_hid, 8 * n_hid)) for i in r]]))),
                ("output", nn.Sequential(OrderedDict([("relu", nn.ReLU()), ("conv", Conv2d(8 * n_hid, vocab_size, 1))]))),
            ]))

        def forward(self, x):
            return self.blocks(x)

    for cls, mod in ((Conv2d, "dall_e.utils"), (EncoderBlock, "dall_e.encoder"), (Encoder, "dall_e.encoder")):
        cls.__module__, cls.__qualname__ = mod, cls.__name__
    return Conv2d, EncoderBlock, Encoder


@pytest.fixture
def dalle_pickle(tmp_path, monkeypatch):
    """(encoder.pkl path, the module it holds): pickled while a fake `dall_e` package is
    importable, which is then removed, as on a machine without DALL-E's code."""
    conv, block, encoder = dalle_classes()
    pkg, enc_mod, utils = (types.ModuleType(n) for n in ("dall_e", "dall_e.encoder", "dall_e.utils"))
    utils.Conv2d, enc_mod.EncoderBlock, enc_mod.Encoder = conv, block, encoder
    for m in (pkg, enc_mod, utils):
        monkeypatch.setitem(sys.modules, m.__name__, m)
    torch.manual_seed(0)
    model = encoder(n_hid=8, n_blk_per_group=2, vocab_size=16).eval()
    path = tmp_path / "encoder.pkl"
    torch.save(model, path)
    for m in ("dall_e", "dall_e.encoder", "dall_e.utils"):
        monkeypatch.delitem(sys.modules, m)
    return path, model


def test_dalle_pickle_gives_the_release_modules_tokens(dalle_pickle):
    path, reference = dalle_pickle
    tok, meta = tokenizers.load(str(path), mean=MEAN, std=STD, trust=True)
    assert meta["kind"] == "dall-e" and tok.vocab_size == 16
    pixels = torch.rand(2, 3, 32, 32)
    imgs = (pixels - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    with torch.no_grad():
        want = reference(0.8 * pixels + 0.1).argmax(1).flatten(1)       # map_pixels, then argmax
    assert torch.equal(tok.tokenize(imgs, grid=(4, 4)), want)
    assert tok.tokenize(imgs, grid=(2, 2)).shape == (2, 4)            # resized to 16 px first


def test_dalle_pickle_needs_trust_and_its_state_dict_does_not(dalle_pickle, tmp_path):
    path, reference = dalle_pickle
    with pytest.raises(MaebenchError, match="--trust-tokenizer"):
        tokenizers.load(str(path), mean=MEAN, std=STD)
    torch.save(reference.state_dict(), tmp_path / "encoder_state.pth")
    tok, meta = tokenizers.load(str(tmp_path / "encoder_state.pth"), mean=MEAN, std=STD)
    imgs = torch.randn(1, 3, 32, 32)
    trusted, _ = tokenizers.load(str(path), mean=MEAN, std=STD, trust=True)
    assert meta["kind"] == "dall-e" and torch.equal(tok.tokenize(imgs, (4, 4)), trusted.tokenize(imgs, (4, 4)))


def test_vqkd_state_dict_tokens_are_the_nearest_normalised_code(tmp_path):
    from maebench.backbones.build import build_model
    torch.manual_seed(0)
    enc = build_model("beit", "vit-micro", img_size=16, patch_size=4, global_pool="avg",
                      vit_kwargs={"use_abs_pos_emb": True, "use_rel_pos_bias": False})
    task = nn.Sequential(nn.Linear(96, 96), nn.Tanh(), nn.Linear(96, 8))
    codes = F.normalize(torch.randn(32, 8), dim=-1)
    state = {**{f"encoder.{k}": v for k, v in enc.state_dict().items()},
             **{f"encode_task_layer.{k}": v for k, v in task.state_dict().items()},
             "quantize.embedding.weight": codes, "quantize.cluster_size": torch.ones(32),
             "decoder.cls_token": torch.zeros(1, 1, 96)}                  # decoder half: ignored
    torch.save({"model": state}, tmp_path / "vqkd.pth")
    tok, meta = tokenizers.load(str(tmp_path / "vqkd.pth"), mean=MEAN, std=STD)
    assert meta["kind"] == "beit-v2-vqkd" and tok.vocab_size == 32
    pixels = torch.rand(2, 3, 16, 16)
    imgs = (pixels - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    with torch.no_grad():
        feats = enc.fc_norm(enc.forward_features(pixels * 2 - 1)[:, 1:])
        want = (F.normalize(task(feats), dim=-1) @ codes.t()).argmax(-1)   # nearest unit code = largest cosine
    assert torch.equal(tok.tokenize(imgs, grid=(4, 4)), want)


def _noise_images(root):
    """root/train/{a,b}/: two 16 px noise images per class, enough for a pretraining step."""
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        d = root / "train" / cls
        d.mkdir(parents=True)
        for i in range(2):
            Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(d / f"{i}.png")


def test_dalle_format_tokenizer_drives_token_target_pretraining(dalle_pickle, tmp_path, capsys):
    from maebench.backbones import registry
    path, _ = dalle_pickle
    _noise_images(tmp_path / "data")
    common = ["pretrain", "--method", "mae", "--arch", "vit-micro", "--data", str(tmp_path / "data"),
              "--img-size", "16", "--patch-size", "4", "--epochs", "1", "--batch-size", "4", "--deterministic",
              "--target", "token", "--tokenizer", str(path), "--set", "decoder_embed_dim=32"]
    assert cli.main(common) == 1                                       # pickled: refused without trust
    assert "--trust-tokenizer" in capsys.readouterr().err
    assert cli.main([*common, "--trust-tokenizer"]) == 0
    (row,) = ResultsStore().rows(task="pretrain-mae")
    assert row.config["target"] == "token" and row.config["tokenizer_kind"] == "dall-e"
    assert row.backbone == "mae-token-dall-e-vit-micro-data" and registry.entry(row.backbone).family == "mae-token"
    assert registry.load_mae_state(row.backbone)["decoder_pred.weight"].shape == (16, 32)
    assert cli.main(["pretrain", "--method", "mae", "--target", "pixel", "--trust-tokenizer"]) == 2


def test_the_self_trained_dvae_is_labelled_in_the_row_and_the_backbone_name(tmp_path):
    from maebench.backbones.dvae import CONSTRUCTOR_KEYS, DiscreteVAE
    _noise_images(tmp_path / "data")
    dvae = DiscreteVAE(vocab_size=16, downsample=4, hidden=8, code_dim=8)
    meta = {"kind": "dvae", **{k: getattr(dvae, k) for k in CONSTRUCTOR_KEYS if hasattr(dvae, k)},
            "hidden": 8, "code_dim": 8, "num_resblocks": 1, "mean": list(MEAN), "std": list(STD)}
    torch.save({"model": dvae.state_dict(), "maebench": meta}, tmp_path / "tok.pth")
    assert cli.main(["pretrain", "--method", "mae", "--arch", "vit-micro", "--data", str(tmp_path / "data"),
                     "--img-size", "16", "--patch-size", "4", "--epochs", "1", "--batch-size", "4",
                     "--target", "dvae", "--tokenizer", str(tmp_path / "tok.pth"),
                     "--set", "decoder_embed_dim=32"]) == 0
    (row,) = ResultsStore().rows(task="pretrain-mae")
    assert row.config["tokenizer_kind"] == "maebench-dvae"
    assert row.backbone == "mae-token-selftrained-dvae-vit-micro-data"
