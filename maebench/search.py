"""`--search`: each backbone's recipe values chosen on held-out training data, within a budget.

VTAB's rule, for every task: a seeded part of the *training* data is held out (stratified by
class for classification, by image for COCO and ADE20K; the protocol's `search.holdout`,
maebench/data/heldout.py); every point of the protocol's `search.space` (a grid of config keys,
the recipe's own value of each key first) trains on the rest and is scored on that part; the
best point is retrained on the whole training set and scored once on the reported split. The
reported split is never read before that final run.

Trained protocols (fine-tuning, partial, COCO, ADE20K) run each point as a trial: an ordinary
run through the one runner (maebench/runner.py) with `RunSpec.trial_holdout`, its row in the
search's own results store, so that the user's store holds the searched result alone. Poor trials
stop early: each trial reports its held-out score at the rungs min_epochs x reduction_factor^k
to an Optuna pruner (`search.pruner`), which may stop it there. `halving` is Optuna's
SuccessiveHalvingPruner (asynchronous successive halving, ASHA, Li et al. 2020: a trial goes on
while it is in the best 1/reduction_factor of the trials that reached its rung); `median` is its
MedianPruner (stop a trial below the median of the earlier trials at the same epoch, Golovin et
al. 2017); `none` trains every point to the end. Fine-tuning and partial use `median`: replayed on
the exhaustive grid's recorded curves (benchmarks/search_cost.py), ASHA run one trial after another
makes the first trial (the recipe's point, first by design) the bar every other point must clear
at epochs 1 and 3, where a higher lr still trails, and picked the exhaustive grid's winner in 1 of
3 seeds; median stopping in 2 of 3, for 1.7-2.6 full runs. Optuna, not a hand-written scheduler,
because its pruners are the published rules with their bookkeeping in a storage that several
processes (the launcher's lanes, a cluster) can share; the grid itself is ours (a fixed order,
the recipe's point first, so that every trial is measured against the recipe it may replace).
The study lives in a journal file in the search directory: a killed search, run again, reuses
its finished trials and re-runs only the unfinished one. `--search-workers W` runs the trials as W
launcher jobs (`--search-worker I/W`: points I, I+W, ... of the grid, each on the shared journal,
the pruner seeing every worker's curves); the command then finishes the search in its own
process, which finds the trials done and only retrains the choice.

Protocols whose whole space costs one pass (the linear probe's grid of heads, k-NN's k x T) score
every point together (`Program.joint_search`) with the same space, split and record.

`--search-budget B` caps the trials' cost at B full-run equivalents (a trial's cost: the epochs it
trained / the recipe's epochs x the share of the training data it fit on); points the budget
leaves are recorded as skipped. The final row stores the space and held-out fraction in its
config (key `search`, so a searched result never shares a run id or a leaderboard cell with an
unsearched one) and every trial's score and cost, the choice and the total in metrics `search`.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from maebench.errors import UsageError
from maebench.runspec import RunSpec
from maebench.search_space import Settings, as_set, settings  # noqa: F401  (search.settings: the joint searches)


# ---- the search directory ------------------------------------------------------------------
def search_dir(spec: RunSpec, s: Settings) -> Path:
    """<--out>/search, else $MAEBENCH_HOME/searches/<task>-<backbone>-<hash>-s<seed>: one per
    (program, backbone, data, recipe flags, space, seed), so the same command finds it again."""
    if spec.out:
        return Path(spec.out) / "search"
    from maebench.home import home_dir
    ident = json.dumps([spec.program.name, spec.backbone, spec.data, list(spec.sets), spec.config_file,
                        {k: v for k, v in spec.options.items() if v is not None}, spec.epochs, spec.batch_size,
                        spec.seed, s.as_config(spec.seed)], sort_keys=True, default=str)
    digest = hashlib.sha256(ident.encode()).hexdigest()[:10]
    return home_dir() / "searches" / f"{spec.program.name}-{spec.backbone}-{digest}-s{spec.seed}"


@dataclass
class Trial:
    params: dict[str, Any]
    state: str                             # complete | pruned | skipped
    score: float | None = None             # held-out score at its last evaluation
    epochs: int = 0
    cost: float = 0.0                      # full-run equivalents
    run_id: str | None = None
    scores: dict[int, float] = field(default_factory=dict)   # epoch -> held-out score

    def as_dict(self) -> dict[str, Any]:
        return {"params": self.params, "state": self.state, "score": self.score, "epochs": self.epochs,
                "cost": round(self.cost, 4), "run_id": self.run_id,
                "scores": {str(k): v for k, v in sorted(self.scores.items())}}


def record(s: Settings, trials: list[Trial], metric: str, *, where: str, wall_s: float,
           joint: bool = False, chosen: int | None = None, cost: float | None = None) -> dict[str, Any]:
    """The final row's metrics `search`: every point's held-out score and cost, the choice, the
    total. A joint search passes its own choice (`chosen`, an index) and its one pass's `cost`."""
    done = [t for t in trials if t.state == "complete" and t.score is not None]
    if not done:
        raise UsageError("the search finished no trial: raise --search-budget")
    # ties: the earlier point (the recipe's own first)
    best = trials[chosen] if chosen is not None else max(done, key=lambda t: t.score)
    total = sum(t.cost for t in trials) if cost is None else cost
    return {"metric": metric, "holdout": s.holdout, "trials": [t.as_dict() for t in trials],
            "chosen": best.params, "score": best.score, "cost": round(total, 4),
            "budget": s.budget, "joint": joint, "completed": len(done),
            "pruned": sum(t.state == "pruned" for t in trials), "skipped": sum(t.state == "skipped" for t in trials),
            "wall_s": round(wall_s, 1), "dir": where, "selected_on": "held-out part of the training data"}


def final_spec(spec: RunSpec, s: Settings, rec: dict[str, Any], where: Path | None = None) -> RunSpec:
    """The chosen point retrained on the whole training set and scored on the reported split; with
    --search-reuse, the best trial's trained model (its run directory, resumed after its last
    epoch) scored on the reported split instead."""
    chosen_sets = tuple(as_set(k, v) for k, v in rec["chosen"].items())
    final = spec.replace(search=False, search_space=(), search_budget=None, search_reuse=False,
                         sets=(*spec.sets, *chosen_sets), searched={"config": s.as_config(spec.seed), "record": dict(rec)})
    if not spec.search_reuse:
        return final
    (best,) = [i for i, t in enumerate(rec["trials"]) if t["run_id"] and t["params"] == rec["chosen"]]
    return final.replace(trial_holdout=s.holdout, trial_reported=True, resume=True, out=str(where / f"trial-{best:03d}"),
                         searched={"config": {**s.as_config(spec.seed), "reused_trial": rec["trials"][best]["run_id"]},
                                   "record": dict(rec)})


def reuse(final: RunSpec, *, seed: int, out: str | None) -> RunSpec:
    """A final run's spec at another seed: the same choice (and config), the record saying which
    seed chose it. A spec still to search jointly (partial's K = 0) is only moved to the seed."""
    if final.searched is None:
        return final.replace(seed=seed, out=out)
    chose_at = final.searched["config"]["seed"]
    rec = final.searched["record"] if seed == chose_at else {**final.searched["record"], "reused_from_seed": chose_at}
    return final.replace(seed=seed, out=out, searched={**final.searched, "record": rec})


def reuse_joint(spec: RunSpec, config_entry: dict, rec: dict) -> RunSpec:
    """A joint search's later seed: the first seed's choice as a one-point space, and that
    seed's config entry and record, so every seed's row shares one config (one leaderboard cell)."""
    one_point = tuple(as_set(k, v) for k, v in rec["chosen"].items())
    return spec.replace(search_space=one_point, searched={
        "config": config_entry, "record": {**rec, "reused_from_seed": config_entry["seed"]}})


# ---- trained protocols: one trial per point ---------------------------------------------------
class Pruned(Exception):
    """The pruner stopped this trial (not an error: the search goes on)."""


def final_specs(spec: RunSpec, run_recipe: Callable) -> list[RunSpec]:
    """Run the command's searches (partial: one per K, `Program.points`) and return the final
    runs' specs, in order; a spec whose recipe searches jointly (partial's K = 0, the linear
    probe's sweep) is returned as it is. `run_recipe`: the runner's (maebench/runner.py), which
    runs every trial."""
    finals = [one if joint else search_trained(one, run_recipe)[0] for one, joint in spec.program.points(spec)]
    return [] if spec.search_worker else finals          # a worker runs trials only


def search_trained(spec: RunSpec, run_recipe: Callable) -> tuple[RunSpec, dict]:
    """Run (or reuse) every trial of the spec's search; returns (final spec, record)."""
    import optuna
    from optuna.trial import TrialState

    base = _base_recipe(spec)
    s = settings(spec, base.backbone_info.get("arch") if base.backbone_info else None, base.config)
    epochs = int(base.config["epochs"])
    metric = spec.program.headline[0]
    where = search_dir(spec, s)
    where.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    storage = JournalStorage(JournalFileBackend(str(where / "journal.log")))
    study = optuna.create_study(study_name="search", storage=storage, direction="maximize", load_if_exists=True,
                                pruner=s.optuna_pruner())
    worker = spec.search_worker
    if worker is None:                                   # (workers run beside each other: their trials are live)
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING)):
            study.tell(t.number, state=TrialState.FAIL)  # killed with the previous process: run again

    def finished() -> dict:
        return {t.user_attrs["point"]: t for t in study.get_trials(deepcopy=False)
                if t.state in (TrialState.COMPLETE, TrialState.PRUNED) and "point" in t.user_attrs}
    done_before = finished()
    points = s.points()
    fit_share = 1.0 - s.holdout
    print(f"search: {spec.program.name} {spec.backbone}: {len(points)} points of {', '.join(s.space)}; "
          f"held-out {s.holdout:g} of the training data; budget {s.budget:g} full runs; in {where}")
    trials: list[Trial] = []
    t0 = time.time()
    for i, point in enumerate(points):
        if worker is not None and i % worker[1] != worker[0]:
            continue
        key = json.dumps(point, sort_keys=True)
        spent = sum(t.cost for t in trials)
        if worker is not None:                           # every worker's trials so far count
            now = finished()
            spent = sum(float(t.user_attrs.get("cost", 0.0)) for t in now.values())
            done_before = now
        if key in done_before:
            trials.append(_from_optuna(done_before[key], point))
            continue
        first = (s.rungs(epochs) or [epochs])[0]               # the least a trial costs
        if spent + first / epochs * fit_share > s.budget + 1e-9:
            trials.append(Trial(point, "skipped"))
            continue
        trial = study.ask()
        trial.set_user_attr("point", key)
        trials.append(_run_trial(spec, s, point, i, trial, study, where, epochs, metric, fit_share, run_recipe))
    if worker is not None:
        print(f"search worker {worker[0]}/{worker[1]}: {len(trials)} of {len(points)} points in {where}")
        return spec, {}
    rec = record(s, trials, metric, where=str(where), wall_s=time.time() - t0)
    print(f"search: chose {_fmt(rec['chosen'])} (held-out {metric} {rec['score']:.2f}); {rec['completed']} "
          f"complete, {rec['pruned']} pruned, {rec['skipped']} skipped; cost {rec['cost']:.2f} full runs")
    return final_spec(spec, s, rec, where), rec


def _base_recipe(spec: RunSpec):
    """The unsearched recipe (checks the backbone, data and config before any trial; gives the
    recipe's own values, which go first in the grid)."""
    plain = spec.replace(search=False)
    recipes = list(plain.program.recipes()(plain))
    if len(recipes) != 1 or recipes[0].compute is not None:
        raise UsageError(f"--search trains one recipe per trial; --task {spec.program.name} with these options "
                         f"makes {len(recipes)}")
    return recipes[0]


def _run_trial(spec, s: Settings, point, i, trial, study, where: Path, epochs: int, metric: str,
               fit_share: float, run_recipe: Callable) -> Trial:
    from optuna.trial import TrialState

    tspec = spec.replace(search=False, search_space=(), search_budget=None, trial_holdout=s.holdout,
                         sets=(*spec.sets, *(as_set(k, v) for k, v in point.items())),
                         out=str(where / f"trial-{i:03d}"), results=str(where / "trials.sqlite"),
                         resume=False, force=True)
    (recipe,) = list(tspec.program.recipes()(tspec))
    print(f"search: trial {i}: {_fmt(point)}")
    rungs = set(s.rungs(epochs))
    out = Trial(point, "complete")
    evaluate = None

    def at_rungs(model) -> dict:
        out.epochs += 1
        if out.epochs < epochs and out.epochs not in rungs:
            return {}
        m = evaluate(model)
        out.score = float(m[metric])
        out.scores[out.epochs] = out.score
        trial.report(out.score, out.epochs)
        if out.epochs < epochs and trial.should_prune():
            raise Pruned(f"pruned at epoch {out.epochs} (held-out {metric} {out.score:.2f})")
        return m

    setup = recipe.setup

    def setup_then_rungs(run) -> None:         # after the recipe's own setup, which may build its evaluation
        nonlocal evaluate
        if setup is not None:
            setup(run)
        evaluate, recipe.evaluate = recipe.evaluate, at_rungs

    recipe.setup = setup_then_rungs
    recipe.fit_overrides = {**recipe.fit_overrides, "eval_every": 1}
    try:
        outcome = run_recipe(tspec, recipe)
        out.run_id = outcome.run_id
    except Pruned as p:
        out.state = "pruned"
        print(f"search: trial {i} {p}")
    out.cost = out.epochs / epochs * fit_share
    for k, v in (("cost", out.cost), ("epochs", out.epochs), ("run_id", out.run_id), ("score", out.score)):
        trial.set_user_attr(k, v)
    if out.state == "complete":
        study.tell(trial, out.score)
    else:
        study.tell(trial, state=TrialState.PRUNED)
    return out


def _from_optuna(t, point) -> Trial:
    from optuna.trial import TrialState
    a = t.user_attrs
    return Trial(point, "complete" if t.state == TrialState.COMPLETE else "pruned", a.get("score"),
                 int(a.get("epochs", 0)), float(a.get("cost", 0.0)), a.get("run_id"),
                 {int(k): float(v) for k, v in t.intermediate_values.items()})


def _fmt(point: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in point.items())
