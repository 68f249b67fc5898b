"""One `maebench study`: plan the stages, reuse those the ledger says finished with the same recipe
(an interrupted study resumes), run the rest through the launcher, then write the report: the
paper-style tables (report.md, study.html, study.tex), the line plot of a numeric ablation, and
the paper's claims checked against the numbers. Everything goes under one directory
($MAEBENCH_HOME/study/<name>[-quick]/ or --out)."""
from __future__ import annotations

import json
import os
import platform
import shutil
import time
from pathlib import Path

from maebench import launch
from maebench.demo.ledger import Ledger, recipe_hashes
from maebench.errors import MaebenchError
from maebench.home import home_dir, remember_store
from maebench.launch.settings import Settings
from maebench.study import claims, render
from maebench.study.plan import job, plan
from maebench.study.studyfile import Study
from maebench.study.tables import collect


def run(study: Study, *, quick: bool = False, out: str | None = None, results: str | None = None,
        fresh: bool = False, report_only: bool = False, launcher: Settings | None = None,
        pretrain_sets: list[str] = (), transfer_sets: list[str] = (), fashion_dir: str | None = None,
        search: bool = False, command: str = "") -> int:
    root = Path(out).expanduser().resolve() if out else \
        home_dir() / "study" / (study.name + ("-quick" if quick else "") + ("-search" if search else ""))
    if fresh and root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    store = Path(results).expanduser().resolve() if results else root / "results.sqlite"
    remember_store(store, f"study {study.name}")
    stages = plan(study, store, quick=quick, pretrain_sets=list(pretrain_sets), transfer_sets=list(transfer_sets),
                  fashion_dir=fashion_dir, search=search)
    ledger, recipe = Ledger(root / "stages.json"), recipe_hashes(stages)
    t0, load = time.time(), os.getloadavg()
    todo = [] if report_only else ledger.pending(stages, recipe)
    settings = launcher or Settings()
    if todo:
        print(f"study {study.name}: {len(study.variants)} pretrainings x {len(study.protocols)} protocol(s) x "
              f"{len(study.seeds)} seed(s): {len(todo)} of {len(stages)} stage(s) to run", flush=True)
        index = {s.label: (i, s) for i, s in todo}
        runner = launch.launcher(settings, logs=root / "logs", lanes=settings.jobs)

        def started(j: launch.Job) -> None:
            print(f"[{index[j.label][0]}/{len(stages)}] {j.label}", flush=True)

        def finished(j: launch.Job, seconds: float) -> None:
            ledger.record(index[j.label][1], recipe[j.label])
            print(f"    {j.label}: done ({seconds:.0f} s)", flush=True)

        try:
            runner.run([job(s, study, settings) for _, s in todo], started=started, finished=finished)
        except MaebenchError as e:
            raise MaebenchError(f"{e}; rerun `{command}` to resume the study from there") from None
    run_file = root / "run.json"          # the last run that trained: what a --report-only report cites
    if not report_only:
        run_file.write_text(json.dumps({"command": command, "finished": time.strftime("%Y-%m-%d %H:%M %Z"),
                                        "seconds": time.time() - t0, "load": [load[0], os.getloadavg()[0]],
                                        "stages_run": len(todo), "stages": len(stages), "machine": machine()}))
    seconds = None if report_only else time.time() - t0
    report = write_report(study, root, store, command=command, run=json.loads(run_file.read_text())
                          if run_file.exists() else None, rendered_by=command if report_only else None)
    print(f"study {study.name} finished" + (f" in {seconds / 60:.1f} min" if seconds is not None else "")
          + f"; report: {report}")
    return 0


def write_report(study: Study, root: Path, store: Path, *, command: str, run: dict | None,
                 rendered_by: str | None = None) -> Path:
    """report.md, study.html, study.tex and the plots; `run`: the last training run's run.json
    (command, finish time, seconds, load average at start and end)."""
    st = collect(study, store)
    figures = []
    for table in st.tables:
        key = render.numeric_key(table, study)
        if key:
            path = render.line_plot(st, table, study, key, root / f"{key}.png")
            figures.append(f"![{table.name}]({path.name})")
    (root / "study.html").write_text(f"<!doctype html><meta charset=utf-8><title>{study.title}</title>\n"
                                     f"<h1>{study.title}</h1>\n" + render.html_tables(st) + "\n")
    (root / "study.tex").write_text(render.latex(st) + "\n")
    verdicts = claims.check(st)
    quick = ["**Quick form**: the demo's quick world and epochs, to see the pipeline work; its numbers say "
             "nothing about the findings.", ""] if "--quick" in command.split() else []
    made = (f"Produced by `{run['command']}` on {run.get('machine') or machine()} (pretraining rows: {st.hardware or 'none yet'}), finished "
            f"{run['finished']}; it ran {run['stages_run']} of the {run['stages']} stages{' (the others reused)' * (run['stages_run'] < run['stages'])} in "
            f"{run['seconds'] / 60:.1f} min, load average {run['load'][0]:.1f} at the start and {run['load'][1]:.1f} "
            "at the end.") if run else \
        f"Rendered from the rows there are on {machine()}; no run of this study trained here yet."
    again = f" This report was rendered again by `{rendered_by}`, {time.strftime('%Y-%m-%d %H:%M %Z')}." \
        if rendered_by and run else ""
    lines = [f"# {study.title}", "", *quick, made + again + f" Results store: `{store}`.", "",
             "Ours: top-1 % on the study's data (mean ± std over seeds where they repeat); the default row is in "
             "bold. Cost: the pretraining's GFLOPs per image (forward and backward) and wall time, "
             "relative to the default row." + (f" Paper: {st.source} (ViT-L, ImageNet: compare the trends, "
                                                "not the values)." if st.source else ""), "",
             render.markdown(st), *figures, "", "## The paper's claims, checked against this run", "",
             claims.markdown(verdicts), "", claims.__doc__.strip().split("\n\n")[1].replace("\n", " "), ""]
    path = root / "report.md"
    path.write_text("\n".join(lines))
    return path


def machine() -> str:
    """This machine in words: CPU model, cores, OS."""
    model = platform.processor() or platform.machine()
    try:
        model = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                      if ln.startswith("model name")), model)
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} CPU cores, {platform.system()} {platform.release()}"
