"""Defer modules Great Expectations imports eagerly but uses only inside a few expectations we rarely run.

GX 1.24 imports ``altair`` (charts for ``expect_column_kl_divergence_to_be_less_than``) and ``scipy.stats``
(that expectation and two KS-test metrics) when ``great_expectations`` is imported: ~0.8 s of its ~2.6 s import
here, paid by every promote, including a small incremental one. :func:`defer` puts a stand-in module in
``sys.modules``; the first attribute anyone reads from it imports the real module and the stand-in takes over its
namespace, so code that does use them (a suite declaring the KL-divergence expectation, Data Docs charts) works
unchanged, one import later.

``importlib.util.LazyLoader`` cannot do this on Python 3.11: ``import x`` reads ``x.__spec__``, which triggers
the load at once.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
from types import ModuleType
from typing import Any

DEFERRED = ("altair", "scipy.stats")
_lock = threading.RLock()


class Deferred(ModuleType):
    """A stand-in for a module that has not been imported yet; any attribute read imports it."""

    def __getattr__(self, attr: str) -> Any:
        return getattr(materialise(self), attr)


def defer(name: str) -> None:
    """Put a stand-in for ``name`` in ``sys.modules`` unless it is imported already (or not installed)."""
    with _lock:
        if name in sys.modules:
            return
        try:
            spec = importlib.util.find_spec(name)  # imports the parent package (``scipy``: light)
        except (ImportError, ValueError):
            return
        if spec is None:
            return
        stub = Deferred(name)
        if spec.submodule_search_locations is not None:
            stub.__path__ = list(spec.submodule_search_locations)
        sys.modules[name] = stub
        parent, _, child = name.rpartition(".")
        if parent:
            setattr(sys.modules[parent], child, stub)


def materialise(stub: ModuleType) -> ModuleType:
    """Import the real module behind ``stub`` (once) and give the stub its namespace."""
    name = stub.__name__
    with _lock:
        if sys.modules.get(name) is stub:
            del sys.modules[name]
            parent, _, child = name.rpartition(".")
            if parent and getattr(sys.modules.get(parent), child, None) is stub:
                delattr(sys.modules[parent], child)
            real = importlib.import_module(name)
            stub.__dict__.update({k: v for k, v in real.__dict__.items() if k != "__class__"})
        return sys.modules[name]


def defer_heavy() -> None:
    for name in DEFERRED:
        defer(name)
