"""Shared test setup: puts the SDK on ``sys.path`` and loads the examples (each an ``app.py``)
as modules of distinct names."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def load_example(name: str) -> ModuleType:
    """The module ``examples/<name>/app.py``, imported as ``example_<name>``."""
    module_name = f"example_{name}"
    loaded = sys.modules.get(module_name)
    if loaded is not None:
        return loaded
    spec = importlib.util.spec_from_file_location(module_name, EXAMPLES / name / "app.py")
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load the example {name}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module
