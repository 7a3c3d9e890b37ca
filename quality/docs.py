"""GX Data Docs from the gate runs stored in the ledger (scrubbed results: counts and verdicts, no values).

The site is built on demand into a folder (default ``<project>/.datazones/quality``) by a file-backed GX context:
each stored gate run becomes a validation result under its suite, keyed by batch id, then ``build_data_docs``
renders the static site. Stewards open ``index.html``; nothing in it came from the data but counts.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any


def build(runs: list[dict[str, Any]], out_dir: Path) -> Path:
    """Render Data Docs for ``runs`` (rows of ``dz_gate_runs``) into ``out_dir``; return the index.html path."""
    from quality.defer import import_gx

    gx = import_gx()
    from great_expectations.core.expectation_validation_result import (
        expectationSuiteValidationResultSchema,
    )
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    import quality.expectations  # noqa: F401 — registers the datazones expectations so they render

    out_dir.mkdir(parents=True, exist_ok=True)
    context = gx.get_context(mode="file", project_root_dir=str(out_dir))
    store = context.validation_results_store
    for run in runs:
        if not run.get("result_json"):
            continue
        raw = json.loads(run["result_json"])
        raw.setdefault("meta", {})["batch_id"] = run["batch_id"]
        raw["suite_name"] = run["suite"]
        result = expectationSuiteValidationResultSchema.load(raw)
        at = run["at"] if isinstance(run["at"], datetime) else datetime.fromisoformat(str(run["at"]))
        key = ValidationResultIdentifier(
            expectation_suite_identifier=ExpectationSuiteIdentifier(name=run["suite"]),
            run_id=RunIdentifier(run_name=run["batch_id"], run_time=at), batch_identifier=run["batch_id"])
        store.set(key, result)
    urls = context.build_data_docs()
    site = next(iter(urls.values()), "")
    return Path(site.removeprefix("file://")) if site else out_dir

