"""The layers of jobs/ (docs/architecture.md): contract <- runtime <- lake <- jobs <- surfaces.

Read from the source with `ast` (no Spark): a module imports only from its own layer or the layers
below it, the top of jobs/ holds only job modules, and no import circle exists between modules."""
from __future__ import annotations

import ast
from pathlib import Path

JOBS = Path(__file__).resolve().parent.parent / "jobs"
LAYERS = {"jobs.policy": 0, "jobs.runtime": 1, "jobs.lake": 2, "jobs.cli": 4, "jobs.pipeline": 4}
JOB_LAYER = 3
TOP_LEVEL_JOBS = {"__init__.py", "access.py", "anonymize.py", "backup.py", "pseudonymize.py", "retention.py"}


def _layer(module: str) -> int:
    return next((n for prefix, n in LAYERS.items() if module == prefix or module.startswith(prefix + ".")), JOB_LAYER)


def _modules() -> dict[str, ast.Module]:
    found = {}
    for path in sorted(JOBS.rglob("*.py")):
        name = ".".join(path.relative_to(JOBS.parent).with_suffix("").parts).removesuffix(".__init__")
        found[name] = ast.parse(path.read_text(), str(path))
    return found


def _imports(tree: ast.Module, *, runtime_only: bool) -> set[str]:
    """Modules of ours a module imports; `runtime_only` leaves out `if TYPE_CHECKING:` blocks."""
    skipped = set()
    if runtime_only:
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                skipped.update(id(n) for n in ast.walk(node))
    names = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("jobs"):
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names if a.name.startswith("jobs"))
    return names


def test_every_import_points_down_the_layers():
    upward = [(module, target) for module, tree in _modules().items()
              for target in _imports(tree, runtime_only=True) if _layer(target) > _layer(module)]
    assert upward == []


def test_the_top_of_jobs_holds_only_job_modules():
    assert {p.name for p in JOBS.glob("*.py")} <= TOP_LEVEL_JOBS
    assert {p.name for p in JOBS.iterdir() if p.is_dir() and p.name != "__pycache__"} == {
        "policy", "runtime", "lake", "statistics", "erasure", "generate", "cli", "pipeline"}


def _module_level_imports(tree: ast.Module) -> set[str]:
    # Imports at module level only: a function-local import is how a module defers an optional job.
    return _imports(ast.Module(body=[n for n in tree.body if not isinstance(n, (ast.FunctionDef, ast.ClassDef))],
                               type_ignores=[]), runtime_only=True)


def test_no_import_circle_between_modules():
    modules = _modules()
    graph = {m: {t for t in _module_level_imports(tree) if t in modules and t != m} for m, tree in modules.items()}
    # A package's __init__ importing its own submodules is how it re-exports; not a circle.
    for module, targets in graph.items():
        graph[module] = {t for t in targets if not t.startswith(module + ".")}
    state: dict[str, int] = {}
    circles = []

    def visit(module: str, stack: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                circles.append(stack[stack.index(target):] + [target])
            elif target not in state:
                visit(target, stack + [target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert circles == []
