"""Transfer tasks: each takes a registered backbone and reports metrics to the results store.

`classification` dispatches finetune / linprobe / partial / knn (image classification on any
ImageFolder set); `coco` and `ade20k` are detection and segmentation. Every task gets its
model from `backbones.registry.load` and trains through `maebench.engine.fit`.
"""
