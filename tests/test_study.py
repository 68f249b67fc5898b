"""`maebench study`: the study file is checked entry by entry before anything runs; the built-in
studies plan the paper's rows; a study runs end to end, resumes, and writes the paper-style report."""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from maebench.cli import main
from maebench.results import ResultsStore


def study_file(tmp_path, small_set, body: str) -> Path:
    path = tmp_path / "study.yaml"
    path.write_text(f"name: tiny\narch: vit-micro\ndata: {small_set}\n" + body)
    return path


@pytest.fixture(scope="module")
def shapes20(tmp_path_factory):
    """4 classes x (20 train, 4 val) shapes of 16 px: enough for the quick form's 20 labels per class."""
    from maebench.data.shapes import ShapesOptions, prepare
    return prepare(tmp_path_factory.mktemp("shapes20"), ShapesOptions(img_size=16, classes=4, train_per_class=20,
                                                                      val_per_class=4), kinds=("classification",))["classification"]


TINY = ["--set", "img_size=16", "--set", "batch_size=8", "--jobs", "2"]


def test_a_study_file_plans_the_base_and_each_variant_then_scores_each(small_set, tmp_path, capsys):
    path = study_file(tmp_path, small_set, "base: {target: norm-pixel}\nvariants:\n  - {name: deep, set: {decoder_depth: 4}}\n"
                      "grid: {mask_ratio: [0.5, 0.9]}\nprotocols: [knn, linprobe]\nprotocol_options: {linprobe: [--cached-features]}\n"
                      "seeds: [0, 1]\n")
    assert main(["study", str(path), "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    pretrains = [ln for ln in lines if ln.startswith("maebench pretrain")]
    assert [ln.split("--name ")[1].split()[0] for ln in pretrains] == [
        "study-tiny-base", "study-tiny-deep", "study-tiny-mask_ratio-0.5", "study-tiny-mask_ratio-0.9"]
    assert "--set target=norm-pixel --set decoder_depth=4" in pretrains[1]
    runs = [ln for ln in lines if ln.startswith("maebench run")]
    assert len(runs) == 4 * 2 * 2                                       # variants x protocols x seeds
    assert all("# after: pretrain " in ln for ln in runs)
    assert sum("--cached-features" in ln for ln in runs) == 8
    assert all("--tag study=tiny --tag variant=" in ln for ln in pretrains + runs)


def test_table1_plans_every_row_of_the_paper_with_the_tokenizer_before_the_token_target(capsys):
    assert main(["study", "table1", "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    names = [re.search(r"--name (\S+)", ln).group(1) for ln in lines if ln.startswith("maebench pretrain")]
    assert names[0] == "study-table1-dvae"                               # the dVAE first, then every variant
    assert names[1:] == ["study-table1-" + n for n in (
        "base", "decoder-depth-1", "decoder-depth-4", "decoder-width-32", "decoder-width-128", "mask-token-with-m",
        "reconstruction-target-norm-pixel", "reconstruction-target-pca", "reconstruction-target-dvae-token",
        "data-augmentation-none",
        "data-augmentation-crop-fixed", "data-augmentation-crop-rand-color", "mask-sampling-block-50",
        "mask-sampling-block-75", "mask-sampling-grid-75")]
    token = next(ln for ln in lines if "--name study-table1-reconstruction-target-dvae-token" in ln)
    assert "--set target=dvae --set tokenizer=study-table1-dvae" in token
    assert token.endswith("# after: prepare the fashion world, tokenizer study-table1-dvae")
    base = next(ln for ln in lines if "--name study-table1-base " in ln)
    assert "--set target=pixel " in base                                  # Table 1's default target
    runs = [ln for ln in lines if ln.startswith("maebench run")]
    assert len(runs) == 15 * 2 and all("--labels-per-class" in ln for ln in runs)


def test_mask_ratio_plans_ten_ratios_and_options_cut_or_widen_a_study(capsys):
    assert main(["study", "mask-ratio", "--dry-run"]) == 0
    ratios = re.findall(r"--set mask_ratio=(\S+)", capsys.readouterr().out)
    assert ratios == ["0.1", "0.2", "0.3", "0.4", "0.5", "0.6", "0.7", "0.8", "0.9"]     # and the base's 0.75
    assert main(["study", "table1", "--only", "mask token,mask-sampling-grid-75", "--dry-run"]) == 0
    names = re.findall(r"--name (\S+)", capsys.readouterr().out)
    assert names == ["study-table1-base", "study-table1-mask-token-with-m", "study-table1-mask-sampling-grid-75"]
    assert main(["study", "table1", "--only", "mask token", "--seeds", "0,1,2", "--search", "--quick", "--dry-run"]) == 0
    runs = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("maebench run")]
    assert len(runs) == 2 * 2 * 3 and all("--search" in ln and "study-table1-quick-" in ln for ln in runs)
    assert main(["study", "tabel1"]) == 2
    assert "no built-in study of that name (built-in: table1, mask-ratio) (did you mean: table1" in capsys.readouterr().err


@pytest.mark.parametrize("body, message", [
    ("variants:\n  - {name: a, set: {mask_ratoi: 0.5}}\nprotocols: [knn]\n", "variant 'a': unknown config key 'mask_ratoi'"),
    ("variants:\n  - {name: a, set: {mask_ratio: 0.5}}\n  - {name: a, set: {mask_ratio: 0.6}}\nprotocols: [knn]\n",
     "two variants are named 'a'"),
    ("variants:\n  - {name: same, set: {mask_ratio: 0.75}}\nprotocols: [knn]\n",
     "variant 'same' is the base recipe itself"),
    ("ablations:\n  depth:\n    - {name: two, set: {decoder_depth: 2}}\nprotocols: [knn]\n",
     "variant 'depth-two' is the base recipe itself"),
    ("ablations:\n  depth:\n    - {name: a, base: true, set: {decoder_depth: 1}}\nprotocols: [knn]\n", "ablations: 'depth' row 1: expected"),
    ("variants:\n  - {name: a, set: {mask_ratio: 0.5}}\nprotocols: [coco]\n", "protocols: coco cannot run on"),
    ("variants:\n  - {name: a, set: {mask_ratio: 0.5}}\nprotocols: [knnn]\n", "protocols: unknown protocol 'knnn' (did you mean: knn"),
    ("variant:\n  - {name: a}\nprotocols: [knn]\n", "unknown key 'variant' (did you mean: variants"),
    ("variants:\n  - {name: a, set: {mask_ratio: 2.0}}\nprotocols: [knn]\n", "variant 'a': "),
    ("variants:\n  - {name: a, set: {augmentation: colour}}\nprotocols: [knn]\n", "variant 'a': config key 'augmentation'"),
    ("variants:\n  - {name: a, set: {masking: grid, mask_ratio: 0.5}}\nprotocols: [knn]\n", "variant 'a': grid masking"),
])
def test_a_bad_study_is_one_line_naming_the_file_and_entry_exit_2_and_nothing_runs(body, message, small_set, tmp_path,
                                                                                  capsys):
    path = study_file(tmp_path, small_set, body)
    assert main(["study", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: {message}" in err and len(err.splitlines()) == 1, err
    assert not (Path(os.environ["MAEBENCH_HOME"]) / "results.sqlite").exists()
    assert not (Path(os.environ["MAEBENCH_HOME"]) / "study").exists()


def test_mask_ratio_quick_runs_on_shapes_resumes_after_a_failure_tags_its_rows_and_writes_the_figure(shapes20, tmp_path, capsys):
    out = tmp_path / "mask-ratio"
    argv = ["study", "mask-ratio", "--quick", "--data", str(shapes20), "--only", "mask-ratio-0.1", "--out", str(out),
            *TINY]
    assert main([*argv, "--transfer-set", "lr=-1"]) == 1              # the transfers fail: the study stops there
    assert "to resume the study from there" in capsys.readouterr().err
    assert main(argv) == 0                                             # ... and resumes: the pretrainings are kept
    assert capsys.readouterr().out.count("done earlier, reused") == 2
    rows = ResultsStore(out / "results.sqlite").rows()
    assert sorted((r.task, r.config["tag_variant"]) for r in rows) == sorted(
        (t, v) for t in ("pretrain-mae", "finetune", "linprobe") for v in ("base", "mask-ratio-0.1"))
    assert {r.config["tag_study"] for r in rows} == {"mask-ratio"}
    assert {r.config["mask_ratio"] for r in rows if r.task == "pretrain-mae"} == {0.1, 0.75}
    capsys.readouterr()
    assert main(argv) == 0                                   # a second run reuses every stage: nothing retrains
    said = capsys.readouterr().out
    assert said.count("done earlier, reused") == 6 and len(ResultsStore(out / "results.sqlite").rows()) == 6
    report = (out / "report.md").read_text()
    assert "| **75% (default)** |" in report                               # the default row, marked
    assert re.search(r"\| 10% \| [\d.]+ \| [\d.]+ \| 10% \| - \| 54\.6 \|", report)   # the paper's stated point beside ours
    assert "![mask ratio](mask_ratio.png)" in report and (out / "mask_ratio.png").stat().st_size > 5000
    claim = next(ln for ln in report.splitlines() if ln.startswith("| A high masking ratio"))
    assert re.search(r"\| \*\*(agrees|disagrees|partly \(.+\)|not shown \(a tie\))\*\* \|", claim), claim   # measured
    assert "class=default" in (out / "study.html").read_text()
    assert r"\rowcolor{gray!20} 75\%" in (out / "study.tex").read_text()


def test_table1_quick_runs_the_mask_token_table_and_measures_its_cost(shapes20, tmp_path):
    out = tmp_path / "table1"
    assert main(["study", "table1", "--quick", "--data", str(shapes20), "--only", "mask token", "--out", str(out),
                 *TINY]) == 0
    report = (out / "report.md").read_text()
    row = next(ln for ln in report.splitlines() if ln.startswith("| encoder w/ [M] |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[3:6] == ["encoder w/ [M]", "84.2", "59.6"]               # the paper's row beside ours
    gflops = float(re.match(r"[\d.]+ \(([\d.]+)x\)", cells[6]).group(1))
    assert 2.0 <= gflops <= 4.0                                           # the encoder sees 4x the tokens
    claims = {ln.split(" | ")[0].lstrip("| "): ln.split(" | ")[1] for ln in report.splitlines()
              if ln.startswith("| ") and " | **" in ln}
    assert claims["Random masking beats block-wise and grid masking."] == "**not measured**"
    assert claims["Mask tokens in the encoder hurt and cost about 3x the pretraining compute."] in (
        "**agrees**", "**disagrees**")
