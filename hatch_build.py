"""Hatch build hook: compile the HMAC-SHA-256 kernel (``lifecycle/hmac_sha256.c``) into ``lifecycle/_hmac_sha256.so``.

It is a plain C shared library loaded with ctypes (no Python headers needed), so any C compiler will do. When none
is available, or it fails, the build goes on without it and datazones computes the same pseudonyms with
polars-hash, about 3x slower (``lifecycle/fasthmac.py``). Editable installs build it in place; rebuild (reinstall)
after editing the C file.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

SOURCE = "lifecycle/hmac_sha256.c"
TARGET = "lifecycle/_hmac_sha256.so"


class NativeKernel(BuildHookInterface):  # type: ignore[misc]
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if os.environ.get("DATAZONES_NO_NATIVE") == "1":
            return
        src, out = Path(self.root, SOURCE), Path(self.root, TARGET)
        cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
        if cc is None:
            print(f"datazones: no C compiler; {TARGET} not built (pseudonyms use polars-hash)", file=sys.stderr)
            return
        cmd = [*cc.split(), "-O3", "-shared", "-fPIC", "-o", str(out), str(src)]
        try:
            subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.SubprocessError) as exc:
            detail = getattr(exc, "stderr", "") or str(exc)
            print(f"datazones: building {TARGET} failed ({detail.strip()[:500]}); pseudonyms use polars-hash",
                  file=sys.stderr)
            return
        if version != "editable":
            build_data["artifacts"].append(TARGET)
            build_data["pure_python"] = False
            build_data["infer_tag"] = True
