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
from pathlib import Path

import copier

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from support import VARIANTS, build_generated_venv, offline_env, preset, snapshot_template  # noqa: E402


def timed(action) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


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
        print(f"{'preset':<8} {'render+hooks':>13} {'render only':>12} {'generated tests':>16}  (median s, {runs} runs)")
        for size in sorted(p.stem for p in VARIANTS.glob("*.yml")):
            with_hooks = [timed(lambda i=i: render(template, size, work / f"{size}-h{i}", True)) for i in range(runs)]
            without = [timed(lambda i=i: render(template, size, work / f"{size}-n{i}", False)) for i in range(runs)]
            project = work / f"{size}-h0"
            python = build_generated_venv(project)
            tests = [timed(lambda: run_generated_tests(python, project)) for _ in range(runs)]
            print(f"{size:<8} {statistics.median(with_hooks):>13.2f} {statistics.median(without):>12.2f} "
                  f"{statistics.median(tests):>16.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
