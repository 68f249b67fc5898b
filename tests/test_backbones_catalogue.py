"""The catalogue is consistent: one architecture table (backbones/vit.py builds from it), valid families and paper
rows, addresses that match their file names, parameter counts equal to the models'."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import yaml

from maebench.backbones import catalogue as cat
from maebench.backbones.formats import FORMATS
from maebench.commands.backbones import FORMAT_CHOICES

REPO = Path(__file__).resolve().parents[1]


def test_the_vit_is_built_from_the_one_architecture_table():
    from maebench.backbones import vit
    table = yaml.safe_load(cat.CATALOGUE_PATH.read_text())["architectures"]
    assert {k: (v["embed_dim"], v["depth"], v["num_heads"], v["patch_size"]) for k, v in table.items()} \
        == {a: cat.arch_dims(a) for a in cat.arch_names()}
    assert not hasattr(vit, "ARCHS")
    for arch in ("vit-micro", "vit-tiny"):
        d, depth, heads, patch = cat.arch_dims(arch)
        m = vit.create_vit(arch, img_size=4 * patch)
        assert (m.embed_dim, len(m.blocks), m.blocks[0].attn.num_heads, m.patch_embed.patch_size[0]) == (d, depth, heads, patch)


def test_cli_format_choices_equal_converter_formats():
    assert tuple(FORMAT_CHOICES) == tuple(FORMATS)


def test_required_names_present():
    names = set(cat.catalogue())
    assert {"mae-vit-b", "mae-vit-l", "mae-vit-h", "mae-vit-l-full", "mocov3-vit-b", "mocov3-vit-l", "beit-vit-b",
            "beit-vit-l", "supervised-vit-b", "supervised-vit-l", "scratch-vit-t", "scratch-vit-s", "scratch-vit-b",
            "scratch-vit-l"} <= names


@pytest.mark.parametrize("name,e", list(cat.catalogue().items()))
def test_entry_fields(name, e):
    assert e["family"] in cat.FAMILIES
    cat.arch_dims(e["arch"])
    assert len(e["mean"]) == 3 and len(e["std"]) == 3
    rows = yaml.safe_load((REPO / "leaderboards" / "reference.yaml").read_text())["catalogue_rows"]
    size = {"vit-base": "vit-b", "vit-large": "vit-l", "vit-huge": "vit-h"}.get(e["arch"])
    for key in e["paper"]:
        row, _, s = key.partition("/")
        assert row in rows and s == size, key
    if e["family"] == "scratch":
        assert not e.get("url") and not e.get("file")
        return
    if e.get("model") == "timm":                  # timm-built: the release layout timm's filter reads
        from maebench.backbones.timm_family import FORMAT_NOTES
        assert e["format"] in FORMAT_NOTES and e["timm"]
    else:
        assert e["format"] in FORMATS and e["format"] != "auto"
    assert e.get("source")
    if e.get("url"):
        assert re.fullmatch(r"https://[\w./-]+", e["url"]) and e["url"].rsplit("/", 1)[1] == e["file"]
    else:
        assert "see " in e["source"]  # an address we are not sure of is never invented


def test_parameter_counts_equal_the_models():
    from maebench.backbones.build import build_model
    seen = set()
    for e in cat.catalogue().values():
        if e.get("model") == "timm":
            continue                                   # counted by timm: tests/test_backbones_timm_families.py
        key = (e["arch"], e["patch_size"], e["img_size"], e.get("model", "vit"), repr(e.get("vit_kwargs")))
        if key in seen:
            continue
        seen.add(key)
        skip = {"weight_init": "skip"} if e.get("model", "vit") == "vit" else {}
        with torch.device("meta"):
            m = build_model(e.get("model", "vit"), e["arch"], img_size=e["img_size"], patch_size=e["patch_size"],
                            vit_kwargs={**(e.get("vit_kwargs") or {}), **skip})
        assert cat.param_count(e["arch"], patch_size=e["patch_size"], img_size=e["img_size"],
                               model=e.get("model", "vit"), vit_kwargs=e.get("vit_kwargs")) == \
            sum(p.numel() for p in m.parameters()), key
