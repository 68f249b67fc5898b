"""A complete training-loop config for tests that drive engine.fit with toy models: the loop
reads every key from the config and invents none (maebench/engine.py TrainConfig)."""

LOOP = dict(accum_iter=1, base_lr=None, lr=None, min_lr=0.0, warmup_epochs=0, schedule="cosine", milestones=[],
            optimizer="adamw", betas=[0.9, 0.999], momentum=0.9, weight_decay=0.0, clip_grad=None, ema=0.0,
            amp=True, num_workers=2, checkpoint_every=1, eval_every=0, log_every=10, micro_batch=None,
            compile=False)


def loop_cfg(**keys) -> dict:
    return {**LOOP, **keys}
