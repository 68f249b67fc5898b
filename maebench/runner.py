"""The one runner: every transfer task and every pretraining method runs through `execute`.

A program's module turns a `RunSpec` into recipes (`recipes(spec)`, a generator): it checks the
backbone, the config and the data and builds the model, the training data, the loss, the
parameter groups and the evaluation, writing nothing. For each recipe the runner then

    claims the run (runs.tracked_run: a `running` row, the run directory and its lock)
    -> records it in the run directory (maebench/runfiles.py: config.yaml, stdout.log, and
       log.jsonl, maebench/runlog.py; rank 0)
    -> builds what needs the run (feature extraction: `setup`)
    -> trains (engine.fit) or computes (`compute`, for protocols that train no network)
    -> finishes the row with the metrics (a trained run's hardware column also records the
       torch threads and the micro-batch x accumulation it ran with), and prints the report.

A run already done in the same directory is not trained again (the runner prints so and goes
on with the next recipe); its outcome is returned like the others.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from maebench.runspec import RunSpec


@dataclass
class Outcome:
    """What one recipe left in the results store."""
    run_id: str
    metrics: dict[str, Any]
    out_dir: str | None = None
    done_before: bool = False              # found done, not trained again
    peak_mem_mb: float | None = None
    images_per_s: float | None = None
    execution: str | None = None           # a trained run's threads and micro-batch


@dataclass
class Recipe:
    """One results row's worth of work, checked and built; nothing written yet.

    Either the training fields (model ... on_step), run through engine.fit, or `compute(run)`
    for a protocol that trains no network through the loop (k-NN, the swept probe)."""
    task: str                                       # the row's task (finetune, pretrain-mae, ...)
    backbone: str                                   # the row's backbone name
    dataset: str | None
    config: dict                                    # the effective config; with the seed, the run id
    device: Any = None
    backbone_info: dict | None = None               # {"family", "arch", "paper"} stored with the row
    checkpoint_sha256: str | None = None
    out: str | None = None                          # run directory (None: $MAEBENCH_HOME/runs/<run id>)
    desc: str = ""
    log: Callable[[str], None] = print
    # trained through engine.fit
    model: Any = None
    train_set: Any = None
    loss_fn: Callable | None = None
    param_groups: list | None = None
    evaluate: Callable | None = None
    flops_per_image: float | None = None
    collate_fn: Callable | None = None
    on_step: Callable | None = None
    find_unused_parameters: bool = False
    fit_overrides: dict = field(default_factory=dict)   # config keys the loop reads differently
    # hooks, each optional
    setup: Callable[[Any], None] | None = None      # inside the run, before training (may fill fields)
    compute: Callable[[Any], Outcome] | None = None  # instead of training: run -> metrics
    metrics: Callable[[Any, Any], dict] | None = None  # (FitResult, run) -> the row's metrics
    report: Callable[[dict, Any], None] | None = None  # rank 0, after the row is done


def execute(spec: RunSpec) -> list[Outcome]:
    """Run every recipe of the spec's program; returns their outcomes in order. With --search,
    a program that trains one network per point first runs its trials (maebench/search.py);
    one that scores its whole space in one pass (`Program.joint_search`) searches in its recipe."""
    from maebench import runlog
    runlog.check_tensorboard(runlog.tensorboard_asked(spec.tensorboard))      # before any run starts
    if spec.search and not spec.program.joint_search:
        from maebench import search
        return [run_recipe(f, r) for f in search.final_specs(spec, run_recipe) for r in f.program.recipes()(f)]
    return [run_recipe(spec, recipe) for recipe in spec.program.recipes()(spec)]


def run_recipe(spec: RunSpec, recipe: Recipe) -> Outcome:
    from maebench import distributed, runfiles, runlog, runs

    try:
        with runs.tracked_run(task=recipe.task, backbone=recipe.backbone, dataset=recipe.dataset,
                              config=recipe.config, seed=spec.seed, out=recipe.out or spec.out,
                              split="val" if spec.trial_holdout is None else "train-held-out",
                              results=spec.results, resume=spec.resume, force=spec.force,
                              checkpoint_sha256=recipe.checkpoint_sha256,
                              backbone_info=recipe.backbone_info, tags=spec.tag_dict()) as run, \
                runfiles.recording(run, task=recipe.task, backbone=recipe.backbone, dataset=recipe.dataset,
                                   seed=spec.seed, config={**recipe.config, "backbone_info": recipe.backbone_info},
                                   resume=spec.resume, tensorboard=runlog.tensorboard_asked(spec.tensorboard)) as log:
            if recipe.setup is not None:
                recipe.setup(run)
            outcome = recipe.compute(run) if recipe.compute is not None else _train(spec, recipe, run, log)
            if spec.searched is not None:      # the trials behind this choice (a later seed: its first seed's)
                outcome.metrics["search"] = spec.searched["record"]
            if log is not None:                # rank 0: log.jsonl's final line
                log.final(outcome.metrics)
            run.finish(outcome.metrics, peak_mem_mb=outcome.peak_mem_mb, images_per_s=outcome.images_per_s,
                       execution=outcome.execution)
            outcome.run_id, outcome.out_dir = run.run_id, str(run.out_dir)
            if recipe.report is not None and distributed.is_main():    # inside: stdout.log keeps it
                recipe.report(outcome.metrics, run)
    except runs.RunDone as done:
        if str(done):
            print(done)
        row = done.row
        return Outcome(row.run_id if row else "", row.metrics if row else {}, row.out_dir if row else None,
                       done_before=True)
    return outcome


def _train(spec: RunSpec, recipe: Recipe, run, run_log=None) -> Outcome:
    from maebench import engine

    cfg = {**recipe.config, **recipe.fit_overrides}
    result = engine.fit(recipe.model, recipe.train_set, recipe.loss_fn, cfg, out_dir=run.out_dir,
                        device=recipe.device, seed=spec.seed, param_groups=recipe.param_groups,
                        collate_fn=recipe.collate_fn, evaluate=recipe.evaluate, resume=spec.resume,
                        flops_per_image=recipe.flops_per_image, desc=recipe.desc or recipe.task,
                        find_unused_parameters=recipe.find_unused_parameters, on_step=recipe.on_step,
                        log=recipe.log, run_log=run_log)
    metrics = recipe.metrics(result, run) if recipe.metrics is not None else dict(result.metrics)
    # how it ran, chosen before the loop (maebench/microbatch.py, dataloaders.py), never inside it
    execution = (f"{result.threads} torch thread{'s' * (result.threads != 1)} per process, "
                 f"micro-batch {result.micro_batch} x accum_iter {result.accum_iter}")
    return Outcome(run.run_id, metrics, peak_mem_mb=result.peak_mem_mb, images_per_s=result.images_per_s,
                   execution=execution)
