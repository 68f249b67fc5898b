"""The shape of the code: one installed name, layering one way, small files, each concept once."""
import ast
import subprocess
import sys
import zipfile
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"maebench": ROOT / "maebench", "maebench.backbones": ROOT / "backbones",
            "maebench.tasks": ROOT / "tasks", "maebench.leaderboards": ROOT / "leaderboards"}
# the layers above the ground; every other module of the maebench/ folder is the ground, which
# every layer may use and which never reaches up
ABOVE = ("maebench.backbones", "maebench.tasks", "maebench.leaderboards", "maebench.commands", "maebench.cli",
         "maebench.demo", "maebench.__main__", "maebench.launch", "maebench.grid", "maebench.doctor", "maebench.study")


def _modules():
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            rel = path.relative_to(folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            if package == "maebench" and rel.parts[0] in ("backbones", "tasks", "leaderboards"):
                continue
            yield ".".join([package, *parts]), path


def _ground():
    return [(name, path) for name, path in _modules()
            if name.startswith("maebench") and not name.startswith(ABOVE) and name != "maebench"]


def _imports(path: Path):
    """Every module a file imports, function-level imports included."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            yield from (f"{node.module}.{a.name}" for a in node.names)


def test_ground_modules_never_import_the_layers_above():
    ground = _ground()
    assert {"maebench.runner", "maebench.engine", "maebench.results", "maebench.config"} <= {n for n, _ in ground}
    bad = [(name, imp) for name, path in ground for imp in _imports(path) if imp.startswith(ABOVE)]
    assert bad == []


def _benchmarks():
    for path in (ROOT / "benchmarks").glob("*.py"):
        yield f"benchmarks.{path.stem}", path


def _import_graph() -> dict[str, set[str]]:
    """module -> the repository modules it imports, function-level imports included. `from X
    import Y` is an edge to module X.Y when there is one, else to X (a package's own import of
    a submodule is not an edge to the package); benchmarks import each other by bare names."""
    modules = dict(_modules()) | dict(_benchmarks())
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                           for a in node.names]
            else:
                continue
            for target in targets:
                for candidate in (target, f"benchmarks.{target}"):
                    if candidate in modules and candidate != name:
                        found.add(candidate)
        graph[name] = found
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles_anywhere_function_level_imports_included():
    assert _cycles(_import_graph()) == []


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_nothing_below_the_command_line_reads_an_argparse_namespace():
    """The CLI turns its flags into a RunSpec (maebench/runspec.py) and stops: no function under
    tasks/, backbones/, leaderboards/ or the ground takes an `args` parameter or an
    argparse.Namespace, or reads one with getattr. (argparse.Namespace objects inside official
    checkpoints are data: the checkpoint readers unpickle them.)"""
    bad = []
    for name, path in _modules():
        if name.startswith(("maebench.commands", "maebench.cli", "maebench.__main__")):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                a = node.args
                for arg in [*a.posonlyargs, *a.args, *a.kwonlyargs]:
                    if arg.arg == "args" or "Namespace" in ast.dump(arg.annotation or ast.Constant(None)):
                        bad.append((name, node.lineno, f"takes {arg.arg}"))
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr"
                  and node.args and isinstance(node.args[0], ast.Name) and node.args[0].id == "args"):
                bad.append((name, node.lineno, "getattr(args, ...)"))
    assert bad == []


def test_one_runner_claims_every_run():
    """`runs.tracked_run(` is called in one place: maebench/runner.py."""
    calls = [str(p.relative_to(ROOT)) for _, p in [*_modules(), *_benchmarks()] if "tracked_run(" in p.read_text()
             and p.name != "runs.py"]
    assert calls == ["maebench/runner.py"]


def test_only_the_cli_and_the_study_import_the_demo():
    """The demo drives maebench from above: the leaderboard finds its store without importing it.
    The study, a driver beside it, plans its stages with the demo's stage, ledger and quick recipe."""
    bad = [(name, imp) for name, path in _modules()
           if not name.startswith(("maebench.demo", "maebench.commands.demo", "maebench.study"))
           for imp in _imports(path) if imp.startswith("maebench.demo")]
    assert bad == []


def test_nothing_imports_the_repository_folders_by_their_bare_names():
    bad = [(name, imp) for name, path in [*_modules(), *((p.stem, p) for p in (ROOT / "tests").glob("*.py"))]
           for imp in _imports(path) if imp.split(".")[0] in ("backbones", "tasks", "leaderboards")]
    assert bad == []


def test_no_source_file_is_over_400_lines():
    long = {str(p.relative_to(ROOT)): n for _, p in _modules() if (n := len(p.read_text().splitlines())) > 400}
    assert long == {}


def test_a_built_wheel_installs_the_name_maebench_alone(tmp_path):
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation",
                        "-q", "-w", str(tmp_path)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    (wheel,) = tmp_path.glob("maebench-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"maebench", wheel.name.split("-")[0] + "-" + wheel.name.split("-")[1] + ".dist-info"}
    for name, path in _modules():                         # every module of every package
        rel = "/".join(name.split(".")) + ("/__init__.py" if path.name == "__init__.py" else ".py")
        assert rel in names, f"{path.relative_to(ROOT)} is missing from the wheel (pyproject.toml packages)"
    for data in ("maebench/protocols/coco.yaml", "maebench/backbones/catalogue.yaml",
                 "maebench/leaderboards/reference.yaml"):
        assert data in names


def test_the_architecture_doc_names_every_module_and_no_other():
    """docs/architecture.md's "Every module" list is the tree: a module added, renamed or removed
    without its line fails here."""
    import re
    text = (ROOT / "docs" / "architecture.md").read_text()
    listed = set(re.findall(r"^\| `([^`]+\.py)` \|", text.split("## Every module", 1)[1], flags=re.M))
    on_disk = {str(path.relative_to(ROOT)) for _, path in _modules()}
    assert (sorted(on_disk - listed), sorted(listed - on_disk)) == ([], [])
