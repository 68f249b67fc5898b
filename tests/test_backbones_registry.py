"""Registry behaviour: refusals leave nothing behind, safe loading, --force, missing weights,
removal, loading options (pooling, channels, grid), the registry lock."""
from __future__ import annotations

import argparse
import json
import socket
import threading
import time

import pytest
import torch
from test_backbones_support import ARCH, DIM, IMG, PATCH, features, home, images, mae_decoder, save, tiny_vit  # noqa: F401

from maebench.backbones import registry, registry_file
from maebench.backbones.pos_embed import resize_pos_embed
from maebench.errors import MaebenchError, UsageError


class Payload:
    """A custom class: unpickling it needs more than weights_only=True allows."""

    def __init__(self):
        self.note = "arbitrary object"


@pytest.fixture
def seeded(home, tmp_path):
    """A registry that already holds one backbone, so its file exists for byte comparison."""
    registry.register("first", save({"model": tiny_vit().state_dict()}, tmp_path / "first.pth"))
    return home


def _snapshot(home):
    return (home / "registry.json").read_bytes(), sorted(p.name for p in (home / "weights").iterdir())


def test_wrong_architecture_refused_and_nothing_written(seeded, tmp_path):
    before = _snapshot(seeded)
    path = save({"model": tiny_vit().state_dict()}, tmp_path / "micro.pth")
    with pytest.raises(MaebenchError) as err:
        registry.register("wrong", path, arch="vit-tiny", patch_size=PATCH, img_size=IMG)
    msg = str(err.value)
    assert str(path) in msg and "\n" not in msg
    assert "does not fit vit-tiny" in msg and "cls_token [1, 1, 96] (expected [1, 1, 192])" in msg
    assert f"look like {ARCH}" in msg
    assert _snapshot(seeded) == before


def test_extra_block_refused_naming_it(seeded, tmp_path):
    before = _snapshot(seeded)
    sd = dict(tiny_vit().state_dict())
    sd["blocks.4.norm1.weight"] = torch.ones(DIM)
    with pytest.raises(MaebenchError, match=r"unexpected keys blocks\.4\.norm1\.weight"):
        registry.register("deeper", save(sd, tmp_path / "deeper.pth"), arch=ARCH)
    del sd["blocks.4.norm1.weight"], sd["blocks.3.mlp.fc2.bias"]
    with pytest.raises(MaebenchError, match=r"missing keys blocks\.3\.mlp\.fc2\.bias"):
        registry.register("holed", save(sd, tmp_path / "holed.pth"))
    assert _snapshot(seeded) == before


@pytest.mark.parametrize("cut", [0.5, 0.05])
def test_truncated_file_refused(seeded, tmp_path, cut):
    before = _snapshot(seeded)
    data = (tmp_path / "first.pth").read_bytes()
    path = tmp_path / "truncated.pth"
    path.write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(MaebenchError, match=r"truncated or corrupt") as err:
        registry.register("broken", path)
    assert str(path) in str(err.value)
    assert _snapshot(seeded) == before
    assert "broken" not in registry.names()


def test_pickle_with_custom_class_needs_trust(seeded, tmp_path):
    before = _snapshot(seeded)
    src = tiny_vit()
    path = save({"model": src.state_dict(), "extra": Payload()}, tmp_path / "pickled.pth")
    with pytest.raises(MaebenchError) as err:
        registry.register("pickled", path)
    msg = str(err.value)
    assert "refused" in msg and "Payload" in msg and "--trust-checkpoint" in msg
    assert _snapshot(seeded) == before
    e = registry.register("pickled", path, trust=True)
    model, _ = registry.load(e.name)
    torch.testing.assert_close(features(model, images()), features(src, images()))


def test_training_args_namespace_is_safe(home, tmp_path):
    """MAE/DeiT training checkpoints carry argparse "args"; that alone needs no trust."""
    ckpt = {"model": tiny_vit().state_dict(), "epoch": 3, "args": argparse.Namespace(lr=1e-3, model="x")}
    assert registry.register("trained", save(ckpt, tmp_path / "t.pth")).format == "mae"


def test_reregister_needs_force(seeded, tmp_path):
    old = registry.entry("first")
    path = save({"model": tiny_vit(seed=9).state_dict()}, tmp_path / "other.pth")
    with pytest.raises(MaebenchError, match="already registered.*--force"):
        registry.register("first", path)
    assert registry.entry("first").sha256 == old.sha256
    new = registry.register("first", path, force=True)
    assert new.sha256 != old.sha256 and new.source_path == str(path.resolve())
    model, _ = registry.load("first")
    torch.testing.assert_close(features(model, images()), features(tiny_vit(seed=9), images()))


def test_missing_catalogued_weights_say_file_url_and_command(home, monkeypatch):
    def no_network(*a, **k):
        raise AssertionError("network access")
    monkeypatch.setattr(socket, "socket", no_network)
    with pytest.raises(MaebenchError) as err:
        registry.load("mae-vit-b")
    msg = str(err.value)
    assert str(home / "weights" / "mae-vit-b.pth") in msg
    assert "https://dl.fbaipublicfiles.com/mae/pretrain/mae_pretrain_vit_base.pth" in msg
    assert "maebench backbones register mae-vit-b --checkpoint PATH/mae_pretrain_vit_base.pth" in msg
    (home / "weights").mkdir(parents=True)
    (home / "weights" / "mae_pretrain_vit_base.pth").write_bytes(b"downloaded")
    with pytest.raises(MaebenchError, match="found .*mae_pretrain_vit_base.pth, so run: maebench backbones register "
                                            "mae-vit-b --checkpoint .*weights/mae_pretrain_vit_base.pth"):
        registry.load("mae-vit-b")
    with pytest.raises(MaebenchError, match="no public download"):
        registry.load("mocov3-vit-l")


@pytest.fixture
def micro_catalogue(monkeypatch):
    """The real catalogue plus one CPU-sized catalogued backbone."""
    from maebench.backbones import catalogue as cat_mod
    real = cat_mod.catalogue()
    extra = {"arch": ARCH, "patch_size": PATCH, "img_size": IMG, "mean": [0.5] * 3, "std": [0.5] * 3,
             "family": "mae-pixel", "format": "mae", "file": "micro.pth", "url": "https://example.org/micro.pth",
             "source": "test", "paper": ["pixel/vit-b"], "has_decoder": False, "notes": "catalogued"}
    monkeypatch.setattr(registry, "catalogue", lambda: {**real, "micro-cat": dict(extra)})
    return extra


def test_catalogued_backbone_install_load_remove(home, tmp_path, micro_catalogue):
    e = registry.entry("micro-cat")
    assert not e.user and not e.present and e.weights is None
    with pytest.raises(MaebenchError, match="https://example.org/micro.pth"):
        registry.load("micro-cat")
    src = tiny_vit()
    with pytest.raises(UsageError, match="catalogued with arch"):
        registry.register("micro-cat", save({"model": src.state_dict()}, tmp_path / "m.pth"), arch="vit-tiny")
    moco = {"state_dict": {f"module.base_encoder.{k}": v for k, v in src.state_dict().items()}}
    with pytest.raises(MaebenchError, match="reads as a mocov3 checkpoint, but 'micro-cat' is catalogued as mae"):
        registry.register("micro-cat", save(moco, tmp_path / "moco.pth"))
    e = registry.register("micro-cat", tmp_path / "m.pth")
    assert not e.user and e.present and e.paper == ["pixel/vit-b"] and e.mean == (0.5, 0.5, 0.5)
    model, _ = registry.load("micro-cat")
    torch.testing.assert_close(features(model, images()), features(src, images()))
    assert registry.remove("micro-cat") == home / "weights" / "micro-cat.pth"
    assert not (home / "weights" / "micro-cat.pth").exists()
    assert "micro-cat" in registry.names() and not registry.entry("micro-cat").present


def test_remove_user_entry_and_refusals(seeded):
    weights = registry.entry("first").weights
    assert weights.is_file()
    registry.remove("first")
    assert not weights.exists() and "first" not in registry.names()
    with pytest.raises(UsageError, match="unknown backbone 'first'"):
        registry.remove("first")
    with pytest.raises(UsageError, match="catalogue entry"):
        registry.remove("mae-vit-b")


def test_registered_file_deleted_says_register_again(seeded):
    registry.entry("first").weights.unlink()
    with pytest.raises(MaebenchError, match="register it again: maebench backbones register first --checkpoint .* --force"):
        registry.load("first")


def test_unknown_and_invalid_names(home, tmp_path):
    with pytest.raises(UsageError, match="did you mean: mae-vit-b"):
        registry.entry("mae-vit-bb")
    with pytest.raises(UsageError, match="invalid backbone name"):
        registry.register("Bad Name", tmp_path / "x.pth")
    with pytest.raises(UsageError, match="random initialisation"):
        registry.register("scratch-vit-b", tmp_path / "x.pth")
    with pytest.raises(MaebenchError, match="no such checkpoint file"):
        registry.register("ok", tmp_path / "absent.pth")
    path = save({"model": tiny_vit().state_dict()}, tmp_path / "m.pth")
    with pytest.raises(UsageError, match=f"image size 18 is not a multiple of patch size {PATCH}"):
        registry.register("ok", path, img_size=18)


def test_architecture_read_off_the_weights(home, tmp_path):
    e = registry.register("auto", save({"model": tiny_vit().state_dict()}, tmp_path / "a.pth"))
    assert (e.arch, e.patch_size, e.img_size, e.in_chans) == (ARCH, PATCH, IMG, 3)
    odd = {"patch_embed.proj.weight": torch.zeros(40, 3, 4, 4), "cls_token": torch.zeros(1, 1, 40),
           "blocks.0.norm1.weight": torch.ones(40)}
    with pytest.raises(UsageError, match="width 40, depth 1 matches none.*pass --arch"):
        registry.register("odd", save(odd, tmp_path / "odd.pth"))


def test_avg_pooling_drops_norm_and_starts_fc_norm(seeded):
    token, _ = registry.load("first")
    avg, _ = registry.load("first", global_pool="avg", num_classes=5)
    assert isinstance(avg.norm, torch.nn.Identity)
    assert torch.equal(avg.fc_norm.weight, torch.ones(DIM)) and torch.equal(avg.fc_norm.bias, torch.zeros(DIM))
    assert avg.head.weight.shape == (5, DIM) and avg.head.weight.std() < 0.05 and torch.all(avg.head.bias == 0)
    for k, v in token.state_dict().items():
        if k.startswith(("blocks.", "patch_embed.", "cls_token", "pos_embed")):
            assert torch.equal(avg.state_dict()[k], v), k


def test_single_channel_input_sums_patch_weights(seeded):
    rgb, _ = registry.load("first")
    gray, e = registry.load("first", in_chans=1)
    x = images(chans=1)
    torch.testing.assert_close(features(gray, x), features(rgb, x.expand(-1, 3, -1, -1)), rtol=1e-4, atol=1e-5)


def test_scratch_and_patch_size_rules(seeded):
    model, e = registry.load("scratch-vit-t", img_size=32, patch_size=8)
    assert e.family == "scratch" and model.patch_embed.grid_size == (4, 4)
    assert model.pos_embed.std() > 0  # initialised, not empty memory
    with pytest.raises(UsageError, match="patch size 4, not 8"):
        registry.load("first", patch_size=8)


def test_register_at_another_image_size_resizes_pos_embed(home, tmp_path):
    src = tiny_vit()
    e = registry.register("big", save({"model": src.state_dict()}, tmp_path / "s.pth"), img_size=2 * IMG)
    assert e.img_size == 2 * IMG
    stored = torch.load(e.weights, weights_only=True)["model"]["pos_embed"]
    torch.testing.assert_close(stored, resize_pos_embed(src.pos_embed.detach(), (8, 8), antialias=False))


def test_load_meta_keeps_pretraining_metadata(home, tmp_path):
    src = tiny_vit()
    meta = {"arch": ARCH, "patch_size": PATCH, "img_size": IMG, "family": "mae-token", "target": "dvae",
            "decoder_num_heads": 4}
    registry.register("run", save({"model": {**src.state_dict(), **mae_decoder()}, "maebench": meta}, tmp_path / "r.pth"))
    got = registry.load_meta("run")
    assert got["target"] == "dvae" and got["decoder_num_heads"] == 4 and got["family"] == "mae-token"
    assert got["source_format"] == "maebench" and got["model"] == "vit"


def test_corrupt_registry_is_a_clear_error(home):
    home.mkdir(parents=True)
    (home / "registry.json").write_text("{not json")
    with pytest.raises(MaebenchError, match="registry.json: unreadable registry"):
        registry.names()


def test_registry_lock_serialises_writers(home):
    """Two read-modify-write cycles that overlap in time both survive."""
    def add(name):
        with registry_file.locked():
            data = registry_file.read()
            time.sleep(0.2)  # the other writer would read the old registry here without the lock
            data["backbones"][name] = {"arch": ARCH}
            registry_file.write(data)
    threads = [threading.Thread(target=add, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert set(json.loads((home / "registry.json").read_text())["backbones"]) == {"a", "b"}
