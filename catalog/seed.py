"""Seed a SageMaker project's repository from the MLOps Copier template, then deploy its toolchain.

Runs in the product's seed CodeBuild job (catalog/product.yml), started by catalog/seed_trigger.py
with the project's answers. It is safe to run again: a branch that already carries
.copier-answers.yml is never rewritten (the team owns it), and the toolchain deployment changes
nothing when the template it reads is unchanged. When the project is updated in Studio to a newer
product version, the build runs `copier update` on a separate branch, template-update/<version>,
and pushes it for the team to review and merge; the toolchain keeps following the main branch.

Every failure ends with one line naming the step, what went wrong and the fix, which is what the
CloudFormation event points at through the build log.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import copier
import yaml
from packaging.version import InvalidVersion, Version

ANSWERS_FILE = ".copier-answers.yml"
GIT_IDENTITY = ("-c", "user.name=SageMaker project seed", "-c", "user.email=sagemaker-project-seed@noreply.local")
# The username each host expects with a token as the password over HTTPS.
TOKEN_USERNAMES = {"github": "x-access-token", "gitlab": "oauth2", "bitbucket": "x-token-auth"}
HOSTS = {"github": "github.com", "gitlab": "gitlab.com", "bitbucket": "bitbucket.org"}

Runner = Callable[..., subprocess.CompletedProcess]


class SeedError(Exception):
    """A step failed; the message names the step, the cause and the fix."""


def repository_url(git_provider: str, repository_id: str, region: str) -> str:
    if git_provider == "codecommit":
        return f"https://git-codecommit.{region}.amazonaws.com/v1/repos/{repository_id}"
    return f"https://{HOSTS[git_provider]}/{repository_id}.git"


@dataclass
class Seed:
    answers: dict[str, str]
    template_url: str
    template_version: str
    repository_url: str
    workdir: Path
    # Extra `git -c` settings: how this host accepts a push (token helper or CodeCommit's helper).
    git_config: Sequence[str] = ()
    git_env: Mapping[str, str] = field(default_factory=dict)

    @property
    def branch(self) -> str:
        return self.answers["branch"]

    @property
    def created_by_toolchain(self) -> bool:
        return self.answers["git_provider"] == "codecommit"

    def git(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        command = ["git", *GIT_IDENTITY]
        for setting in self.git_config:
            command += ["-c", setting]
        result = subprocess.run([*command, *args], cwd=self.workdir, capture_output=True, text=True,
                                env={**os.environ, **self.git_env})
        if check and result.returncode != 0:
            raise SeedError(f"git {args[0]} against {self.repository_url} failed: {result.stderr.strip()}")
        return result

    def checkout(self) -> bool:
        """Check out the project's branch into workdir; False when the branch does not exist yet."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.git("init", "-q")
        self.git("remote", "add", "origin", self.repository_url)
        listed = self.git("ls-remote", "--heads", "origin", self.branch, check=not self.created_by_toolchain)
        if listed.returncode != 0:
            # CodeCommit: the toolchain stack creates the repository, so before the first deploy
            # there is nothing to read; an access problem surfaces at the push, after the deploy.
            print(f"{self.repository_url} is not readable yet ({listed.stderr.strip()}); "
                  "the toolchain stack creates it")
        elif f"refs/heads/{self.branch}" in listed.stdout:
            self.git("fetch", "-q", "origin", self.branch)
            self.git("checkout", "-q", "-B", self.branch, "FETCH_HEAD")
            return True
        self.git("checkout", "-q", "--orphan", self.branch)
        return False

    def seeded_version(self) -> str | None:
        answers = self.workdir / ANSWERS_FILE
        if not answers.is_file():
            return None
        return str((yaml.safe_load(answers.read_text(encoding="utf-8")) or {}).get("_commit", "unknown"))

    def render(self) -> None:
        # unsafe: the template's own validation hook runs as a task; the template is the platform
        # team's, at the version they published. overwrite: a host-created README is replaced.
        try:
            copier.run_copy(self.template_url, str(self.workdir), data=self.answers, vcs_ref=self.template_version,
                            defaults=True, overwrite=True, unsafe=True, quiet=True)
        except Exception as error:
            raise SeedError(f"copier copy of {self.template_url} at {self.template_version} failed: {error}. "
                            "Fix the answer it names (update the project in Studio) or republish the "
                            "template version with catalog/publish.py.") from error

    def propose_update(self, seeded: str) -> str:
        """Push `copier update` from `seeded` to this version on its own branch; return the branch.
        Conflicts stay in the files as inline markers, for the review to resolve."""
        branch = f"template-update/{self.template_version}"
        if f"refs/heads/{branch}" in self.git("ls-remote", "--heads", "origin", branch).stdout:
            return branch
        self.git("checkout", "-q", "-b", branch)
        try:
            copier.run_update(str(self.workdir), data=self.answers, vcs_ref=self.template_version, defaults=True,
                              overwrite=True, unsafe=True, quiet=True, conflict="inline")
        except Exception as error:
            raise SeedError(f"copier update from {seeded} to {self.template_version} failed: {error}. Run it in a "
                            "clone of the repository instead: copier update --trust --vcs-ref "
                            f"{self.template_version}") from error
        self.git("add", "-A")
        self.git("commit", "-q", "-m", f"Update to the MLOps template {self.template_version} (from {seeded})",
                 "-m", "Proposed by the SageMaker project's update. Resolve any conflict markers, then merge.")
        result = self.git("push", "-q", "origin", f"HEAD:refs/heads/{branch}", check=False)
        if result.returncode != 0:
            raise SeedError(f"git push of {branch} to {self.repository_url} failed: {result.stderr.strip()}")
        self.git("checkout", "-q", self.branch)
        return branch

    def commit(self) -> None:
        self.git("add", "-A")
        project = self.answers["project_name"]
        self.git("commit", "-q", "-m", f"Seed {project} from the MLOps template {self.template_version}",
                 "-m", "Created by the SageMaker project's seed build. Update with `copier update`.")

    def push(self) -> None:
        result = self.git("push", "-q", "origin", f"HEAD:refs/heads/{self.branch}", check=False)
        if result.returncode != 0:
            raise SeedError(f"git push to {self.repository_url} (branch {self.branch}) failed: "
                            f"{result.stderr.strip()}. Check that the repository exists and that the push "
                            "token (or, for CodeCommit, the seed role) may write to it.")


def deploy_toolchain(seed: Seed, deployer_role_arn: str, bucket: str, prefix: str, run: Runner) -> None:
    """Deploy infra/toolchain.yml as the stack the generated README names, so the team's later
    `aws cloudformation deploy` after a `copier update` updates this same stack."""
    project = seed.answers["project_name"]
    command = [
        "aws", "cloudformation", "deploy",
        "--stack-name", f"{project}-toolchain",
        "--template-file", "infra/toolchain.yml",
        "--role-arn", deployer_role_arn,
        "--s3-bucket", bucket, "--s3-prefix", prefix,
        "--capabilities", "CAPABILITY_IAM", "CAPABILITY_NAMED_IAM",
        "--no-fail-on-empty-changeset",
        "--tags", f"Project={project}",
    ]
    result = run(command, cwd=seed.workdir)
    if result.returncode != 0:
        raise SeedError(f"Deploying stack {project}-toolchain failed (exit {result.returncode}). Its events "
                        f"say why: aws cloudformation describe-stack-events --stack-name {project}-toolchain")


def run_seed(seed: Seed, deploy: Callable[[Seed], None]) -> str:
    """Seed the repository unless it already is, then deploy; return what happened, for the log."""
    seed.checkout()
    if (existing := seed.seeded_version()) is not None:
        outcome = f"{seed.repository_url} ({seed.branch}) is already seeded at {existing}: left unchanged"
        if is_older(existing, seed.template_version):
            outcome += f"; proposed the update on branch {seed.propose_update(existing)}"
        deploy(seed)
        return outcome
    seed.render()
    seed.commit()
    # CodeCommit: the toolchain creates the repository, so it must exist before the push. A
    # connection-hosted repository is pushed first so the new pipelines' first run has code.
    if seed.answers["git_provider"] == "codecommit":
        deploy(seed)
        seed.push()
    else:
        seed.push()
        deploy(seed)
    return f"{seed.repository_url} ({seed.branch}) seeded from {seed.template_url} at {seed.template_version}"


def is_older(seeded: str, version: str) -> bool:
    """A project seeded or updated from an untagged commit is not compared: only tags are releases."""
    try:
        return Version(seeded) < Version(version)
    except InvalidVersion:
        return False


def push_credentials(git_provider: str, secret_arn: str, run: Runner) -> tuple[list[str], dict[str, str]]:
    """git settings and environment that let this build push; the token stays in the environment,
    never in a URL or a command line that could reach the log."""
    if git_provider == "codecommit":
        return ["credential.helper=!aws codecommit credential-helper $@", "credential.UseHttpPath=true"], {}
    if secret_arn in ("", "none"):
        raise SeedError(f"No push token for {git_provider}: the catalog was published without "
                        "--git-token-secret-arn. Republish with catalog/publish.py --git-token-secret-arn <arn>.")
    result = run(["aws", "secretsmanager", "get-secret-value", "--secret-id", secret_arn,
                  "--query", "SecretString", "--output", "text"], capture_output=True, text=True)
    if result.returncode != 0:
        raise SeedError(f"Could not read the push token secret {secret_arn}: {result.stderr.strip()}")
    helper = f'!f() {{ echo "username={TOKEN_USERNAMES[git_provider]}"; echo "password=$SEED_GIT_TOKEN"; }}; f'
    return [f"credential.helper={helper}"], {"SEED_GIT_TOKEN": result.stdout.strip()}


def main(env: Mapping[str, str] = os.environ, run: Runner = subprocess.run) -> int:
    try:
        answers = json.loads(env["SEED_ANSWERS"])
        config, git_env = push_credentials(answers["git_provider"], env.get("GIT_TOKEN_SECRET_ARN", "none"), run)
        seed = Seed(answers=answers, template_url=env["TEMPLATE_GIT_URL"],
                    template_version=env["TEMPLATE_VERSION"],
                    repository_url=repository_url(answers["git_provider"], answers["repository_id"],
                                                  answers["aws_region"]),
                    workdir=Path(tempfile.mkdtemp(prefix="seed-")) / "repository",
                    git_config=config, git_env=git_env)
        print(run_seed(seed, lambda s: deploy_toolchain(s, env["DEPLOYER_ROLE_ARN"], env["ASSETS_BUCKET"],
                                                        env["SEED_UPLOAD_PREFIX"], run)))
    except SeedError as error:
        print(f"SEED FAILED: {error}", file=sys.stderr)
        return 1
    except KeyError as error:
        print(f"SEED FAILED: environment variable or answer {error} is missing; the build must be started "
              "by the product's seed trigger (catalog/seed_trigger.py), which sets them.", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
