"""The package's layering: the detection core does not import the classification half (which
imports the core), no module of the package hides an import of another inside a function, and
the imports between its modules run one way (no cycle)."""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "resnet_backbone"


def _module_name(path):
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in PACKAGE.rglob("*.py")}


def _imported_modules(name, path):
    """The package's modules that module `name` (at `path`) imports by name: `from .x import y`
    counts as an import of module .x.y where that is a module, else of .x."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            found.update(f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base
                         for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {module for module in found if module in MODULES and module != name}


def _package_imports(path):
    """(module imported, inside a function?) for each import of a resnet_backbone module."""
    found = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.ImportFrom) and (child.level or (child.module or "")
                                                       .startswith("resnet_backbone")):
                found.append(("." * child.level + (child.module or ""), inside))
            elif isinstance(child, ast.Import):
                found.extend((a.name, inside) for a in child.names
                             if a.name.startswith("resnet_backbone"))
            visit(child, inside)

    visit(ast.parse(path.read_text()), False)
    return found


def test_core_modules_never_import_the_classification_half_nor_inside_functions():
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE)
        for module, in_function in _package_imports(path):
            assert not in_function, f"{relative} imports {module} inside a function"
            if relative.parts[0] != "classification":
                assert "classification" not in module, f"{relative} imports {module}"


def test_imports_between_the_packages_modules_form_no_cycle():
    graph = {name: _imported_modules(name, path) for name, path in MODULES.items()}
    done, on_path = set(), []

    def visit(name):
        on_path.append(name)
        for imported in sorted(graph[name]):
            assert imported not in on_path, "import cycle: " + " -> ".join(
                on_path[on_path.index(imported):] + [imported])
            if imported not in done:
                visit(imported)
        on_path.pop()
        done.add(name)

    for name in sorted(graph):
        if name not in done:
            visit(name)
    assert len(graph) > 40
    assert graph["resnet_backbone.engine.trainer"] >= {"resnet_backbone.engine.hooks"}


def test_importing_the_package_registers_no_classifier_and_detection_configs_lack_its_keys(
        fresh_import):
    """In a fresh interpreter (conftest.FRESH_IMPORT)."""
    assert fresh_import["classification_modules"] == []
    assert fresh_import["image_classifier_registered"] is False
    assert fresh_import["classifier_keys_in_detection_config"] == [False, False]


# The package's layers, lowest first: a module imports only from its own layer or those below
# (a folder or a top-level module is one unit; "" is resnet_backbone/__init__.py).
LAYERS = (
    ("version", "files", "fields", "config"),
    ("modeling",),
    ("weights", "data", "export"),
    ("config_files", "model_zoo", "inference"),
    ("engine",),
    ("runs", "classification"),
    ("",),
)


def _unit(module):
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_imports_run_down_the_layers():
    rank = {unit: index for index, units in enumerate(LAYERS) for unit in units}
    units = {_unit(name) for name in MODULES}
    assert units <= set(rank), f"place {sorted(units - set(rank))} in LAYERS"
    for name, path in MODULES.items():
        for imported in _imported_modules(name, path):
            assert rank[_unit(name)] >= rank[_unit(imported)], (
                f"{name} imports {imported}, a layer above it (tests/test_layers.py LAYERS)")
