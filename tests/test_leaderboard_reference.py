"""reference.yaml holds exactly the numbers of mae-brief.md section 3, each mapped to the right
leaderboard column, and every measured column has at most one paper number to compare with."""
from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from maebench.leaderboards.columns import Column
from maebench.leaderboards.reference import load_reference

BRIEF = Path(__file__).resolve().parents[1] / ".." / "shared" / "mae-brief.md"
ARCH = {"B": "vit-base", "L": "vit-large", "H": "vit-huge"}


def _section3(text: str) -> str:
    return text[text.index("## 3."):text.index("## 4.")]


def _tables(text: str) -> list[tuple[list[str], list[list[str]]]]:
    """Markdown tables as (header, rows) of stripped cell strings."""
    tables, block = [], []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            block.append([c.strip() for c in line.strip().strip("|").split("|")])
        elif block:
            tables.append((block[0], [r for r in block[2:]]))
            block = []
    return tables


def _number(cell: str) -> float | None:
    cell = cell.rstrip("x")
    return None if cell in ("-", "") else float(cell)


def brief_numbers(text: str) -> dict[tuple[str, str, str], float]:
    """(source, row label, column label) -> value, for every number in section 3."""
    sec = _section3(text)
    out = {}
    for header, rows in _tables(sec):
        for row in rows:
            if header[0] == "encoder":                                   # Table 2
                label, cols = f"{row[0]}, decoder depth {row[1]}", range(2, len(header))
            else:
                label, cols = row[0], range(1, len(header))
            for j in cols:
                value = _number(row[j])
                if value is None:
                    continue
                source = {"method": "Table 3", "target": "Table 7", "encoder": "Table 2"}.get(header[0])
                if header[0] == "pretraining":
                    source = "Table 5" if header[j].startswith("mIoU") else "Table 4"
                out[(source, label, header[j])] = value
    prose = " ".join(sec.split())
    num = r"(\d+\.\d)"

    def grab(pattern: str) -> tuple[float, ...]:
        m = re.search(pattern, prose)
        assert m, f"brief no longer says: {pattern}"
        return tuple(float(g) for g in m.groups())

    t1 = grab(rf"targets pixel {num}/{num}, norm pixel {num}/{num}, PCA {num}/{num}, dVAE token {num}/{num}")
    t1 += grab(rf"masking random-75 {num}/{num}, block-50 {num}/{num}, block-75 {num}/{num}, grid-75 {num}/{num}; "
               rf"encoder with mask tokens {num}/{num}")
    labels = ["target: pixel", "target: norm pixel", "target: PCA", "target: dVAE token", "mask: random 75",
              "mask: block 50", "mask: block 75", "mask: grid 75", "encoder with mask tokens"]
    for i, label in enumerate(labels):
        out[("Table 1", label, "ft")], out[("Table 1", label, "lin")] = t1[2 * i], t1[2 * i + 1]
    for col, v in zip(("ViT-B", "ViT-L", "ViT-H"), grab(rf"Table 12\): MAE B/L/H {num}/{num}/{num}")):
        out[("Table 12", "MAE", col)] = v
    fig9 = grab(rf"0 blocks {num}, MLP of the last block only {num}, 1 block {num}, 4-6 blocks close to full {num}")
    for col, v in zip(("0 blocks", "MLP of the last block", "1 block", "all 24 blocks (full)"), fig9):
        out[("Fig. 9", "MAE ViT-L", col)] = v
    orig, recipe, base = grab(rf"Scratch ViT-L: {num} \(original ViT\), {num} \(paper's recipe\); MAE baseline {num}")
    out[("Sec. 4 baseline", "scratch ViT-L", "original ViT")] = orig
    out[("Sec. 4 baseline", "scratch ViT-L", "paper's recipe")] = recipe
    out[("Sec. 4 baseline", "MAE baseline", "ft")] = base
    return out


@pytest.fixture(scope="module")
def ref():
    return load_reference()


@pytest.mark.skipif(not BRIEF.is_file(), reason="../shared/mae-brief.md is not in this checkout")
def test_every_reference_number_matches_the_brief_and_none_is_missing(ref):
    expected = brief_numbers(BRIEF.read_text())
    keys = [(e.source, e.label, e.column) for e in ref.entries]
    assert not [k for k, n in Counter(keys).items() if n > 1], "an entry is listed twice"
    got = {(e.source, e.label, e.column): e.value for e in ref.entries}
    assert set(got) - set(expected) == set(), "numbers in reference.yaml that the brief does not state"
    assert set(expected) - set(got) == set(), "numbers in the brief missing from reference.yaml"
    assert got == expected


def test_source_is_recorded(ref):
    assert ref.paper["arxiv"] == "2111.06377"
    table7 = [e for e in ref.entries if e.source == "Table 7"]
    assert table7 and all("Table 6 in v1" in e.citation for e in table7)
    assert {e.source for e in ref.entries} == {"Table 1", "Table 2", "Table 3", "Table 4", "Table 5",
                                               "Table 7", "Table 12", "Fig. 9", "Sec. 4 baseline"}


def test_table_columns_map_to_the_right_size_task_and_metric(ref):
    metric_of = {"APbox": ("coco", "bbox/AP", "coco"), "APmask": ("coco", "segm/AP", "coco"),
                 "mIoU": ("ade20k", "mIoU", "ade20k"), "IN1K": ("finetune", "top1", "imagenet"),
                 "COCO": ("coco", "bbox/AP", "coco"), "ADE": ("ade20k", "mIoU", "ade20k")}
    for e in ref.entries:
        if e.source in ("Table 3", "Table 4", "Table 5", "Table 7", "Table 12"):
            size = re.search(r"(?:ViT-|\s)([BLH])\b", " " + e.column).group(1)
            assert e.arch == ARCH[size], e
            first = e.column.split()[0]
            task = metric_of.get(first, ("finetune" if e.source == "Table 3" else "linprobe", "top1", "imagenet"))
            assert (e.task, e.metric, e.dataset) == task, e


def test_each_measured_column_has_one_paper_number(ref):
    """delta_target is unambiguous for every leaderboard entry a family match may pick, and
    picks the headline recipe over a variant (448 px, 800 epochs), MoCo v3 over DINO and
    MAE's dVAE-token row over BEiT (both mae-token in the registry's families)."""
    for e in ref.leaderboard_entries():
        if e.by_family:
            assert ref.delta_target(e.family, e.arch, e.lb_column) is not None, e
    target = ref.delta_target
    ft_in1k = Column("finetune", "top1", "imagenet")
    assert target("mae-norm-pixel", "vit-large", ft_in1k).value == 85.9
    assert target("mae-norm-pixel", "vit-huge", ft_in1k).value == 86.9
    assert target("contrastive", "vit-base", ft_in1k).value == 83.2
    assert target("mae-token", "vit-base", ft_in1k).value == 83.6
    assert target("mae-pixel", "vit-large", ft_in1k).value == 85.1
    assert target("mae-pixel", "vit-large", Column("linprobe", "top1", "imagenet")).value == 73.5
    assert target("mae-pixel", "vit-large", Column("partial", "top1", "imagenet", 1.0)).value == 81.0
    assert target("mae-token", "vit-base", Column("coco", "bbox/AP", "coco")).value == 50.3
    assert target("supervised", "vit-large", Column("ade20k", "mIoU", "ade20k")).value == 49.9
    assert target("mae-norm-pixel", "vit-tiny", ft_in1k) is None
    assert target("mae-norm-pixel", "vit-large", Column("finetune", "top1", "shapes")) is None


def test_registry_paper_keys_pick_the_row(ref):
    ft_in1k = Column("finetune", "top1", "imagenet")
    assert ref.delta_target("mae-token", "vit-base", ft_in1k, ["beit/vit-b"]).value == 83.2
    assert ref.delta_target("contrastive", "vit-base", ft_in1k, ["dino/vit-b"]).value == 82.8
    assert ref.delta_target("mae-norm-pixel", "vit-huge", ft_in1k, ["mae/vit-h", "norm-pixel/vit-h"]).value == 86.9
    assert ref.delta_target("mae-norm-pixel", "vit-large", Column("linprobe", "top1", "imagenet"),
                            ["norm-pixel/vit-l"]).value == 75.8
    assert ref.delta_target("supervised", "vit-base", ft_in1k, ["supervised/vit-b"]) is None   # not in the brief
    methods = {e.method for e in ref.entries}
    assert set(ref.catalogue_rows.values()) <= methods


CATALOGUE = Path(__file__).resolve().parents[1] / "backbones" / "catalogue.yaml"


@pytest.mark.skipif(not CATALOGUE.is_file(), reason="backbones/catalogue.yaml is not in this checkout")
def test_every_catalogue_paper_key_names_a_reference_row(ref):
    import yaml
    catalogue = yaml.safe_load(CATALOGUE.read_text())["backbones"]
    shown = {(e.method, e.arch) for e in ref.leaderboard_entries()}
    for name, spec in catalogue.items():
        for key in spec.get("paper") or []:
            found = ref.methods_for([key])
            assert found and found <= shown, f"{name}: paper key {key} has no row in reference.yaml"
