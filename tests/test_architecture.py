"""The shape of the code: one installed name, layering one way, small files, each concept once."""
import ast
import subprocess
import sys
import zipfile
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"maebench": ROOT / "maebench", "maebench.backbones": ROOT / "backbones",
            "maebench.tasks": ROOT / "tasks", "maebench.leaderboards": ROOT / "leaderboards"}
# the ground: what every layer above may use, and which must never reach up
GROUND = ("maebench.config", "maebench.engine", "maebench.results", "maebench.runs", "maebench.data",
          "maebench.distributed", "maebench.optim", "maebench.checkpoint", "maebench.checkpointer",
          "maebench.batching", "maebench.amp", "maebench.signals", "maebench.progress", "maebench.flops",
          "maebench.errors", "maebench.home", "maebench.classification")
ABOVE = ("maebench.backbones", "maebench.tasks", "maebench.leaderboards", "maebench.commands", "maebench.cli")


def _modules():
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            rel = path.relative_to(folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            if package == "maebench" and rel.parts[0] in ("backbones", "tasks", "leaderboards"):
                continue
            yield ".".join([package, *parts]), path


def _imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            yield from (f"{node.module}.{a.name}" for a in node.names)


def test_ground_modules_never_import_the_layers_above():
    bad = [(name, imp) for name, path in _modules() if name.startswith(GROUND)
           for imp in _imports(path) if imp.startswith(ABOVE)]
    assert bad == []


def test_nothing_imports_the_repository_folders_by_their_bare_names():
    bad = [(name, imp) for name, path in [*_modules(), *((p.stem, p) for p in (ROOT / "tests").glob("*.py"))]
           for imp in _imports(path) if imp.split(".")[0] in ("backbones", "tasks", "leaderboards")]
    assert bad == []


def test_no_source_file_is_over_400_lines():
    long = {str(p.relative_to(ROOT)): n for _, p in _modules() if (n := len(p.read_text().splitlines())) > 400}
    assert long == {}


def test_the_training_loop_is_about_a_hundred_lines():
    tree = ast.parse((ROOT / "maebench" / "engine.py").read_text())
    fit = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "fit")
    assert fit.end_lineno - fit.lineno + 1 <= 110


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
