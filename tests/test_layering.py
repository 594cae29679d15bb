"""Imports run downward: the training engine may use losses, assigners, samplers, boxes and models, never
the reverse. The loss reductions over processes live in :mod:`minidet.distributed`, below all of them."""
import ast
from pathlib import Path

import pytest

import minidet

ROOT = Path(minidet.__file__).parent
BELOW_ENGINE = ("losses", "assigners", "samplers", "boxes", "models")


def imported_modules(path: Path, root: Path = ROOT) -> list[str]:
    """Every module a file under the package ``root`` imports, relative imports resolved."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = ".".join(("minidet",) + path.relative_to(root).parent.parts)
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                names.append(f"{base}.{node.module}" if node.module else base)
            else:
                names.append(node.module)
    return names


@pytest.mark.parametrize("layer", BELOW_ENGINE)
def test_no_upward_import_of_the_engine(layer):
    files = sorted((ROOT / layer).rglob("*.py"))
    assert files, layer
    upward = {str(f.relative_to(ROOT)): m for f in files for m in imported_modules(f)
              if m == "minidet.engine" or m.startswith("minidet.engine.")}
    assert not upward, f"imports of minidet.engine below it: {upward}"


def test_distributed_reductions_sit_below_everything():
    mods = imported_modules(ROOT / "distributed.py")
    assert all(not m.startswith("minidet") for m in mods), mods


def test_engine_reexports_the_same_reductions():
    from minidet import distributed as low
    from minidet.engine import distributed as high

    for name in ("loss_normalizer", "all_reduce_sum", "all_reduce_mean", "is_dist", "rank", "world_size"):
        assert getattr(high, name) is getattr(low, name)


def test_the_check_sees_an_upward_import(tmp_path):
    """The AST scan catches both spellings of an upward import."""
    probe = tmp_path / "losses" / "probe.py"
    probe.parent.mkdir()
    probe.write_text("from ..engine.distributed import loss_normalizer\nimport minidet.engine.history\nfrom . import focal\n")
    assert imported_modules(probe, tmp_path) == ["minidet.engine.distributed", "minidet.engine.history", "minidet.losses"]
