"""Carry a user's edits along when a template version moves a generated file.

Copier deletes a file that the new template version no longer renders, edits and all, and renders
it afresh at its new path. A "before" `git mv` does not help: Copier's merge base for the new path
is then empty and the whole file conflicts. So this runs as an "after" migration of the version
that moves the file, with the Python that runs Copier, in the project:

    python move_file.py <old path> <new path>

It three-way merges the user's file (still in HEAD: Copier updates a clean tree and does not
commit) into the new path, with the old template version's rendering of the old path as the base,
exactly as Copier merges a file that stays put. A project whose HEAD lacks the old file (deleted
by its owners) is left as the update made it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import copier
import yaml


def git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], capture_output=True, text=True, check=False)


def main(argv: list[str]) -> int:
    old, new = argv
    theirs = git("show", f"HEAD:{old}")
    if theirs.returncode:
        return 0
    answers = yaml.safe_load(git("show", "HEAD:.copier-answers.yml").stdout)
    with tempfile.TemporaryDirectory() as scratch:
        base_copy = Path(scratch, "base")
        copier.run_copy(answers["_src_path"], str(base_copy), vcs_ref=os.environ["VERSION_FROM"],
                        data={k: v for k, v in answers.items() if not k.startswith("_")},
                        defaults=True, skip_tasks=True, quiet=True, unsafe=True)
        user = Path(scratch, "user")
        user.write_text(theirs.stdout, encoding="utf-8")
        merge = git("merge-file", "-L", "after updating", "-L", "last update", "-L",
                    "before updating", new, str(base_copy / old), str(user))
    if merge.returncode:
        print(f"{new}: your edits of {old} conflict with the template's changes; "
              "resolve the conflict markers and commit.", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
