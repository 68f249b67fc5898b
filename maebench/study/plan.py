"""A study as stages, each a literal `maebench` command line: the data (the fashion world), the
tokenizers a token target needs, one MAE pretraining per variant (the base included), then every
transfer protocol on every variant at every seed. Every stage tags its rows with the study and the
variant (`--tag`). The quick form takes the demo's quick world, epochs and task options
(maebench/demo/stages.py), so the two stay one recipe."""
from __future__ import annotations

from pathlib import Path

from maebench.demo.stages import ESTIMATE, QUICK_EPOCHS, QUICK_TASK_ARGS, QUICK_WORLD, Stage
from maebench.launch.jobs import Job, Resources
from maebench.launch.settings import protocol_resources
from maebench.study.studyfile import FASHION, PROTOCOL, QUICK_FASHION, Study, sets_of


def world(quick: bool) -> Path:
    from maebench.home import data_dir
    return data_dir() / ("fashion-quick" if quick else "fashion")


def plan(study: Study, results: Path, *, quick: bool = False, pretrain_sets: list[str] = (),
         transfer_sets: list[str] = (), fashion_dir: str | None = None, search: bool = False) -> list[Stage]:
    """The stages in order (a stage's needs come before it). pretrain_sets / transfer_sets:
    `--set` values for every pretraining (under each variant's own) / every transfer run; search:
    every transfer run chooses its recipe per backbone (`run --search`)."""
    common = ["--results", str(results)]
    tag = ["--tag", f"study={study.name}"]
    stages: list[Stage] = []
    data = Path(study.data).expanduser()
    if study.data == FASHION:
        data = world(quick) / "classification"
        argv = ["data", "prepare", "fashion", "--out", str(world(quick)), *(QUICK_WORLD if quick else [])]
        stages.append(Stage("prepare the fashion world", argv + (["--fashion-dir", fashion_dir] if fashion_dir else []),
                            "data", estimate=ESTIMATE["data"]))
    first = tuple(s.label for s in stages)
    for name, sets in study.tokenizers.items():
        sets = dict(sets)
        where, needs = data, first
        if sets.pop("data", None) == QUICK_FASHION and study.data == FASHION:    # the quick world's 1,000 images
            where = world(True) / "classification"
            if not quick:
                stages.append(Stage("prepare the quick fashion world", ["data", "prepare", "fashion", "--out",
                                    str(world(True)), *QUICK_WORLD], "data", estimate=ESTIMATE["data"]))
                needs = (stages[-1].label,)
        stages.append(Stage(f"tokenizer {name}", ["pretrain", "--method", "dvae", "--arch", study.arch, "--data",
                                                  str(where), "--name", name, *sets_of(sets), *common, *tag,
                                                  "--tag", f"variant=tokenizer-{name}", "--seed", "0"],
                            "pretrain", name, estimate=400, needs=needs))
    epochs = ["--epochs", QUICK_EPOCHS["pretrain"]] if quick else []
    for v in study.variants:
        sets = {**study.base, **v.sets}
        tokenizer = sets.get("tokenizer")
        needs = first + ((f"tokenizer {tokenizer}",) if tokenizer in study.tokenizers else ())
        extra = [a for s in pretrain_sets for a in ("--set", s)]          # under the study's own keys
        pre = Stage(f"pretrain {v.name}", ["pretrain", "--method", "mae", "--arch", study.arch, "--data", str(data),
                                           "--name", study.backbone(v.name, quick), *extra, *sets_of(sets), *epochs,
                                           *common, *tag, "--tag", f"variant={v.name}", "--seed", "0"],
                    "pretrain", v.name, estimate=ESTIMATE["pretrain"]["mae-pixel"], needs=needs)
        stages.append(pre)
        for p in study.protocols:
            opts = list(QUICK_TASK_ARGS.get(p, []) if quick else study.protocol_options.get(p, []))
            if quick and p in QUICK_EPOCHS:
                opts += ["--epochs", QUICK_EPOCHS[p]]
            if search:
                opts.append("--search")
            target = study.transfer_data.get(p) or (world(quick) / p if study.data == FASHION and p in ("coco", "ade20k")
                                                    else data)
            for seed in study.seeds:
                stages.append(Stage(f"{p} {v.name} (seed {seed})",
                                    ["run", "--task", p, "--backbone", study.backbone(v.name, quick), "--data", str(target),
                                     *opts, *[a for s in transfer_sets for a in ("--set", s)], *common, *tag,
                                     "--tag", f"variant={v.name}", "--seed", str(seed)],
                                    p, v.name, seed, float(ESTIMATE.get(p, 60)), needs=(pre.label,)))
    return stages


def job(stage: Stage, study: Study, settings) -> Job:
    """The stage as the launcher runs it, with its protocol's resources for the study's arch."""
    protocol = {"data": None, "pretrain": "pretrain_dvae" if stage.backbone in study.tokenizers else PROTOCOL}.get(
        stage.kind, stage.kind)
    base = protocol_resources(protocol, study.arch) if protocol else Resources(time_min=30)
    return Job(stage.label, stage.argv, needs=stage.needs, estimate=stage.estimate,
               resources=settings.resources(base), resumable=protocol is not None)
