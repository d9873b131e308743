"""The shape of the house, checked by parsing the package: layers import only downwards (imports
inside functions included), there is no import circle, and no module uses another module's
``_private`` names.
"""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "patientml_widgets"

#: each layer may import itself and the layers below it (lowest first)
LAYERS = [
    ("errors",),
    ("arguments",),
    (
        "records",
        "store",
        "imaging",
        "training",
        "interactive",
        "demo",
        "dicom_demo",
        "trust",
        "team",
        "agreement",
        "bootstrap",
        "evaluation",
        "model_card",
    ),
    ("reading",),
    ("query",),
    ("session",),
    ("policy", "predictions", "model_code"),
    ("exchange", "runs", "worker"),
    ("project",),
    ("widgets",),
    ("__init__", "__main__"),
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, ast.Module]:
    return {module_name(p): ast.parse(p.read_text(), str(p)) for p in sorted(PACKAGE.rglob("*.py"))}


def is_package(name: str) -> bool:
    return name == "__init__" or (PACKAGE / name.replace(".", "/") / "__init__.py").exists()


def imports_of(name: str, tree: ast.Module, known: set[str]) -> set[str]:
    """The package modules ``name`` imports (``from . import x`` counts as importing ``x``)."""
    found = set()
    base = name.split(".") if is_package(name) and name != "__init__" else name.split(".")[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                target = ".".join([*anchor, *(node.module.split(".") if node.module else [])])
            elif node.module and node.module.startswith("patientml_widgets"):
                target = node.module.removeprefix("patientml_widgets").lstrip(".")
            else:
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}" if target else alias.name
                found.add(sub if sub in known else (target or "__init__"))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("patientml_widgets"):
                    found.add(alias.name.removeprefix("patientml_widgets").lstrip(".") or "__init__")
    return {m for m in found if m in known and m != name}


def layer_of(name: str) -> int:
    top = name.split(".")[0]
    for rank, layer in enumerate(LAYERS):
        if top in layer:
            return rank
    raise AssertionError(f"module {name} is in no layer of tests/test_architecture.py: place it")


def graph() -> dict[str, set[str]]:
    trees = modules()
    known = set(trees)
    return {name: imports_of(name, tree, known) for name, tree in trees.items()}


def test_layers_import_only_downwards():
    upward = [
        f"{name} (layer {layer_of(name)}) imports {other} (layer {layer_of(other)})"
        for name, targets in graph().items()
        for other in targets
        if layer_of(other) > layer_of(name)
    ]
    assert upward == []


def test_there_is_no_import_circle():
    edges = graph()
    circles = []

    def visit(node, path, on_path, done):
        on_path.add(node)
        path.append(node)
        for target in sorted(edges[node]):
            if target in on_path:
                circles.append([*path[path.index(target) :], target])
            elif target not in done:
                visit(target, path, on_path, done)
        path.pop()
        on_path.discard(node)
        done.add(node)

    done: set[str] = set()
    for start in sorted(edges):
        if start not in done:
            visit(start, [], set(), done)
    assert circles == []


def defined_private_names(tree: ast.Module) -> set[str]:
    """The ``_names`` a module defines: functions, classes, assigned names and attributes."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
    return {n for n in names if n.startswith("_")}


def private_misuse(trees: dict[str, ast.Module]) -> list[str]:
    defined = {name: defined_private_names(tree) | {name.split(".")[-1]} for name, tree in trees.items()}
    everywhere = {n for names in defined.values() for n in names if n.startswith("_")}
    misuse = []
    for name, tree in trees.items():
        for node in ast.walk(tree):
            used = []
            if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
                used = [node.attr]
            elif isinstance(node, ast.ImportFrom):
                used = [a.name for a in node.names]
                if node.module:
                    used += node.module.split(".")
            for attr in used:
                private = attr.startswith("_") and not (attr.startswith("__") and attr.endswith("__"))
                if private and attr in everywhere and attr not in defined[name]:
                    misuse.append(f"{name}:{node.lineno} uses {attr}")
    return misuse


def test_no_module_uses_another_modules_private_names():
    assert private_misuse(modules()) == []


def test_the_checks_see_what_they_look_for():
    known = {"session", "project", "widgets.table", "widgets._helpers"}
    tree = ast.parse("def f():\n    from .project import Project\n")
    assert imports_of("session", tree, known) == {"project"}  # an import inside a function counts
    assert layer_of("project") > layer_of("session")
    trees = {
        "session": ast.parse("class Session:\n    def __init__(self):\n        self._store = 1\n"),
        "project": ast.parse("def f(s):\n    return s._store\n"),
        "widgets.table": ast.parse("from ._helpers import x\n"),
        "widgets._helpers": ast.parse("x = 1\n"),
    }
    assert private_misuse(trees) == ["project:2 uses _store", "widgets.table:1 uses _helpers"]
