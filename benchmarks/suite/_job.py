"""One job, in its own process: ``python -m benchmarks.suite._job SPEC OUT``.

Reads the job (JSON) from SPEC, runs its section's ``run_job``, and writes
``{"records": [...], "error": ..., "traceback": ...}`` to OUT. Each job runs in a
fresh interpreter so that every contender starts from the same clean parent
(nothing imported but what it needs: a forked worker inherits its parent's
memory, and NumPy must reach a worker only where a row says so), and so a hung
pool can be killed with its whole process group.
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path
from typing import Any

from benchmarks.suite._contenders import from_dict
from benchmarks.suite._model import settings_from_dict
from benchmarks.suite._sections import module_for


def run(spec: dict[str, Any]) -> dict[str, Any]:
    """Run the job *spec*; never raises (the error is in the result)."""
    result: dict[str, Any] = {"records": [], "error": None, "traceback": None}
    try:
        module = module_for(spec["section"])
        contender = from_dict(spec["contender"])
        settings = settings_from_dict(spec["settings"])
        records = module.run_job(contender, spec["params"], settings)
        result["records"] = [r.as_dict() for r in records]
    except BaseException as exc:  # reported, not raised: the suite goes on
        first = str(exc).strip().splitlines()
        result["error"] = f"{type(exc).__name__}: {first[0] if first else ''}".strip()
        result["traceback"] = traceback.format_exc()
    return result


def main(argv: list[str] | None = None) -> int:
    spec_path, out_path = sys.argv[1:] if argv is None else argv
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    result = run(spec)
    Path(out_path).write_text(json.dumps(result), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
