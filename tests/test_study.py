"""`maebench study FILE.yaml`: the study file is checked entry by entry before anything runs, and
planned as pretrain-then-transfer launcher jobs; a tiny study runs end to end."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from maebench.cli import main
from maebench.results import ResultsStore


def study_file(tmp_path, small_set, body: str) -> Path:
    path = tmp_path / "study.yaml"
    path.write_text(f"name: tiny\narch: vit-micro\ndata: {small_set}\n" + body)
    return path


def test_the_plan_pretrains_the_base_and_each_variant_then_scores_each(small_set, tmp_path, capsys):
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


@pytest.mark.parametrize("body, message", [
    ("variants:\n  - {name: a, set: {mask_ratoi: 0.5}}\nprotocols: [knn]\n", "variant 'a': unknown config key 'mask_ratoi'"),
    ("variants:\n  - {name: a, set: {mask_ratio: 0.5}}\n  - {name: a, set: {mask_ratio: 0.6}}\nprotocols: [knn]\n",
     "two variants are named 'a'"),
    ("variants:\n  - {name: same, set: {mask_ratio: 0.75}}\nprotocols: [knn]\n",
     "variant 'same' is the base recipe itself"),
    ("variants:\n  - {name: a, set: {mask_ratio: 0.5}}\nprotocols: [coco]\n", "protocols: coco cannot run on"),
    ("variants:\n  - {name: a, set: {mask_ratio: 0.5}}\nprotocols: [knnn]\n", "protocols: unknown protocol 'knnn' (did you mean: knn"),
    ("variant:\n  - {name: a}\nprotocols: [knn]\n", "unknown key 'variant' (did you mean: variants"),
    ("variants:\n  - {name: a, set: {mask_ratio: 2.0}}\nprotocols: [knn]\n", "variant 'a': "),
])
def test_a_bad_study_is_one_line_naming_the_file_and_entry_exit_2_and_nothing_runs(body, message, small_set, tmp_path,
                                                                                  capsys):
    path = study_file(tmp_path, small_set, body)
    assert main(["study", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: {message}" in err and len(err.splitlines()) == 1, err
    assert not (Path(os.environ["MAEBENCH_HOME"]) / "results.sqlite").exists()


def test_a_tiny_study_pretrains_and_scores_every_variant(small_set, tmp_path):
    path = study_file(tmp_path, small_set, "base: {decoder_embed_dim: 32, decoder_depth: 1, batch_size: 8, "
                      "num_workers: 0, img_size: 16}\ngrid: {mask_ratio: [0.5]}\nprotocols: [knn]\n")
    results = tmp_path / "study.sqlite"
    assert main(["study", str(path), "--results", str(results), "--jobs", "2"]) == 0
    rows = ResultsStore(results).rows(task="knn")
    assert sorted(r.backbone for r in rows) == ["study-tiny-base", "study-tiny-mask_ratio-0.5"]
    assert all(r.status == "done" for r in rows)
