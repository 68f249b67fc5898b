"""`maebench run --task coco --eval-predictions FILE.json`: score a saved COCO results file
against the dataset's val split with the evaluator training uses, and store a row.

Not a run: nothing trains, no model is built, torch is never imported, and no run directory or
lock is made (the row's directory is the file's). The row's id is a hash of the file's content
and the ground truth, so re-scoring the same file replaces nothing and adds one row.
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

from maebench.tasks.coco import TASK, data_paths


def rescore(predictions: str, *, data: str | None, backbone: str | None, results: str | None,
            train_json: str | None = None, val_json: str | None = None, images: str | None = None) -> int:
    from maebench.results import ResultsStore, config_hash
    from maebench.tasks.coco.evaluate import load_ground_truth, load_results, score, summary

    paths, dataset = data_paths(data, train_json, val_json, images, need_train=False)
    path = Path(predictions).expanduser().resolve()
    found = load_results(path)
    coco_gt = load_ground_truth(paths["val_json"])
    metrics = score(coco_gt, found, source=str(path))      # validates before any row exists
    backbone = backbone or path.stem
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    cfg = {"eval_predictions": str(path), "predictions_sha256": sha, "val_json": paths["val_json"]}
    run_id = f"coco-eval-{re.sub(r'[^A-Za-z0-9._-]+', '_', backbone)}-{config_hash(TASK, backbone, dataset, cfg, None)[:10]}"
    with ResultsStore(results).run(task=TASK, backbone=backbone, config=cfg, dataset=dataset, split="val",
                                   seed=None, out_dir=str(path.parent), run_id=run_id) as handle:
        handle.finish(metrics)
    print(f"coco {path.name} on {paths['val_json']} ({len(found)} detections): {summary(metrics)}")
    print(f"stored as run {run_id}")
    return 0
