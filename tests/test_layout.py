"""The project's shape, checked: the service loads only the torch-free contract of the trainer, the
trainer imports nothing of the service, no two project modules import each other (directly or round
a longer loop, lazy imports included), and a module over ~300 lines says why in its docstring."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.helpers import REPO

PACKAGES = ("trainer", "service")
# What of the trainer the service may load: settings and the contract (no torch), plus the pictures
# and terminal tables it draws from stored JSON.
SERVICE_MAY_LOAD = {
    "trainer",
    "trainer.config",
    "trainer.config_base",
    "trainer.config_data",
    "trainer.config_model",
    "trainer.config_optim",
    "trainer.config_errors",  # the one-line messages of a bad setting, for the 422s, and warnings
    "trainer.config_files",  # reading job specs (the CLI client)
    "trainer.safe_yaml",
    "trainer.config_reference",  # the settings reference's tables (docs/service-settings.md)
    "trainer.markdown_sections",  # the generated sections of the docs
    "trainer.artifacts",
    "trainer.artifacts.plots",
    "trainer.artifacts.terminal",
}
SERVICE_MAY_LOAD_UNDER = ("trainer.contract",)
LONG = 330  # "~300 lines"
LONG_REASON = "Longer than 300 lines because"


def _allowed(module: str) -> bool:
    return (
        module in SERVICE_MAY_LOAD
        or module.startswith(tuple(p + "." for p in SERVICE_MAY_LOAD_UNDER))
        or (module in SERVICE_MAY_LOAD_UNDER)
    )


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(path: Path, name: str, modules: dict[str, Path]) -> set[str]:
    """The project modules `path` imports anywhere in it (top level, functions, TYPE_CHECKING)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(path, name, modules) for name, path in modules.items()}


def test_the_service_loads_only_the_trainers_contract_even_without_torch():
    """Imports the API, the command line and every service module with torch unimportable, and lists
    which project modules were loaded."""
    code = """
import importlib.abc, json, pkgutil, sys
class NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "torchvision"):
            raise ImportError(f"torch is not installed (the test made {name} unimportable)")
sys.meta_path.insert(0, NoTorch())
import service
for m in pkgutil.walk_packages(service.__path__, "service."):
    importlib.import_module(m.name)
from service.app import create_app
from trainer.cli import build_parser
build_parser()  # the service's subcommands, through their entry point
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("trainer", "service"))))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    import json

    loaded = json.loads(done.stdout)
    trainer = [m for m in loaded if m.startswith("trainer")]
    assert "service.app" in loaded and "service.cli" in loaded  # it did import them
    command_line = {"trainer.cli", "trainer.commands"}  # the `anchor-opt` process itself (no torch at import)
    assert [m for m in trainer if not _allowed(m) and m not in command_line] == [], trainer


def test_service_code_imports_only_the_contract_of_the_trainer():
    """Statically, lazy imports included: the service never reaches past the contract."""
    bad = {
        f"{name} -> {target}"
        for name, targets in _graph().items()
        if name.startswith("service")
        for target in targets
        if target.startswith("trainer") and not _allowed(target)
    }
    assert bad == set()


def test_the_trainer_imports_nothing_of_the_service():
    bad = {
        f"{n} -> {t}"
        for n, ts in _graph().items()
        if n.startswith("trainer")
        for t in ts
        if t.startswith("service")
    }
    assert bad == set()


def test_no_import_cycles_between_project_modules():
    graph = _graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []
    sys.setrecursionlimit(10_000)

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    assert cycles == []


def test_a_module_over_300_lines_says_why():
    long = []
    for path in _modules().values():
        lines = len(path.read_text().splitlines())
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        if lines > LONG and LONG_REASON not in doc:
            long.append(f"{path.relative_to(REPO)}: {lines} lines")
    assert long == [], f"split these, or say in the docstring '{LONG_REASON} ...'"


# Where the environment may be read: the entry points (each reads its settings once and passes them
# down), and the few places that read another program's convention on purpose.
ENV_READERS = {
    "trainer.commands": "the trainer's commands: StorageSettings once per command",
    "service.demo": "`anchor-opt demo`: the service's settings, once",
    "service.cli": "the client commands' entry point: the API URL and token",
    "service.settings": "load_settings: the service's settings, once, at its start",
    "service.app": "create_app without settings loads them (uvicorn --factory)",
    "trainer.train.ray_resources": "resource_wait_s(), which `anchor-opt run-job` calls once",
    "trainer.train.ray_run": "ensure_ray: RAY_ADDRESS, Ray's own way to name a cluster",
    "service.launcher": "auth_token(): the Ray token where Ray itself looks, read once by the service",
    "service.ray_head": "the head's environment is the service's, scrubbed",
    "service.ray_head_site": "default_temp_dir(): RAY_TMPDIR, as Ray reads it for its own default",
    "service.capacity": "CUDA_VISIBLE_DEVICES: the GPUs the embedded head may count, as Ray counts them",
}
SETTINGS_CLASSES = {"StorageSettings", "ServiceSettings", "JobLimits"}


def _env_reads(path: Path) -> list[int]:
    """Lines that read the process environment: os.environ reads, os.getenv, and settings classes
    built without arguments (pydantic-settings reads the environment then)."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
            target = ast.unparse(f)
            if target in ("os.environ.get", "os.getenv", "load_settings") or (
                name in SETTINGS_CLASSES and not node.args and not node.keywords
            ):
                lines.append(node.lineno)
        elif isinstance(node, ast.Subscript) and ast.unparse(node.value) == "os.environ":
            if isinstance(node.ctx, ast.Load):
                lines.append(node.lineno)
        elif isinstance(node, ast.Compare) and any(ast.unparse(c) == "os.environ" for c in node.comparators):
            lines.append(node.lineno)
    return lines


def test_settings_are_read_at_the_entry_points_and_passed_down():
    """No module reads the environment behind its caller's back (issue 15): a library function gets
    its settings from whoever called it."""
    found = {
        f"{name}:{line}"
        for name, path in _modules().items()
        if name not in ENV_READERS
        for line in _env_reads(path)
    }
    assert found == set()
