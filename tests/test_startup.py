"""Start-up and exit costs: GX's rarely used heavy imports are deferred, and the CLI's fast exit keeps exit codes
and output. Each case runs in a fresh interpreter, since both are about what a new process does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.conftest import REPO, write_project


def _py(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)


def test_gx_runs_without_loading_altair_or_scipy_stats_until_something_uses_them() -> None:
    code = """
import sys
from quality.gx import runner
runner()
print('loaded', 'scipy.stats._stats_py' in sys.modules, 'altair.vegalite' in sys.modules)
import great_expectations.expectations.core.expect_column_kl_divergence_to_be_less_than as kl
from scipy.stats import norm
print('norm', norm.cdf(0.0), 'entropy', round(float(kl.stats.entropy([0.5, 0.5])), 4), kl.alt.Chart.__name__)
print('loaded', 'scipy.stats._stats_py' in sys.modules, 'altair.vegalite' in sys.modules)
"""
    r = _py(code)
    lines = [x for x in r.stdout.splitlines() if x.startswith(("loaded", "norm"))]
    assert lines == ["loaded False False", "norm 0.5 entropy 0.6931 Chart", "loaded True True"], r.stderr[-800:]


def test_a_deferred_module_that_is_already_imported_is_left_alone() -> None:
    r = _py("import sys, scipy.stats as s; from quality.defer import defer; defer('scipy.stats'); "
            "print(sys.modules['scipy.stats'] is s)")
    assert r.stdout.strip() == "True", r.stderr[-500:]


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "400"}  # rich wraps at the terminal width; the tmp path's length varies
    return subprocess.run([sys.executable, "-m", "lifecycle.cli", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300, env=env)


def test_cli_exit_codes_and_output_survive_the_fast_exit(tmp_path: Path) -> None:
    """`zones validate` loads GX (it checks the suites), so it leaves through the fast exit: the error text, the
    exit code and the normal output must all still arrive."""

    def bad(raw: dict[str, Any]) -> None:
        raw["datasets"]["utbetalning"]["quality"]["expectations"].append(
            {"expect_column_values_to_be_betwen": {"column": "brutto_sek"}})

    (tmp_path / "good").mkdir()
    (tmp_path / "bad").mkdir()
    good = write_project(tmp_path / "good", datasets=["utbetalning"])
    broken = write_project(tmp_path / "bad", datasets=["utbetalning"], edit=bad)
    subprocess.run([sys.executable, "-m", "lifecycle.cli", "demo", "seed", "--config", str(good), "--scale", "1"],
                   cwd=REPO, capture_output=True, text=True, timeout=300, check=True)
    ok = _cli(tmp_path, "validate", "--config", str(good))
    assert ok.returncode == 0 and " ".join(ok.stdout.split()).endswith("1 datasets valid"), ok.stderr[-800:]
    err = _cli(tmp_path, "validate", "--config", str(broken))
    assert err.returncode == 2, (err.returncode, err.stderr[-800:])
    assert "did you mean 'expect_column_values_to_be_between'" in " ".join((err.stderr + err.stdout).split())


def test_gx_runs_without_its_pandas_and_spark_datasources_and_loads_them_when_asked() -> None:
    code = """
import sys
from quality.gx import runner
runner()
def skipped():
    return sorted(m.rpartition('.')[2] for m in sys.modules if m.startswith('great_expectations.datasource.fluent.')
                  and m.rpartition('.')[2].startswith(('pandas_', 'spark_')))
print('skipped', skipped(), 'PandasDatasource' in vars(sys.modules['great_expectations.datasource.fluent']))
import great_expectations as gx
import pandas as pd
ctx = gx.get_context(mode='ephemeral')
ctx.variables.progress_bars = {'globally': False}
ds = ctx.data_sources.add_pandas('p')
from great_expectations.datasource.fluent import PandasDatasource, SparkDatasource
from great_expectations.datasource.fluent.sources import DataSourceManager
batch = ds.add_dataframe_asset('a').add_batch_definition_whole_dataframe('b').get_batch(
    batch_parameters={'dataframe': pd.DataFrame({'x': [1.0, 2.0, None]})})
res = batch.validate(gx.expectations.ExpectColumnValuesToNotBeNull(column='x'))
print('late', isinstance(ds, PandasDatasource), PandasDatasource.__module__, res.success,
      res.result['unexpected_count'], DataSourceManager.type_lookup['spark'] is SparkDatasource,
      'pandas_datasource' in skipped(), 'add_spark' in dir(ctx.data_sources))
"""
    r = _py(code)
    lines = [x for x in r.stdout.splitlines() if x.startswith(("skipped", "late"))]
    assert lines == ["skipped [] False",
                     "late True great_expectations.datasource.fluent.pandas_datasource False 1 True True True"], \
        r.stderr[-800:]


def test_gx_types_looked_up_by_name_load_the_skipped_datasources() -> None:
    r = _py("from quality.defer import import_gx; import_gx(); "
            "from great_expectations.datasource.fluent.sources import DataSourceManager as M; "
            "print(M.type_lookup['pandas'].__name__, M.type_lookup['spark_filesystem'].__name__)")
    assert r.stdout.strip().splitlines()[-1:] == ["PandasDatasource SparkFilesystemDatasource"], r.stderr[-800:]


def test_gx_lists_the_skipped_datasources_among_its_factories() -> None:
    r = _py("import sys; from quality.gx import runner; f = runner().context.data_sources.factories; "
            "print('add_pandas' in f, 'add_spark' in f, 'add_sql' in f, "
            "'great_expectations.datasource.fluent.pandas_datasource' in sys.modules)")
    assert r.stdout.strip().splitlines()[-1:] == ["True True True True"], r.stderr[-800:]


def test_gx_imported_before_datazones_is_left_whole() -> None:
    r = _py("import great_expectations.datasource.fluent as f; from quality.gx import runner; runner(); "
            "print(getattr(f.PandasDatasource, '_dz_placeholder', False), hasattr(runner().context.data_sources, "
            "'add_pandas'), '__getattr__' in vars(f))")
    assert r.stdout.strip().splitlines()[-1:] == ["False True False"], r.stderr[-800:]


def test_gx_skipped_modules_imported_directly_first_still_load_all_the_rest() -> None:
    """A skipped module imported by name first (say, by unpickling one of its classes) imports the names it needs
    from the package one module at a time: every datasource GX has is registered afterwards."""
    r = _py("import great_expectations as gx; n = len(list(gx.datasource.fluent.sources.DataSourceManager.type_lookup"
            ".type_names()))\n"
            "import subprocess, sys\n"
            "code = ('from quality.defer import import_gx; import_gx(); '\n"
            "        'import great_expectations.datasource.fluent.spark_filesystem_datasource; '\n"
            "        'from great_expectations.datasource.fluent.sources import DataSourceManager as M; '\n"
            "        'ctx = __import__(\"great_expectations\").get_context(mode=\"ephemeral\"); '\n"
            "        's3 = M.type_lookup[\"spark_s3\"].__name__; add = callable(ctx.data_sources.add_spark_s3); '\n"
            "        'print(len(list(M.type_lookup.type_names())), s3, add)')\n"
            "out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True).stdout\n"
            "print(n, out.split()[-3:])")
    n, rest = r.stdout.strip().splitlines()[-1].split(" ", 1)
    assert rest == f"['{n}', 'SparkS3Datasource', 'True']", r.stderr[-800:]


def test_gx_types_looked_up_from_two_threads_at_once_are_both_found() -> None:
    r = _py("import threading, time; from quality import defer; defer.import_gx()\n"
            "from great_expectations.datasource.fluent.sources import DataSourceManager as M\n"
            "out = {}\n"
            "def look(i):\n"
            "    try:\n"
            "        out[i] = M.type_lookup['pandas'].__name__\n"
            "    except LookupError as e:\n"
            "        out[i] = repr(e)[:40]\n"
            "ts = [threading.Thread(target=look, args=(i,)) for i in range(2)]\n"
            "with defer._gx_lock:  # both threads miss the type and wait for the one load\n"
            "    [t.start() for t in ts]; time.sleep(0.3)\n"
            "[t.join() for t in ts]\n"
            "print(sorted(out.items()))")
    assert r.stdout.strip().splitlines()[-1] == "[(0, 'PandasDatasource'), (1, 'PandasDatasource')]", r.stderr[-800:]
