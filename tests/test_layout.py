"""The package's plan holds: imports that run one way (down the layers), and harness modules
imported inside functions only where a heavy library must stay off the CLI's fast path (the
docs/contributing.md, "Layers", shows the same table). Modules are as long as their one job
needs: there is no line limit."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

HARNESS = Path(__file__).resolve().parents[1] / "harness"

# Lowest first: a package may import its own modules and those of lower layers, never a package
# of its own layer or above. "entry" is the command-line and public-name modules at the top.
LAYERS = [
    ("base",),
    ("records", "data", "metrics"),
    ("space",),
    ("config",),
    ("report", "train"),
    ("export",),
    ("study",),
    ("cli",),
    ("entry",),
]
LAYER = {package: level for level, packages in enumerate(LAYERS) for package in packages}
# Harness imports inside functions, each with its reason (nothing else may import lazily).
LAZY = {
    ("study/objective.py", "harness.train.callbacks"): "imports transformers (6 s)",
    ("study/objective.py", "harness.train.finetune"): "imports transformers (6 s)",
    ("study/objective.py", "harness.train.compute"): "imports transformers (6 s)",
    ("study/ranks.py", "harness.train.callbacks"): "imports transformers (6 s)",
    ("study/ranks.py", "harness.train.finetune"): "imports transformers (6 s)",
    ("cli/sweep.py", "harness.study"): "keeps --help and a config error under 0.6 s",
    ("__init__.py", "harness.api"): "import harness stays light: harness.run loads the study",
    ("cli/sweep.py", "harness.data"): "keeps --help and a config error under 0.6 s",
}


def modules() -> list[Path]:
    """Every module of the package, the evaluate metric scripts under metrics/<name>/ included
    (they import no harness module, so they pass the layer checks as they are)."""
    return sorted(HARNESS.rglob("*.py"))


def package_of(path: Path) -> str:
    parts = path.relative_to(HARNESS).parts
    if len(parts) == 1 or parts[-1] == "__main__.py":
        return "entry"
    return parts[0]


def harness_imports(path: Path) -> list[tuple[str, bool]]:
    """(imported harness module, whether the import is inside a function)."""
    tree = ast.parse(path.read_text())
    inner = {
        id(node)
        for fn in ast.walk(tree)
        if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef)
        for node in ast.walk(fn)
    }
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{path}: relative import (use harness.…)")
        names = (
            [node.module]
            if isinstance(node, ast.ImportFrom) and node.module
            else [a.name for a in node.names]
            if isinstance(node, ast.Import)
            else []
        )
        for name in names:
            if name == "harness" and isinstance(node, ast.ImportFrom):
                names_from = [f"harness.{a.name}" for a in node.names]
                found += [(n, id(node) in inner) for n in names_from]
            elif name.startswith("harness."):
                found.append((name, id(node) in inner))
    return found


def test_every_package_has_a_layer():
    packages = {package_of(p) for p in modules()}
    assert packages <= set(LAYER), packages - set(LAYER)


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(HARNESS)))
def test_imports_run_down_the_layers(path):
    own = package_of(path)
    for module, lazy in harness_imports(path):
        target = module.split(".")[1]
        entry = ("sweep", "predict", "errors", "checkpoint", "api")
        target = "entry" if target in entry else target
        assert target == own or LAYER[target] < LAYER[own], (
            f"{path.relative_to(HARNESS)} ({own}, layer {LAYER[own]}) imports {module} "
            f"({target}, layer {LAYER[target]}): upward or sideways"
        )
        if lazy:
            key = (str(path.relative_to(HARNESS)), module)
            assert key in LAZY, f"{key}: a harness import inside a function (import it at the top)"


# The fine-tune knows no study (an extra rule on top of LAYERS, which puts records below train):
# which checkpoints a study keeps, and what a trial reports, are the study's to say.
NOT_IMPORTED_BY = {"train": ("harness.records", "harness.study")}


@pytest.mark.parametrize(
    "path",
    [p for p in modules() if package_of(p) in NOT_IMPORTED_BY],
    ids=lambda p: str(p.relative_to(HARNESS)),
)
def test_the_fine_tune_imports_no_study_or_records(path):
    banned = NOT_IMPORTED_BY[package_of(path)]
    for module, _ in harness_imports(path):
        assert not any(module == b or module.startswith(b + ".") for b in banned), (
            f"{path.relative_to(HARNESS)} imports {module}: {package_of(path)}/ may not import "
            f"{' or '.join(banned)}"
        )
