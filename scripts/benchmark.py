"""Print render and test timings of each preset in variants/, as medians over several runs.

    python scripts/benchmark.py --runs 5

Not part of the test suite: timings inform, they do not pass or fail.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import copier

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from support import VARIANTS, build_generated_venv, offline_env, preset, snapshot_template


def median_seconds(action: Callable[[int], object], runs: int) -> float:
    """Median wall time of `action(run_index)` over `runs` calls."""
    times = []
    for run in range(runs):
        start = time.perf_counter()
        action(run)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def render(template: Path, size: str, destination: Path, hooks: bool) -> None:
    copier.run_copy(str(template), str(destination), data=preset(size), defaults=True, unsafe=True,
                    vcs_ref="HEAD", quiet=True, skip_tasks=not hooks)


def run_generated_tests(python: Path, project: Path) -> None:
    result = subprocess.run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=project,
                            env=offline_env(python), capture_output=True, text=True)
    if result.returncode:
        sys.exit(f"the generated tests of {project.name} failed, so there is no time to report:\n"
                 f"{result.stdout[-3000:]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per measurement (default 5)")
    runs = parser.parse_args().runs
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        template = snapshot_template(work / "template")
        print(f"{'preset':<8} {'render+hooks':>13} {'render only':>12} {'generated tests':>16}"
              f"  (median s, {runs} runs)")
        for size in sorted(p.stem for p in VARIANTS.glob("*.yml")):
            hooked = median_seconds(lambda run, size=size: render(template, size, work / f"{size}-h{run}", True), runs)
            plain = median_seconds(lambda run, size=size: render(template, size, work / f"{size}-n{run}", False), runs)
            project = work / f"{size}-h0"
            python = build_generated_venv(project)
            tests = median_seconds(lambda _, python=python, project=project: run_generated_tests(python, project), runs)
            print(f"{size:<8} {hooked:>13.2f} {plain:>12.2f} {tests:>16.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
