"""Build time of the demo's functions: the sandbox's builder against aws-lambda-builders (sam build's).

Both build ``services/`` as `sam build` does (its contents at the root, ``requirements.txt``
installed beside them for python3.11 on x86_64) and zip the result; each is timed cold (empty
caches) and again with its cache (the sandbox: its install and zip caches; aws-lambda-builders:
its dependencies folder reused, as `sam build --cached` with unchanged requirements).
aws-lambda-builders runs in a venv of its own (it is not a dependency of the sandbox):

    python -m venv /tmp/alb && /tmp/alb/bin/pip install aws-lambda-builders
    .venv/bin/python -m benchmarks.build --alb-python /tmp/alb/bin/python [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from sandbox.build import Build, build_zip, source_files, zip_entries

PROJECT_DIR = Path(__file__).resolve().parents[1]
SOURCE = PROJECT_DIR / "services"
RUNTIME = "python3.11"

# Runs inside the aws-lambda-builders venv: one build into ARTIFACTS (and DEPENDENCIES), timed there.
_ALB_SCRIPT = """
import json, sys, time
from aws_lambda_builders.builder import LambdaBuilder
source, artifacts, scratch, dependencies, runtime, download = sys.argv[1:7]
started = time.perf_counter()
LambdaBuilder("python", "pip", None).build(
    source, artifacts, scratch, source + "/requirements.txt", runtime=runtime, architecture="x86_64",
    dependencies_dir=dependencies, download_dependencies=download == "1", combine_dependencies=True,
)
print(json.dumps({"seconds": time.perf_counter() - started}))
"""


def time_sandbox(cache: Path) -> float:
    started = time.perf_counter()
    build_zip(Build(SOURCE, RUNTIME, "x86_64"), cache)
    return time.perf_counter() - started


def time_alb(python: str, work: Path, *, download: bool) -> float:
    """One aws-lambda-builders build plus the zip of its artifacts (sam deploy zips them)."""
    artifacts = work / "artifacts"
    shutil.rmtree(artifacts, ignore_errors=True)
    artifacts.mkdir(parents=True)
    (work / "scratch").mkdir(exist_ok=True)
    started = time.perf_counter()
    result = subprocess.run(
        [python, "-c", _ALB_SCRIPT, str(SOURCE), str(artifacts), str(work / "scratch"), str(work / "deps"),
         RUNTIME, "1" if download else "0"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise SystemExit(f"aws-lambda-builders failed:\n{result.stderr[-2000:]}")
    zip_entries(list(source_files(artifacts, ())))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alb-python", help="the python of a venv with aws-lambda-builders installed")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    figures: dict[str, list[float]] = {}
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory() as scratch:
            cache = Path(scratch) / "cache"
            figures.setdefault("sandbox cold", []).append(time_sandbox(cache))
            figures.setdefault("sandbox cached", []).append(time_sandbox(cache))
            if args.alb_python:
                work = Path(scratch) / "alb"
                figures.setdefault("aws-lambda-builders cold", []).append(
                    time_alb(args.alb_python, work, download=True)
                )
                figures.setdefault("aws-lambda-builders cached", []).append(
                    time_alb(args.alb_python, work, download=False)
                )
    report = {name: round(statistics.median(values), 3) for name, values in figures.items()}
    print(json.dumps({"runs": args.runs, "median_seconds": report}, indent=2))


if __name__ == "__main__":
    main()
