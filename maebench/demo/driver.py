"""One `maebench demo`: plan the stages, skip those the ledger says finished with the same
recipe, run the rest in lanes, then write the leaderboard and report.md. Everything goes under
one directory ($MAEBENCH_HOME/demo/<full|quick>[-mae-Nep]/ or --out), never into the source tree;
the results store there is recorded as a known store, so a plain `maebench leaderboard` finds it."""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from maebench import launch
from maebench.demo import eta, report_md
from maebench.demo.ledger import Ledger, recipe_hashes
from maebench.demo.stages import ESTIMATE, PRETRAIN, backbone_name, plan
from maebench.errors import MaebenchError, UsageError
from maebench.home import data_dir, home_dir, remember_store
from maebench.launch.settings import Settings


def run(*, quick: bool, seeds: list[int], out: str | None = None, fresh: bool = False, run_all: bool = False,
        report_only: bool = False, fashion_dir: str | None = None, launcher: "Settings | None" = None,
        mae_epochs: int | None = None, search: bool = False) -> int:
    """The demo with these options (`maebench demo --help` says what each does)."""
    mode = ("quick" if quick else "full") + (f"-mae-{mae_epochs}ep" if mae_epochs is not None else "") + \
        ("-search" if search else "")
    root = Path(out).expanduser().resolve() if out else home_dir() / "demo" / mode
    _refuse_source_tree(root)
    if fresh and root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    results = root / "results.sqlite"
    remember_store(results, "the demo's store")
    ledger = Ledger(root / "stages.json")
    world = data_dir() / ("fashion-quick" if quick else "fashion")
    stages, left_out = plan(world, results, seeds, quick, run_all, fashion_dir, mae_epochs, search)
    recipe = recipe_hashes(stages)
    t_demo, load_start = time.time(), os.getloadavg()
    todo = [] if report_only else ledger.pending(stages, recipe)
    if todo:
        settings = launcher or Settings()
        runner = launch.launcher(settings, logs=root / "logs", lanes=settings.jobs)
        n_lanes = getattr(runner, "lanes", len(todo))           # a cluster runs every ready stage at once
        clock = eta.StageEta([s for _, s in todo], n_lanes)
        index = {s.label: (i, s) for i, s in todo}

        def started(job: launch.Job) -> None:
            i, stage = index[job.label]
            print(f"[{i}/{len(stages)}] {stage.label}  ({clock.eta_text(stage)})", flush=True)
            if n_lanes == 1:
                print("  $ maebench " + " ".join(stage.argv), flush=True)

        def finished(job: launch.Job, seconds: float) -> None:
            stage = index[job.label][1]
            clock.done(stage, seconds)
            ledger.record(stage, recipe[stage.label])
            shown = "" if stage.kind in ("data", "visualize") else report_md.newest_summary(
                results, None if stage.kind == "pretrain" else stage.kind,
                backbone_name(stage.backbone, quick, mae_epochs), seed=stage.seed, blocks=stage.extra.get("blocks"))
            print(f"    {stage.label}: {shown + ' ' if shown else 'done '}({seconds:.0f} s)", flush=True)

        def prepare(job: launch.Job) -> None:
            if index[job.label][1].kind == "visualize":            # a fresh set of reconstructions
                shutil.rmtree(root / "reconstructions", ignore_errors=True)

        try:
            runner.run([stage.job(settings) for _, stage in todo], started=started, finished=finished,
                       prepare=prepare)
        except MaebenchError as e:
            raise MaebenchError(f"{e}; rerun `maebench demo{' --quick' if quick else ''}` "
                                f"to resume from it") from None

    stale = report_md.superseded(results)
    if stale:
        from maebench.results import ResultsStore
        ResultsStore(results).remove(stale)
        print(f"  removed {len(stale)} result row(s) of earlier recipes, replaced by the stages rerun above")
    command = "maebench demo" + (" --quick" if quick else "") + (" --all" if run_all else "") + \
        (f" --seeds {','.join(map(str, seeds))}" if seeds != [0] else "") + \
        (f" --mae-epochs {mae_epochs}" if mae_epochs is not None else "") + (" --search" if search else "")
    _leaderboard(results, root)
    written = report_md.write_report(root, results, command=command, quick=quick, seeds=seeds,
                                  left_out=left_out, names={k: backbone_name(k, quick, mae_epochs) for k in PRETRAIN},
                                  seconds=None if report_only else time.time() - t_demo,
                                  load=(load_start, os.getloadavg()),
                                  estimates={t: ESTIMATE[t] for t in ("coco", "ade20k")}, mae_epochs=mae_epochs,
                                  search=search)
    print(written.summary_text)
    print(f"demo finished in {(time.time() - t_demo) / 60:.1f} min; report: {root / 'report.md'}")
    return 0


def _refuse_source_tree(root: Path) -> None:
    """The demo writes results, never into the maebench checkout (git status stays clean)."""
    source = Path(__file__).resolve().parents[2]
    if (source / ".git").exists() and (root == source or source in root.parents):
        raise UsageError(f"--out {root} is inside the maebench source tree {source}; choose a directory outside it")


def _leaderboard(results: Path, root: Path) -> None:
    """The leaderboard as `maebench leaderboard` renders it (markdown, html, figures): the literal
    command line, printed, run in this process."""
    from maebench.cli import main as maebench

    for name in ("leaderboard.md", "leaderboard.html"):
        argv = ["leaderboard", "--results", str(results), "--out", str(root / name), "--figures", str(root / "figures")]
        print("  $ maebench " + " ".join(argv), flush=True)
        try:
            code = maebench(argv)
        except Exception as e:  # the report below does not depend on it
            code = f"{type(e).__name__}: {e}"
        if code != 0:
            print(f"  leaderboard {name} not written ({code})", flush=True)
