"""The package's shape: rooms that import only downwards, no import cycles, inference free of
training, and function-level imports only where a comment says what they buy."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import handvox

SRC = Path(handvox.__file__).resolve().parent

# Each room (a top-level module or sub-package) may import rooms of its own rank or lower, never
# higher: data flows one way, from files and geometry to the command line.
RANKS = {
    # leaves: no handvox imports beyond each other
    "errors": 0, "atomic": 0, "config": 0, "camera": 0, "joints": 0, "geometry": 0,
    "viz": 1,  # drawing: leaves only
    "io": 1,  # reading and writing data
    "hand": 2,  # the kinematic hand, IK, BVH
    "synth": 3,  # rendering training data
    "estimator": 4,  # inference
    "eval": 5,  # scoring (its protocol runs the estimator on synthetic test sets)
    "train": 6,
    "cli": 7,
}  # fmt: skip
INFERENCE = ("io", "hand", "synth", "estimator", "viz")


def module_name(path: Path) -> str:
    parts = ["handvox", *path.relative_to(SRC).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def room(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def imports(path: Path) -> list[tuple[str, int, bool, str]]:
    """(imported handvox module, line, at function level, the source line and the one above)."""
    text = path.read_text()
    lines = text.splitlines()
    tree = ast.parse(text)
    me = module_name(path)
    is_pkg = path.name == "__init__.py"
    out = []

    def visit(node: ast.AST, nested: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = nested or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                if isinstance(child, ast.Import):
                    names = [a.name for a in child.names]
                elif child.level:  # relative: resolve against this module's package
                    base = me.split(".")[: len(me.split(".")) - child.level + is_pkg]
                    mod = ".".join(base + ([child.module] if child.module else []))
                    names = [mod] + [f"{mod}.{a.name}" for a in child.names]
                else:
                    names = [child.module] + [f"{child.module}.{a.name}" for a in child.names]
                ctx = "\n".join(lines[max(0, child.lineno - 2) : child.end_lineno])
                for n in names:
                    if n and (n == "handvox" or n.startswith("handvox.")):
                        out.append((n, child.lineno, nested, ctx))
                if nested and not any(n.startswith("handvox") for n in names if n):
                    out.append((names[0], child.lineno, True, ctx))
            elif isinstance(child, ast.If) and _is_type_checking(child.test):
                continue  # annotations only: nothing runs
            else:
                visit(child, inner)

    visit(tree, False)
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return isinstance(test, ast.Name) and test.id == "TYPE_CHECKING"


MODULES = {module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def resolve(name: str) -> str | None:
    """The module an import names (``handvox.x.y`` may be module x.y or name y of module x)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def graph() -> dict[str, set[str]]:
    g: dict[str, set[str]] = {m: set() for m in MODULES}
    for m, path in MODULES.items():
        for name, _, _, _ in imports(path):
            target = resolve(name) if name.startswith("handvox") else None
            if target and target != m:
                g[m].add(target)
    return g


def test_no_import_cycles():
    g = graph()
    seen: dict[str, int] = {}  # 1: on the stack, 2: done
    cycles = []

    def dfs(m: str, stack: list[str]) -> None:
        seen[m] = 1
        for t in sorted(g[m]):
            # A submodule importing its own package's __init__ is how packages work, not a cycle.
            if m.startswith(t + "."):
                continue
            if seen.get(t) == 1:
                cycles.append(stack[stack.index(t) :] + [t])
            elif t not in seen:
                dfs(t, [*stack, t])
        seen[m] = 2

    for m in sorted(g):
        if m not in seen:
            dfs(m, [m])
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_rooms_import_only_downwards():
    bad = []
    for m, targets in graph().items():
        a = room(m)
        for t in targets:
            b = room(t)
            if a is None or b is None or a == b:
                continue
            if RANKS[b] > RANKS[a]:
                bad.append(f"{m} -> {t} ({a} rank {RANKS[a]} < {b} rank {RANKS[b]})")
    assert not bad, "upward imports:\n" + "\n".join(sorted(bad))


def test_inference_does_not_import_training():
    bad = [
        f"{m} -> {t}"
        for m, targets in graph().items()
        for t in targets
        if room(m) in INFERENCE and room(t) in ("train", "eval", "cli")
    ]
    assert not bad, "inference importing training, evaluation or the CLI:\n" + "\n".join(bad)


def test_every_room_is_ranked():
    rooms = {room(m) for m in MODULES} - {None}
    assert rooms <= set(RANKS), f"rank the new rooms: {sorted(rooms - set(RANKS))}"


def test_function_level_imports_say_why():
    """A function-level import must buy something (an optional dependency, a module that is
    slow to load and rarely needed) and say what in a comment on its line or the line above."""
    bad = []
    for path in MODULES.values():
        for _, line, nested, ctx in imports(path):
            if nested and "#" not in ctx:
                bad.append(f"{path.relative_to(SRC.parent)}:{line}: {ctx.splitlines()[-1].strip()}")
    assert not bad, "function-level imports without a reason:\n" + "\n".join(sorted(set(bad)))


def test_import_handvox_does_not_load_torch():
    """``import handvox`` (camera, joint sets, errors, records) leaves the process free to set
    OpenMP's environment before torch loads, as the command line does."""
    code = "import sys, handvox, handvox.camera, handvox.joints; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
