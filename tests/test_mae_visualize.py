"""Reconstruction figures: de-normalisation, the four panels, `maebench visualize` and its errors."""
import numpy as np
import pytest
import torch
from PIL import Image

from maebench.backbones.reconstruction import PANELS, reconstruct
from maebench.backbones.mae import create_mae
from maebench import cli
from maebench.torch_io import save_atomic

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)




def micro(target="norm-pixel"):
    torch.manual_seed(0)
    return create_mae("vit-micro", img_size=16, patch_size=4, decoder_embed_dim=32, decoder_depth=1,
                      decoder_num_heads=1, target=target)


def normalised(x01):
    return (x01 - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


@pytest.mark.parametrize("target", ["pixel", "norm-pixel"])
def test_a_perfect_prediction_reconstructs_the_original(target, monkeypatch):
    """If the decoder predicted its target exactly, de-normalising (with each patch's own mean
    and std for norm-pixel) must give back the image; the masked panel greys removed patches."""
    m = micro(target)
    x01 = torch.rand(2, 3, 16, 16)
    imgs = normalised(x01)
    monkeypatch.setattr(m, "forward_decoder", lambda latent, ids_restore: m.patch_targets(imgs))
    noise = torch.rand(2, 16)
    panels = reconstruct(m, imgs, mean=MEAN, std=STD, mask_ratio=0.75, noise=noise)
    assert list(panels) == list(PANELS)
    assert torch.allclose(panels["reconstruction"], x01, atol=1e-4)
    assert torch.allclose(panels["reconstruction + visible"], x01, atol=1e-4)
    assert torch.allclose(panels["original"], x01, atol=1e-5)
    removed = m.unpatchify(m(imgs, 0.75, noise)[2].unsqueeze(-1).repeat(1, 1, 48)).bool()
    grey = torch.tensor(MEAN).view(1, 3, 1, 1).expand_as(x01)
    assert torch.allclose(panels["masked"][removed], grey[removed], atol=1e-6)
    assert torch.allclose(panels["masked"][~removed], x01[~removed], atol=1e-5)


def test_pasting_keeps_the_visible_patches_of_a_wrong_prediction(monkeypatch):
    m = micro("pixel")
    imgs = normalised(torch.rand(1, 3, 16, 16))
    monkeypatch.setattr(m, "forward_decoder", lambda latent, ids_restore: torch.zeros(1, 16, 48))
    noise = torch.rand(1, 16)
    p = reconstruct(m, imgs, mean=MEAN, std=STD, mask_ratio=0.75, noise=noise)
    keep = noise.argsort(1)[0, :4]
    for i in keep.tolist():
        r, c = divmod(i, 4)
        cell = (slice(None), slice(None), slice(4 * r, 4 * r + 4), slice(4 * c, 4 * c + 4))
        assert torch.allclose(p["reconstruction + visible"][cell], p["original"][cell])


def register(tmp_path, name, state, meta):
    from maebench.backbones import registry
    path = tmp_path / f"{name}.pth"
    save_atomic({"model": state, "maebench": meta}, path)
    registry.register(name, path, fmt="maebench", force=True, family=meta["family"])


def test_visualize_writes_one_png_per_image_and_refuses_encoder_only_backbones(tmp_path, capsys):
    m = micro()
    meta = {"arch": "vit-micro", "patch_size": 4, "img_size": 16, "in_chans": 3, "family": "mae-norm-pixel",
            "target": "norm-pixel", "decoder_num_heads": 1, "mask_ratio": 0.75}
    register(tmp_path, "mae-vis", m.state_dict(), meta)
    images = tmp_path / "images" / "sub"
    images.mkdir(parents=True)
    for i in range(2):
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(images / f"{i}.png")
    out = tmp_path / "out"
    assert cli.main(["visualize", "--backbone", "mae-vis", "--images", str(tmp_path / "images"),
                     "--out", str(out), "--seed", "3"]) == 0
    pngs = sorted(p.name for p in out.iterdir())
    assert pngs == ["sub_0.png", "sub_1.png"]
    with Image.open(out / "sub_0.png") as im:
        assert im.width > 3 * im.height                       # four panels side by side
    first = (out / "sub_0.png").read_bytes()
    assert cli.main(["visualize", "--backbone", "mae-vis", "--images", str(tmp_path / "images"),
                     "--out", str(out), "--seed", "3"]) == 0
    assert (out / "sub_0.png").read_bytes() == first          # same seed, same masks, same figure
    assert cli.main(["visualize", "--backbone", "mae-vis", "--images", str(tmp_path / "images"), "--out",
                     str(tmp_path / "one"), "--per-folder", "1", "--grid", str(tmp_path / "grid.png")]) == 0
    assert [p.name for p in (tmp_path / "one").iterdir()] == ["sub_0.png"]
    with Image.open(tmp_path / "grid.png") as im:
        assert im.width > 3 * im.height

    encoder = {k: v for k, v in m.state_dict().items() if not k.startswith("decoder") and k != "mask_token"}
    register(tmp_path, "enc-only", encoder, meta)
    capsys.readouterr()
    assert cli.main(["visualize", "--backbone", "enc-only", "--images", str(tmp_path / "images")]) == 1
    err = capsys.readouterr().err.strip()
    assert "has no MAE decoder" in err and len(err.splitlines()) == 1
