"""Package names that import their module on first use (PEP 562), so light tools start without torch."""
from __future__ import annotations

import importlib
import sys
from typing import Any, Callable, Mapping


def lazy_getattr(package: str, modules: Mapping[str, str]) -> Callable[[str], Any]:
    """The module-level ``__getattr__`` of ``package``: ``modules`` maps a public name to the module defining it.

    The first access imports that module and caches the value on the package, so later accesses are plain
    attribute lookups.
    """
    def __getattr__(name: str) -> Any:
        if name not in modules:
            raise AttributeError(f"module '{package}' has no attribute '{name}'")
        value = getattr(importlib.import_module(modules[name]), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
