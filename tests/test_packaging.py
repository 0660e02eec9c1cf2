"""Packaging: the core install needs only jax/jaxlib/chex/numpy, every runtime import is declared,
``__version__`` has one source, ``py.typed`` ships, and requirements.txt pins what pyproject declares.

The fresh-venv install itself (only jax, jaxlib, chex, numpy + ``pip install --no-deps -e .``) runs in
``.ci/run`` through ``.ci/check_core_install.py``; here the same properties are checked in the test venv.
"""
import ast
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import imbalance_jax

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
CORE = {"jax", "jaxlib", "chex", "numpy"}
# Top-level import name -> distribution name, where they differ.
DISTRIBUTION = {"PIL": "pillow", "sklearn": "scikit-learn", "ml_collections": "ml-collections", "absl": "absl-py",
                "orbax": "orbax-checkpoint", "tensorflow": "tensorflow-cpu",
                "tensorflow_datasets": "tensorflow-datasets"}
# Modules that only the optional PyTorch benchmarks import (experiments/benchmarks/requirements.txt).
BENCHMARK_ONLY = {"torch", "pytorch_metric_learning"}
TRAIN_ONLY_MODULES = ["flax", "optax", "orbax", "ml_collections", "tensorflow", "tensorflow_datasets", "sklearn",
                      "matplotlib", "PIL", "tqdm"]


def _name(requirement: str) -> str:
    return re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0].strip().lower().replace("_", "-")


def _third_party_imports(folder: Path) -> dict[str, set[str]]:
    """Top-level third-party module -> files importing it (any import statement, also inside functions)."""
    local = {"imbalance_jax", "configs", "experiments", "tests"}
    local |= {p.stem for p in folder.rglob("*.py")}  # sibling-module imports of scripts (bench_utils, ...)
    found: dict[str, set[str]] = {}
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in local:
                    found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def test_core_dependencies_are_jax_jaxlib_chex_numpy_and_the_rest_is_the_train_extra():
    project = PYPROJECT["project"]
    assert {_name(r) for r in project["dependencies"]} == CORE
    assert "train" in project["optional-dependencies"]


def test_every_runtime_import_is_declared():
    """In the core dependencies or an extra: `train`, or `torch` (convert_weights reads .pth only when installed)."""
    declared = {_name(r) for r in PYPROJECT["project"]["dependencies"]}
    for extra in PYPROJECT["project"]["optional-dependencies"].values():
        declared |= {_name(r) for r in extra}
    imports = _third_party_imports(ROOT / "imbalance_jax")
    imports.update({k: v for k, v in _third_party_imports(ROOT / "experiments").items() if k not in BENCHMARK_ONLY})
    for module in _third_party_imports(ROOT / "configs"):
        imports.setdefault(module, set())
    missing = {m: sorted(files) for m, files in imports.items()
               if DISTRIBUTION.get(m, m).lower().replace("_", "-") not in declared}
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"


def test_losses_import_only_jax_chex_numpy_statically():
    imports = _third_party_imports(ROOT / "imbalance_jax" / "losses")
    assert set(imports) <= {"jax", "chex", "numpy"}, imports
    for path in (ROOT / "imbalance_jax" / "losses").rglob("*.py"):  # and no other imbalance_jax package
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("imbalance_jax"):
                assert node.module.startswith("imbalance_jax.losses"), (path.name, node.module)
    package_init = ast.parse((ROOT / "imbalance_jax" / "__init__.py").read_text())
    assert not [n for n in ast.walk(package_init) if isinstance(n, (ast.Import, ast.ImportFrom))]


def test_importing_losses_loads_no_trainer_dependency():
    code = ("import sys, json\nfrom imbalance_jax import losses\n"
            f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({TRAIN_ONLY_MODULES!r}))))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


def test_version_has_a_single_source():
    assert PYPROJECT["project"]["dynamic"] == ["version"] and "version" not in PYPROJECT["project"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "imbalance_jax.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+((a|b|rc)\d+)?(\.dev\d+)?", imbalance_jax.__version__)
    # setuptools reads the attribute statically (no import): it must be a plain string literal.
    module = ast.parse((ROOT / "imbalance_jax" / "__init__.py").read_text())
    literal = [n.value.value for n in module.body if isinstance(n, ast.Assign)
               and any(getattr(t, "id", None) == "__version__" for t in n.targets)
               and isinstance(n.value, ast.Constant)]
    assert literal == [imbalance_jax.__version__]


def test_py_typed_ships():
    assert (ROOT / "imbalance_jax" / "py.typed").is_file()
    assert "py.typed" in PYPROJECT["tool"]["setuptools"]["package-data"]["imbalance_jax"]


def test_requirements_pin_every_declared_distribution():
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"requirements.txt must pin exact versions: {line!r}"
            pins[_name(name)] = version
    declared = PYPROJECT["project"]["dependencies"] + PYPROJECT["project"]["optional-dependencies"]["train"]
    assert {_name(r) for r in declared} <= set(pins), set(map(_name, declared)) - set(pins)


def test_ci_runs_the_core_install_check_and_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "grep -E '^(jax|jaxlib|chex|numpy)==' requirements.txt" in ci
    assert "--no-deps -e ." in ci and ".ci/check_core_install.py" in ci
    assert ci.rstrip().splitlines()[-1] == ".venv/bin/python -m pytest -q"
    assert ".venv/bin/python -m pytest -q" in (ROOT / "README.md").read_text()


@pytest.mark.parametrize("folder", ["imbalance_jax", "configs", "experiments", "tests", "docs"])
def test_docstrings_cite_no_document_outside_the_repository(folder):
    for path in [p for ext in ("*.py", "*.md") for p in (ROOT / folder).rglob(ext) if "runs" not in p.parts]:
        text = path.read_text()
        # The design notes kept outside the repository, and any path to a Markdown file (e.g. in a papers folder) that is
        # not in it; a bare name like report.md is a run output.
        for reference in re.findall(r"DESIGN\.md|[\w.-]+(?:/[\w.-]+)+\.md", text):
            assert (ROOT / reference).is_file(), f"{path.name} cites {reference}, which is not in the repository"
