"""The import rules of DESIGN.md, checked on the source: the payload runs with torch alone."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STDLIB = set(sys.stdlib_module_names)

# folder -> third-party top-level modules it may import (the project's own folders are listed too).
# triton: engine/kernels.py, imported only if present; CUDA builds of torch install it with themselves.
ALLOWED = {
    "engine": {"torch", "triton", "numpy", "mpi4py", "safetensors", "engine", "collectives", "study"},
    "collectives": {"torch", "numpy", "mpi4py", "collectives", "study", "nvidia"},
    "study": {
        "scipy",
        "pydantic",
        "yaml",
        "jinja2",
        "rich",
        "pandas",
        "pyarrow",
        "numpy",
        "study",
        "analysis",
        "collectives",
        "engine",
    },
    "analysis": {
        "pandas",
        "pyarrow",
        "numpy",
        "matplotlib",
        "hatchet",
        "thicket",
        "jinja2",
        "yaml",
        "analysis",
        "study",
        "collectives",
    },
}
# What the payload may take from study/: the results contract only.
PAYLOAD_STUDY_MODULES = {"study.results", "study"}
# The direction between the harness and the analyses is one way: study/ calls analysis/, and analysis/
# takes from study/ only these contract modules, which import nothing of the project themselves.
ANALYSIS_STUDY_MODULES = {"study.results", "study.errors", "study.units"}
# What the harness may take from engine/: the engine's parameter table, plain data (no torch).
HARNESS_ENGINE_MODULES = {"engine.flags"}


def _imports(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module


# An external engine's runner (engine/external/<name>.py) imports its engine and, of the bundled one,
# only the workload it shares (model shapes, prompt files, prompts) and the flags whose meaning it shares:
# never its model or kernels.
EXTERNAL_MAY_IMPORT = {"engine.config", "engine.flags", "engine.workload", "engine.external"}


def _violations(folder: str) -> list[str]:
    bad = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        external = path.parent == ROOT / "engine" / "external" and path.stem != "__init__"
        for line, name in _imports(path):
            top = name.split(".")[0]
            if top in STDLIB or top == "__future__":
                continue
            where = f"{path.relative_to(ROOT)}:{line}: {name}"
            if external and top == path.stem:
                continue  # engine/external/vllm.py imports vllm, and only it does
            if external and top == "engine" and name not in EXTERNAL_MAY_IMPORT:
                bad.append(where + " (an external runner shares only the workload with the bundled engine)")
            elif top not in ALLOWED[folder]:
                bad.append(where)
            elif folder in ("engine", "collectives") and top == "study" and name not in PAYLOAD_STUDY_MODULES:
                bad.append(where + " (the payload may import only study.results)")
            elif folder == "analysis" and top == "study" and name not in ANALYSIS_STUDY_MODULES:
                bad.append(
                    where + " (analysis takes only the contract modules of study: results, errors, units)"
                )
            elif folder in ("study", "analysis") and top == "engine" and name in HARNESS_ENGINE_MODULES:
                continue
            elif folder in ("study", "analysis") and top in ("torch", "engine"):
                bad.append(where + " (the harness never imports torch)")
    return bad


@pytest.mark.parametrize("folder", sorted(ALLOWED))
def test_folder_imports_follow_the_design(folder):
    assert _violations(folder) == []


@pytest.mark.parametrize("module", sorted(ANALYSIS_STUDY_MODULES | PAYLOAD_STUDY_MODULES - {"study"}))
def test_the_contract_modules_import_nothing_of_the_project(module):
    path = ROOT / (module.replace(".", "/") + ".py")
    project = {"study", "analysis", "engine", "collectives"}
    assert [f"{line}: {name}" for line, name in _imports(path) if name.split(".")[0] in project] == []


def test_results_contract_imports_without_third_party_packages():
    # A fresh interpreter that blocks every third-party import must still load study.results.
    code = (
        "import sys, importlib.abc\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in {'pydantic','yaml','jinja2','rich','pandas','numpy','torch'}:\n"
        "            raise ImportError('blocked ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import study.results as r\n"
        "print(r.SCHEMA)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "study.result/1"


def test_the_engine_modules_the_harness_reads_import_without_torch():
    code = (
        "import sys, importlib.abc\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in {'torch','numpy','triton'}:\n"
        "            raise ImportError('blocked ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        f"import {', '.join(sorted(HARNESS_ENGINE_MODULES))}\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_no_function_is_more_complex_than_the_house_limit():
    ruff = Path(sys.executable).with_name("ruff")
    if not ruff.exists():
        pytest.skip("ruff is not installed in this environment (pip install -e .[dev])")
    out = subprocess.run(
        [str(ruff), "check", "--select", "C901", "--output-format", "concise", "."],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout  # pyproject.toml: [tool.ruff.lint.mccabe] max-complexity


def test_cli_help_does_not_import_torch_or_pandas():
    code = (
        "import sys; from study.cli import build_parser; build_parser(); "
        "print(sorted(m for m in ('torch','pandas','matplotlib') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
