"""The demo's report says which protocol its linear-probe column ran (the swept probe that
--cached-features runs, not the paper's single lr) and on how many labels each classification
column trained, read from the rows; the single-lr probe rows that partial fine-tuning's K=0
writes never mix into the linear column."""
from leaderboard_helpers import add

from maebench.demo import report_md as demo_report
from maebench.results import ResultsStore

NAMES = {"mae-norm-pixel": "demo-mae", "mae-pixel": "demo-pix", "mocov3": "demo-moco", "supervised": "demo-sup",
         "scratch": "scratch-vit-micro"}


def _store(path):
    store = ResultsStore(path)
    for i, (key, name) in enumerate(NAMES.items()):
        add(store, "linprobe", name, "fashion", {"top1": 50.0 + i}, sweep=True, cached_features=True, head="linear",
            labels_per_class=1000)
        add(store, "finetune", name, "fashion", {"top1": 60.0 + i}, labels_per_class=100)
        add(store, "knn", name, "fashion", {"top1": 40.0 + i}, labels_per_class=1000)
        if key in ("mae-norm-pixel", "mocov3"):        # partial K=0 = a single-lr linprobe row of its own, newer
            add(store, "linprobe", name, "fashion", {"top1": 5.0}, sweep=False, labels_per_class=100)
            add(store, "partial", name, "fashion", {"top1": 5.0}, blocks=0, labels_per_class=100)
    return store


def test_the_report_names_the_swept_probe_and_keeps_partial_k0_out_of_the_linear_column(tmp_path):
    _store(tmp_path / "results.sqlite")
    report = demo_report.write_report(tmp_path, tmp_path / "results.sqlite", command="maebench demo", quick=False,
                                      seeds=[0], left_out=[], names=NAMES, seconds=60.0, load=((1, 1, 1), (1, 1, 1)),
                                      estimates={})
    lines = [line for line in report.text.splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert "linear top-1 (swept, 1000/class)" in header and "k-NN top-1 (1000/class)" in header
    assert "fine-tune top-1 (100/class)" in header
    rows = {c[0]: c for c in ([x.strip() for x in line.strip("|").split("|")] for line in lines[2:])}
    col = header.index("linear top-1 (swept, 1000/class)")
    assert [rows[k][col] for k in ("MAE norm-pixel", "MoCo v3")] == ["50.0", "52.0"]     # not partial K=0's 5.0
    assert "not the paper's single-lr protocol" in report.text and "--no-sweep" in report.text
    assert "not the paper's single-lr protocol" in report.summary_text


def test_a_stage_rerun_with_another_recipe_supersedes_its_old_row_and_nothing_else(tmp_path):
    """A protocol file changed between two demo runs: the rerun stage's row replaces the old
    recipe's row (the leaderboard would otherwise pool both in one cell); other seeds, other
    backbones, other partial K and the other linear-probe protocol stay."""
    store = ResultsStore(tmp_path / "results.sqlite")
    old = add(store, "ade20k", "demo-mae", "fashion", {"mIoU": 13.1}, layer_decay=0.5)
    keep = [add(store, "ade20k", "demo-mae", "fashion", {"mIoU": 12.0}, seed=1, layer_decay=0.5),   # not rerun
            add(store, "ade20k", "scratch-vit-micro", "fashion", {"mIoU": 12.1}, layer_decay=0.5),
            add(store, "partial", "demo-mae", "fashion", {"top1": 60.0}, blocks=1, labels_per_class=100),
            add(store, "partial", "demo-mae", "fashion", {"top1": 61.0}, blocks=2, labels_per_class=100),
            add(store, "linprobe", "demo-mae", "fashion", {"top1": 5.0}, sweep=False, labels_per_class=100),
            add(store, "linprobe", "demo-mae", "fashion", {"top1": 50.0}, sweep=True, labels_per_class=1000)]
    new = add(store, "ade20k", "demo-mae", "fashion", {"mIoU": 11.6}, layer_decay=0.75)
    assert demo_report.superseded(tmp_path / "results.sqlite") == [old]
    store.remove([old])
    assert sorted(r.run_id for r in store.rows()) == sorted([*keep, new])
    assert demo_report.superseded(tmp_path / "results.sqlite") == []
