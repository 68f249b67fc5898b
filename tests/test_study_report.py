"""The study report's parts against independent numbers: the paper's own Table 1 makes every claim
agree (and a table that says otherwise makes it disagree); reference.yaml's study numbers equal
the brief-checked Table 1 entries where both state a row; Table 1e's augmentations are the crops
they say; `--tag` labels a row without changing its recipe."""
from __future__ import annotations

import pytest

from maebench.cli import main
from maebench.leaderboards.reference import load_reference, study_reference
from maebench.results import ResultsStore, recipe
from maebench.study import builtin_path, claims, read
from maebench.study.tables import Cell, StudyTables, Table, TableRow

PROTOCOLS = ("finetune", "linprobe")


def paper_tables(name: str, *, tie_free_gflops: bool = True) -> StudyTables:
    """The built-in study's tables filled with the paper's numbers as if they were ours."""
    study = read(builtin_path(name))
    ref = study_reference(study.paper)["ablations"]
    tables = []
    for ab in study.ablations:
        rows = []
        for r in ab.rows:
            numbers = ref[ab.name].get(r.paper, {}) if r.paper else {}
            row = TableRow(r.label, r.variant, r.variant == "base", r.paper,
                           ours={p: Cell((numbers[c],)) if c in numbers else None
                                 for p, c in zip(PROTOCOLS, ("ft", "lin"))})
            row.gflops = numbers.get("flops", 1.0) if tie_free_gflops else None
            rows.append(row)
        tables.append(Table(ab.name, rows, next(t for t in rows if t.default)))
    return StudyTables(tables, PROTOCOLS, None, None)


def verdicts(st: StudyTables, tie: float) -> dict[str, str]:
    old, claims.TIE = claims.TIE, {p: tie for p in PROTOCOLS}
    try:
        return {v.claim: v.verdict for v in claims.check(st)}
    finally:
        claims.TIE = old


def test_the_papers_own_table1_agrees_with_every_claim_it_holds_numbers_for():
    got = verdicts(paper_tables("table1"), tie=0.1)           # ImageNet-scale numbers: a tenth of a point is signal
    assert got.pop("A high masking ratio (75%) is best for both fine-tuning and linear probing.") == "not measured"
    assert set(got.values()) == {"agrees"}, got


def test_the_papers_figure5_points_agree_that_a_high_ratio_is_best():
    got = verdicts(paper_tables("mask-ratio"), tie=0.1)          # the paper states fine-tuning at 75% alone
    assert got["A high masking ratio (75%) is best for both fine-tuning and linear probing."] == \
        "agrees (linprobe only measured)"
    assert got["Random masking beats block-wise and grid masking."] == "not measured"


def test_numbers_that_contradict_a_claim_make_it_disagree_and_a_tie_never_agrees():
    st = paper_tables("table1")
    sampling = next(t for t in st.tables if t.name == "mask sampling")
    grid = next(r for r in sampling.rows if r.label == "grid 75")
    grid.ours["linprobe"] = Cell((80.0,))                          # grid now beats random's 73.5
    target = next(t for t in st.tables if t.name == "reconstruction target")
    got = verdicts(st, tie=1.0)
    # linear: grid now leads; fine-tune: random is 1.0 over block 50, inside a 1-point tie
    assert got["Random masking beats block-wise and grid masking."] == "partly (finetune a tie; linprobe disagrees)"
    # norm pixel's +0.5 / +0.4 over pixel is inside a 1-point tie: not shown, and said so
    assert got["Normalised pixels beat unnormalised pixels as the target."] == "not shown (a tie)"
    assert target.relative_to.label == "pixel (w/o norm)"
    token = next(t for t in st.tables if t.name == "mask token")
    next(r for r in token.rows if not r.default).gflops = 1.2       # no extra cost: the claim's second half fails
    assert verdicts(st, tie=0.1)["Mask tokens in the encoder hurt and cost about 3x the pretraining compute."] == \
        "disagrees"


def test_a_flat_curve_does_not_show_that_a_high_ratio_is_best():
    st = paper_tables("mask-ratio")
    table = st.tables[0]
    for row, (ft, lin) in zip(table.rows, [(69.5, 81.2), (69.7, 81.3), (70.8, 81.5), (72.0, 82.2), (72.1, 81.8),
                                           (72.2, 80.8), (71.3, 81.4), (72.0, 81.8), (70.7, 82.2), (70.5, 81.3)]):
        row.ours = {"finetune": Cell((ft,)), "linprobe": Cell((lin,))}
    got = verdicts(st, tie=1.0)["A high masking ratio (75%) is best for both fine-tuning and linear probing."]
    assert got == "partly (finetune agrees; linprobe a tie)"          # linear: 75% is 0.6 over 10%, inside the tie


def test_seeds_widen_the_tie_margin_to_twice_their_spread():
    a = TableRow("a", "v-a", False, None, ours={"finetune": Cell((70.0, 74.0))})
    b = TableRow("b", "base", True, None, ours={"finetune": Cell((72.0, 72.2))})
    assert a.ours["finetune"].text() == "72.0 ± 2.8"
    assert claims._margin("finetune", a, b) == pytest.approx(2 * 2.828, abs=0.01)
    assert claims._margin("linprobe", a, b) == claims.TIE["linprobe"]          # no seeds there: the measured default


def test_the_study_numbers_equal_the_brief_checked_table1_rows_where_both_state_them():
    t1 = study_reference("table1")["ablations"]
    groups = {(e.label, e.column): e.value for e in load_reference().entries if e.source == "Table 1"}
    pairs = {("target: pixel", "pixel (w/o norm)"): "reconstruction target", ("target: norm pixel", "pixel (w/ norm)"):
             "reconstruction target", ("target: PCA", "PCA"): "reconstruction target",
             ("target: dVAE token", "dVAE token"): "reconstruction target", ("mask: random 75", "random 75"): "mask sampling",
             ("mask: block 50", "block 50"): "mask sampling", ("mask: block 75", "block 75"): "mask sampling",
             ("mask: grid 75", "grid 75"): "mask sampling", ("encoder with mask tokens", "encoder w/ [M]"): "mask token"}
    for (group_label, row), table in pairs.items():
        for col in ("ft", "lin"):
            assert t1[table][row][col] == groups[(group_label, col)], (row, col)
    # every default row of Table 1 is the same 800-epoch pixel baseline
    defaults = [t1["decoder depth"]["8"], t1["decoder width"]["512"], t1["mask token"]["encoder w/o [M]"],
                t1["data augmentation"]["crop, rand size"], t1["mask sampling"]["random 75"],
                study_reference("mask-ratio")["ablations"]["mask ratio"]["75%"]]
    assert all((d["ft"], d["lin"]) == (84.9, 73.5) for d in defaults)


def test_every_built_in_row_names_a_paper_row_that_exists():
    for name in ("table1", "mask-ratio"):
        study = read(builtin_path(name))
        ref = study_reference(study.paper)["ablations"]
        for ab in study.ablations:
            for r in ab.rows:
                assert r.paper is None or r.paper in ref[ab.name], (name, ab.name, r.paper)


def test_table1e_augmentations_are_the_crops_they_name(tmp_path):
    import torch
    from PIL import Image
    from maebench.data.tensor_loader import augmentation_of
    from maebench.data.transforms import pretrain_augmentation
    img = Image.fromarray((torch.arange(32 * 32 * 3) % 251).reshape(32, 32, 3).to(torch.uint8).numpy())
    none = pretrain_augmentation("none", 32, mean=(0, 0, 0), std=(1, 1, 1))
    first = none(img)
    assert torch.equal(first, none(img)) and torch.allclose(first * 255, torch.tensor(
        __import__("numpy").asarray(img)).permute(2, 0, 1).float(), atol=1e-3)     # the image itself, never flipped
    aug = {n: augmentation_of(pretrain_augmentation(n, 32)) for n in ("none", "crop-fixed", "crop-rand")}
    assert aug["none"]["scale"] == (1.0, 1.0) and aug["none"]["flip"] == 0.0          # the tensor loader serves these
    assert aug["crop-fixed"]["scale"] == (0.875 ** 2,) * 2 and aug["crop-fixed"]["ratio"] == (1.0, 1.0)
    assert aug["crop-rand"]["scale"] == (0.2, 1.0) and aug["crop-rand"]["flip"] == 0.5
    colour = pretrain_augmentation("crop-rand-color", 32)
    assert augmentation_of(colour) is None                                            # jitter: the DataLoader path
    assert [type(t).__name__ for t in colour.transforms] == [
        "RandomResizedCrop", "RandomHorizontalFlip", "ColorJitter", "ToTensor", "Normalize"]


def test_a_tag_labels_the_row_outside_its_recipe(micro, small_set, tmp_path, capsys):
    results = tmp_path / "r.sqlite"
    argv = ["run", "--task", "knn", "--backbone", micro, "--data", str(small_set), "--results", str(results)]
    assert main([*argv, "--tag", "study=s", "--tag", "variant=v"]) == 0
    row = ResultsStore(results).rows()[0]
    assert (row.config["tag_study"], row.config["tag_variant"]) == ("s", "v")
    assert "tag_study" not in recipe(row)
    assert main([*argv, "--tag", "study"]) == 2
    assert "--tag: expected KEY=VALUE" in capsys.readouterr().err
