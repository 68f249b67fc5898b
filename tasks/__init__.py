"""Transfer tasks: each takes a registered backbone and reports metrics to the results store.

`table.py` declares every task once (name, protocol, entry point, metrics, options). The
classification tasks are `finetune`, `linprobe`, `partial` and `knn` (any ImageFolder set);
`coco` and `ade20k` are detection and segmentation. Every task gets its model from
`maebench.backbones.registry.load` and trains through `maebench.engine.fit`.
"""
