#!/usr/bin/env python3
"""Run the Dockerfile's own checks against a bare install (no Docker engine needed).

  python3 .ci/dockerfile_checks.py VENV

Runs, with VENV's interpreter, each exec-form ``RUN ["python", ...]`` of the final image
(its import check), then the image's ENTRYPOINT + CMD with ``--help`` appended, the image's
/opt/clusterdns venv mapped to VENV. Exits 1 naming the step that failed. Standard library only.
"""

import json
import re
import subprocess
import sys
from pathlib import Path

IMAGE_VENV = "/opt/clusterdns"


def final_stage(dockerfile: str) -> str:
    """The text of the last ``FROM`` stage (what the image runs)."""
    return re.split(r"(?m)^FROM\s", dockerfile)[-1]


def exec_form(stage: str, instruction: str) -> list[list[str]]:
    """Every JSON (exec form) argument list of ``instruction`` in ``stage``."""
    return [json.loads(m) for m in re.findall(rf"(?m)^{instruction}\s+(\[.*\])\s*$", stage)]


def main() -> int:
    venv = Path(sys.argv[1]).resolve()
    stage = final_stage((Path(__file__).resolve().parent.parent / "Dockerfile").read_text())
    steps = [[str(venv / "bin" / "python"), *argv[1:]]
             for argv in exec_form(stage, "RUN") if argv and argv[0] == "python"]
    entrypoint, = exec_form(stage, "ENTRYPOINT")
    cmd, = exec_form(stage, "CMD")
    steps.append([entrypoint[0].replace(IMAGE_VENV, str(venv)), *entrypoint[1:], *cmd, "--help"])
    if len(steps) < 2:
        print("dockerfile_checks: no exec-form python check in the final stage", file=sys.stderr)
        return 1
    for argv in steps:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        shown = " ".join(argv)[:160]
        if done.returncode != 0:
            print(f"dockerfile_checks: FAILED ({done.returncode}): {shown}\n{done.stderr}",
                  file=sys.stderr)
            return 1
        print(f"dockerfile_checks: ok: {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
