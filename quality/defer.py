"""Defer modules Great Expectations imports eagerly but uses only inside a few expectations we rarely run.

GX 1.24 imports ``altair`` (charts for ``expect_column_kl_divergence_to_be_less_than``) and ``scipy.stats``
(that expectation and two KS-test metrics) when ``great_expectations`` is imported: ~0.8 s of its ~2.6 s import
here, paid by every promote, including a small incremental one. :func:`defer` puts a stand-in module in
``sys.modules``; the first attribute anyone reads from it imports the real module and the stand-in takes over its
namespace, so code that does use them (a suite declaring the KL-divergence expectation, Data Docs charts) works
unchanged, one import later.

``importlib.util.LazyLoader`` cannot do this on Python 3.11: ``import x`` reads ``x.__spec__``, which triggers
the load at once.

:func:`import_gx` goes one step further for GX's own fluent datasources. ``great_expectations.datasource.fluent``
imports every pandas and Spark datasource and asset module when GX is imported (~0.8 s of CPU here, a quarter of
the import); the gate uses GX's SQL datasource only. While GX is first imported those modules are replaced by
placeholders; afterwards the placeholders are removed again and the package resolves their names on first use
(PEP 562), so ``from great_expectations.datasource.fluent import PandasDatasource`` or ``add_pandas`` later in
the same process imports and registers the real thing.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import threading
from types import ModuleType
from typing import Any, cast

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


FLUENT = "great_expectations.datasource.fluent"
_SKIPPED_PREFIXES = ("pandas_", "spark_")  # submodules of FLUENT: GX's pandas and Spark datasources
_gx_lock = threading.RLock()


class _Placeholder(ModuleType):
    """Stands in for a skipped datasource module while GX's fluent package is being initialised."""

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        value = type(attr, (), {"__module__": self.__name__, "_dz_placeholder": True})
        setattr(self, attr, value)
        return value


class _SkipDatasources(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self) -> None:
        self.skipped: list[str] = []

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        parent, _, child = fullname.rpartition(".")
        if parent == FLUENT and child.startswith(_SKIPPED_PREFIXES):
            return importlib.machinery.ModuleSpec(fullname, self)
        return None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        self.skipped.append(spec.name)
        return _Placeholder(spec.name)

    def exec_module(self, module: ModuleType) -> None:
        pass


def import_gx() -> ModuleType:
    """Import ``great_expectations`` without the rarely used modules (:data:`DEFERRED`) and without its pandas and
    Spark datasources (module docstring). A GX already imported is returned as it is."""
    defer_heavy()
    with _gx_lock:
        if "great_expectations" in sys.modules:
            return sys.modules["great_expectations"]
        finder = _SkipDatasources()
        sys.meta_path.insert(0, finder)
        try:
            import great_expectations
        finally:
            sys.meta_path.remove(finder)
            _restore(finder.skipped)
        return great_expectations


def _restore(skipped: list[str]) -> None:
    """Drop the placeholders and let every way GX reaches a pandas or Spark datasource import them (once): a name
    of the fluent package (PEP 562), a ``data_sources.add_pandas``-style method, a lookup of the type by name."""
    fluent = sys.modules.get(FLUENT)
    placeholders = {name: sys.modules.pop(name) for name in skipped if name in sys.modules}
    if fluent is None or not placeholders:
        return
    owner: dict[str, str] = {}  # name in the fluent package -> the module that defines it
    for name, placeholder in placeholders.items():
        child = name.rpartition(".")[2]
        if getattr(fluent, child, None) is placeholder:
            delattr(fluent, child)
        for attr, value in list(vars(fluent).items()):
            if getattr(value, "_dz_placeholder", False) and value.__module__ == name:
                delattr(fluent, attr)
                owner[attr] = name
    modules = list(placeholders)  # in GX's own import order
    state = {"done": False, "busy": False}

    def load() -> None:
        """Import the skipped modules, in GX's own order (each then finds the names it imports from the package),
        once; not again from inside itself, and again after a failure."""
        with _gx_lock:
            if state["done"] or state["busy"]:
                return
            state["busy"] = True
            try:
                for name in modules:
                    importlib.import_module(name)
                for attr, name in owner.items():
                    setattr(fluent, attr, getattr(sys.modules[name], attr))
                state["done"] = True
            finally:
                state["busy"] = False

    def package_getattr(attr: str) -> Any:  # PEP 562, on the fluent package; the modules import names from it
        if attr not in owner:
            raise AttributeError(f"module {FLUENT!r} has no attribute {attr!r}")
        with _gx_lock:  # only the module defining the name (it imports what it needs): no loop back into load()
            value = getattr(importlib.import_module(owner[attr]), attr)
        setattr(fluent, attr, value)
        return value

    cast(Any, fluent).__getattr__ = package_getattr
    from great_expectations.datasource.fluent.sources import DataSourceManager
    from great_expectations.datasource.fluent.type_lookup import TypeLookup

    crud = DataSourceManager.__getattr__

    def manager_getattr(self: Any, attr: str) -> Any:
        if attr.startswith("_"):  # never a crud method (copy's __deepcopy__ probe, …): GX's own error message
            raise AttributeError(f"No crud method {attr!r}")  # would list, and so load, every factory
        loaded = state["done"]
        try:
            return crud(self, attr)
        except AttributeError:
            if loaded:  # (GX's error message may have loaded them just now: then try once more)
                raise
            load()
            return crud(self, attr)

    def missing(self: Any, key: Any) -> Any:
        load()  # a no-op once done (or while another thread was doing it: the lock waited for it)
        if key in self.data:
            return self.data[key]
        raise KeyError(key)

    listing = cast(property, vars(DataSourceManager)["factories"]).fget
    assert listing is not None

    def factories(self: Any) -> Any:  # what `context.data_sources` offers (its dir(), its error messages): all
        load()
        return listing(self)

    cast(Any, DataSourceManager).__getattr__ = manager_getattr
    cast(Any, DataSourceManager).factories = property(factories)
    cast(Any, TypeLookup).__missing__ = missing
