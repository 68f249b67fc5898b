"""The dVAE tokenizer (backbones/dvae.py) and the MAE token target end to end."""
import math

import numpy as np
import pytest
import torch
from PIL import Image

from maebench.backbones.dvae import DiscreteVAE, load_tokenizer
from maebench import cli
from maebench.errors import MaebenchError, UsageError




def test_temperature_anneals_exponentially_from_start_to_end():
    v = DiscreteVAE(vocab_size=16, downsample=2, hidden=8, code_dim=8, tau_start=1.0, tau_end=1 / 16,
                    anneal_steps=100)
    assert v.temperature(0) == pytest.approx(1.0)
    assert v.temperature(50) == pytest.approx(math.sqrt(1 / 16))     # geometric midpoint
    assert v.temperature(100) == pytest.approx(1 / 16)
    assert v.temperature(10_000) == pytest.approx(1 / 16)
    taus = [v.temperature(s) for s in range(0, 101, 10)]
    assert all(a > b for a, b in zip(taus, taus[1:]))


def test_training_forward_advances_the_anneal_and_inference_does_not():
    torch.manual_seed(0)
    v = DiscreteVAE(vocab_size=16, downsample=2, hidden=8, code_dim=8, anneal_steps=10)
    x = torch.randn(2, 3, 8, 8)
    loss, recon, logs = v(x)
    assert recon.shape == x.shape and int(v.step) == 1 and logs["tau"].item() == pytest.approx(1.0)
    loss.backward()
    with torch.no_grad():
        v(x)
    v.eval()
    v.tokenize(x)
    assert int(v.step) == 1
    assert "step" in v.state_dict()                  # the anneal position resumes with the checkpoint


def test_codebook_size_and_token_grid():
    v = DiscreteVAE(vocab_size=24, downsample=4, hidden=8, code_dim=8)
    x = torch.randn(3, 3, 16, 16)
    ids = v.tokenize(x)
    assert ids.shape == (3, 16) and ids.dtype == torch.long and 0 <= ids.min() and ids.max() < 24
    assert v.tokenize(x, grid=(2, 2)).shape == (3, 4)          # resized to 2 x 4 = 8 px first
    assert v.decode(ids, (4, 4)).shape == (3, 3, 16, 16)
    with pytest.raises(UsageError, match="power of two"):
        DiscreteVAE(downsample=6)


def test_load_tokenizer_refuses_other_files(tmp_path):
    torch.save({"model": {}}, tmp_path / "x.pth")
    with pytest.raises(MaebenchError, match="not a maebench dVAE tokenizer"):
        load_tokenizer(str(tmp_path / "x.pth"))
    with pytest.raises(MaebenchError, match="tokenizer 'nope' not found"):
        load_tokenizer("nope")


def test_pretrain_dvae_then_mae_with_token_targets(tmp_path, capsys):
    from maebench.backbones import registry
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        d = tmp_path / "data" / "train" / cls
        d.mkdir(parents=True)
        for i in range(4):
            Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(d / f"{i}.png")
    common = ["--arch", "vit-micro", "--data", str(tmp_path / "data"), "--img-size", "16", "--patch-size", "4",
              "--epochs", "1", "--batch-size", "4", "--deterministic"]
    assert cli.main(["pretrain", "--method", "dvae", *common, "--name", "tok", "--set", "vocab_size=16",
                     "--set", "hidden=8", "--set", "code_dim=8", "--set", "downsample=4"]) == 0
    tok, meta = load_tokenizer("tok")
    assert tok.vocab_size == 16 and meta["kind"] == "dvae" and meta["img_size"] == 16
    assert cli.main(["pretrain", "--method", "mae", *common, "--name", "mae-tok", "--target", "dvae",
                     "--tokenizer", "tok", "--set", "decoder_embed_dim=32"]) == 0
    e = registry.entry("mae-tok")
    assert e.family == "mae-token"
    assert registry.load_mae_state("mae-tok")["decoder_pred.weight"].shape == (16, 32)
    # a tokenizer trained on other normalisation is refused before training
    assert cli.main(["pretrain", "--method", "mae", *common, "--target", "dvae", "--tokenizer", "tok",
                     "--set", "mean=[0.5,0.5,0.5]"]) == 1
    assert "would not match" in capsys.readouterr().err
