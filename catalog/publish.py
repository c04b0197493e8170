"""Publish a version of the MLOps Copier template as a SageMaker project template.

Both ways Studio finds project templates are served from the release bucket of the portfolio stack
(catalog/portfolio.yml):

* Service Catalog: the first publish gives the stack's product its first version; every later
  version becomes a new provisioning artifact of the same product, so Studio's Update dialog
  offers it to existing projects.
* S3 templates: the newest version's product template is written to studio-templates/ with the
  tag sagemaker:studio-visibility=true; the bucket allows Studio's origin (CORS), and the command
  prints the tag to put on the SageMaker domain.

Publishing the same version again changes nothing. A version is immutable once published: if its
files differ from what is in the bucket, the command stops and asks for a new version tag.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import re
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import boto3
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, WaiterError
from packaging.version import InvalidVersion, Version

CATALOG = Path(__file__).resolve().parent
STUDIO_TEMPLATE_KEY = "studio-templates/mlops-copier-template.yml"
STUDIO_ORIGIN = "https://*.sagemaker.aws"
VISIBILITY_TAG = {"sagemaker:studio-visibility": "true"}


class PublishError(Exception):
    """Names the resource, what is wrong with it and the fix."""


def parse_version(tag: str) -> Version:
    try:
        return Version(tag)
    except InvalidVersion:
        raise PublishError(f"Version {tag!r} is not a PEP 440 version tag of the template (for example v0.2.0); "
                           "Copier orders versions by PEP 440, so projects could not update to it.") from None


def release_template(text: str, values: dict[str, str]) -> str:
    """Write `values` into the Release mapping of catalog/product.yml, each key exactly once, so a
    renamed key fails here instead of shipping the repository's placeholder values."""
    for key, value in values.items():
        text, count = re.subn(rf"^(      {key}: ).*$", lambda m, v=value: m.group(1) + json.dumps(v), text,
                              flags=re.MULTILINE)
        if count != 1:
            raise PublishError(f"catalog/product.yml: Mappings.Release.Template.{key} found {count} times, expected "
                               "once. Keep the Release mapping's keys in step with catalog/publish.py.")
    return text


def trigger_zip() -> bytes:
    """The seed trigger's Lambda package, byte-identical on every run (fixed timestamp and mode),
    so publishing again uploads nothing."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        info = zipfile.ZipInfo("seed_trigger.py", date_time=(1980, 1, 1, 0, 0, 0))
        info.external_attr = 0o644 << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        archive.writestr(info, (CATALOG / "seed_trigger.py").read_bytes())
    return buffer.getvalue()


def sha256(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


@dataclass
class Catalog:
    stack: str
    bucket: str
    product_id: str
    launch_role: str
    deployer_role: str
    boundary: str
    token_secret: str


def read_catalog(cloudformation, stack: str) -> Catalog:
    try:
        described = cloudformation.describe_stacks(StackName=stack)["Stacks"][0]
    except ClientError as error:
        if "does not exist" in str(error):
            raise PublishError(
                f"Stack {stack} does not exist in {cloudformation.meta.region_name}. Deploy the portfolio first: "
                f"aws cloudformation deploy --stack-name {stack} --template-file catalog/portfolio.yml "
                "--capabilities CAPABILITY_NAMED_IAM --parameter-overrides StudioExecutionRoleArn=<role arn>"
            ) from None
        raise
    outputs = {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}
    try:
        return Catalog(stack=stack, bucket=outputs["ReleaseBucket"], product_id=outputs["ProductId"],
                       launch_role=outputs["LaunchRoleName"], deployer_role=outputs["ToolchainDeployerRoleName"],
                       boundary=outputs["PermissionsBoundaryName"], token_secret=outputs["GitTokenSecretArn"])
    except KeyError as missing:
        raise PublishError(f"Stack {stack} has no output {missing}: it was not deployed from catalog/portfolio.yml, "
                           "or from an older one. Redeploy it with this checkout's catalog/portfolio.yml.") from None


def check_resources(s3, iam, catalog: Catalog) -> None:
    """Fail before writing anything when a resource the product relies on is gone."""
    try:
        s3.head_bucket(Bucket=catalog.bucket)
    except ClientError as error:
        raise PublishError(
            f"Bucket {catalog.bucket} (output ReleaseBucket of stack {catalog.stack}) is missing or not readable "
            f"({error.response['Error'].get('Code')}). If it was deleted, delete and redeploy the stack "
            "(catalog/portfolio.yml) so it creates a new one; otherwise grant this caller s3:ListBucket on it."
        ) from None
    for output, role in (("LaunchRoleName", catalog.launch_role), ("ToolchainDeployerRoleName", catalog.deployer_role)):
        try:
            iam.get_role(RoleName=role)
        except ClientError as error:
            if error.response["Error"]["Code"] != "NoSuchEntity":
                raise
            raise PublishError(
                f"Role {role} (output {output} of stack {catalog.stack}) does not exist: projects could not be "
                "provisioned or could not deploy their toolchain. Redeploy the stack from catalog/portfolio.yml "
                "to recreate it (a role deleted by hand is not recreated by an unchanged stack update: "
                "detect drift, then update)."
            ) from None


def object_sha(s3, bucket: str, key: str) -> str | None:
    try:
        return s3.head_object(Bucket=bucket, Key=key)["Metadata"].get("sha256", "")
    except ClientError as error:
        if error.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound"):
            return None
        raise


def release_files(catalog: Catalog, version: str, git_url: str, prefix: str) -> dict[str, bytes]:
    product = release_template((CATALOG / "product.yml").read_text(encoding="utf-8"), {
        "GitUrl": git_url,
        "Version": version,
        "AssetsBucket": catalog.bucket,
        "AssetsPrefix": prefix,
        "GitTokenSecretArn": catalog.token_secret,
        "PermissionsBoundaryName": catalog.boundary,
        "ToolchainDeployerRoleName": catalog.deployer_role,
    })
    return {
        "product.yml": product.encode(),
        "seed.py": (CATALOG / "seed.py").read_bytes(),
        "requirements-seed.txt": (CATALOG / "requirements-seed.txt").read_bytes(),
        "seed_trigger.zip": trigger_zip(),
    }


def upload_release(s3, bucket: str, prefix: str, files: dict[str, bytes]) -> list[str]:
    """Upload a version's files; return the keys written. All-or-nothing on a content mismatch."""
    pending = []
    for name, body in files.items():
        key = f"{prefix}/{name}"
        existing = object_sha(s3, bucket, key)
        if existing == sha256(body):
            continue
        if existing is not None:
            raise PublishError(
                f"s3://{bucket}/{key} already holds different content for this version. Published versions are "
                "immutable (projects provisioned from it read these files on every update): tag a new version "
                "and publish that.")
        pending.append((key, body))
    for key, body in pending:
        s3.put_object(Bucket=bucket, Key=key, Body=body, Metadata={"sha256": sha256(body)})
    return [key for key, _ in pending]


def publish_service_catalog(cloudformation, servicecatalog, catalog: Catalog, version: str, url: str) -> str:
    if catalog.product_id == "none":
        parameters = cloudformation.describe_stacks(StackName=catalog.stack)["Stacks"][0].get("Parameters", [])
        overrides = {"ProductTemplateUrl": url, "ProductVersion": version}
        cloudformation.update_stack(
            StackName=catalog.stack, UsePreviousTemplate=True, Capabilities=["CAPABILITY_NAMED_IAM"],
            Parameters=[{"ParameterKey": key, "ParameterValue": overrides[key]} if key in overrides
                        else {"ParameterKey": key, "UsePreviousValue": True}
                        for key in (p["ParameterKey"] for p in parameters)])
        try:
            cloudformation.get_waiter("stack_update_complete").wait(StackName=catalog.stack)
        except WaiterError as error:
            status = (error.last_response.get("Stacks") or [{}])[0].get("StackStatus", str(error))
            raise PublishError(
                f"Stack {catalog.stack} did not create the product ({status}). Its events say why: aws "
                f"cloudformation describe-stack-events --stack-name {catalog.stack}; fix that and publish again."
            ) from None
        return f"Service Catalog: stack {catalog.stack} created the product with its first version {version}"
    artifacts = servicecatalog.list_provisioning_artifacts(ProductId=catalog.product_id)["ProvisioningArtifactDetails"]
    if any(artifact["Name"] == version for artifact in artifacts):
        return f"Service Catalog: product {catalog.product_id} already offers {version}; nothing to do"
    servicecatalog.create_provisioning_artifact(
        ProductId=catalog.product_id,
        Parameters={"Name": version, "Description": f"MLOps template {version}",
                    "Info": {"LoadTemplateFromURL": url}, "Type": "CLOUD_FORMATION_TEMPLATE"},
        # Same token for the same product and version: a retried call cannot add a duplicate.
        IdempotencyToken=re.sub(r"[^a-zA-Z0-9_-]", "-", f"{catalog.product_id}-{version}")[:128],
    )
    return f"Service Catalog: added version {version} to product {catalog.product_id}"


def ensure_studio_cors(s3, bucket: str) -> bool:
    try:
        rules = s3.get_bucket_cors(Bucket=bucket)["CORSRules"]
    except ClientError as error:
        if error.response["Error"]["Code"] != "NoSuchCORSConfiguration":
            raise
        rules = []
    if any(STUDIO_ORIGIN in rule.get("AllowedOrigins", []) and "GET" in rule.get("AllowedMethods", [])
           for rule in rules):
        return False
    rules.append({"AllowedOrigins": [STUDIO_ORIGIN], "AllowedMethods": ["GET", "HEAD"], "AllowedHeaders": ["*"],
                  "ExposeHeaders": ["ETag"]})
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": rules})
    return True


def publish_s3_route(s3, bucket: str, version: str, product: bytes) -> str:
    """Studio lists one template per object, so the route carries only the newest version: an older
    version published later (a backport) does not replace it."""
    cors = " (bucket CORS now allows Studio)" if ensure_studio_cors(s3, bucket) else ""
    try:
        metadata = s3.head_object(Bucket=bucket, Key=STUDIO_TEMPLATE_KEY)["Metadata"]
    except ClientError as error:
        if error.response["Error"]["Code"] not in ("404", "NoSuchKey", "NotFound"):
            raise
        metadata = {}
    current = metadata.get("template-version")
    if current and metadata.get("sha256") == sha256(product):
        return f"S3 templates: {STUDIO_TEMPLATE_KEY} already holds {version}; nothing to do{cors}"
    if current and Version(current) > Version(version):
        return f"S3 templates: {STUDIO_TEMPLATE_KEY} keeps the newer {current}{cors}"
    s3.put_object(Bucket=bucket, Key=STUDIO_TEMPLATE_KEY, Body=product, Tagging=urlencode(VISIBILITY_TAG),
                  Metadata={"sha256": sha256(product), "template-version": version})
    return f"S3 templates: {STUDIO_TEMPLATE_KEY} now holds {version}{cors}"


def publish(session, stack: str, version: str, git_url: str, routes: set[str]) -> list[str]:
    parse_version(version)
    cloudformation, s3 = session.client("cloudformation"), session.client("s3")
    catalog = read_catalog(cloudformation, stack)
    check_resources(s3, session.client("iam"), catalog)
    prefix = f"releases/{version}"
    files = release_files(catalog, version, git_url, prefix)
    written = upload_release(s3, catalog.bucket, prefix, files)
    report = [f"Release files: {len(written)} written to s3://{catalog.bucket}/{prefix}/"
              if written else f"Release files: s3://{catalog.bucket}/{prefix}/ already up to date"]
    if "servicecatalog" in routes:
        url = f"https://{catalog.bucket}.s3.{session.region_name}.amazonaws.com/{prefix}/product.yml"
        report.append(publish_service_catalog(cloudformation, session.client("servicecatalog"), catalog, version, url))
    if "s3" in routes:
        report.append(publish_s3_route(s3, catalog.bucket, version, files["product.yml"]))
        report.append("Tag each SageMaker domain that should list it (once):\n"
                      f"  aws sagemaker add-tags --region {session.region_name} --resource-arn <domain arn> "
                      f"--tags Key=sagemaker:projectS3TemplatesLocation,Value=s3://{catalog.bucket}/studio-templates/")
    return report


def parser() -> argparse.ArgumentParser:
    cli = argparse.ArgumentParser(
        description="Publish a version of the MLOps Copier template to SageMaker Studio (Service Catalog product "
                    "version and S3 template). Run it after deploying catalog/portfolio.yml, once per version tag. "
                    "Publishing a version again changes nothing.",
        epilog="Example: python catalog/publish.py --stack mlops-catalog --version v0.2.0 "
               "--template-git-url https://github.com/my-org/mlops-template.git")
    cli.add_argument("--stack", required=True, help="name of the stack deployed from catalog/portfolio.yml")
    cli.add_argument("--version", required=True,
                     help="template version tag to publish (PEP 440, e.g. v0.2.0); it must exist in the Git repository")
    cli.add_argument("--template-git-url", required=True,
                     help="Git URL of this template that the seed build and, later, `copier update` can read")
    cli.add_argument("--route", action="append", choices=["servicecatalog", "s3"], dest="routes",
                     help="publish only this way (repeatable); default: both")
    cli.add_argument("--region", help="AWS region of the portfolio stack (default: your AWS configuration's)")
    cli.add_argument("--profile", help="AWS profile to use")
    return cli


def main(argv: list[str] | None = None, session=None) -> int:
    args = parser().parse_args(argv)
    session = session or boto3.Session(profile_name=args.profile, region_name=args.region)
    try:
        for line in publish(session, args.stack, args.version, args.template_git_url,
                            set(args.routes or ["servicecatalog", "s3"])):
            print(line)
    except PublishError as error:
        print(f"publish failed: {error}", file=sys.stderr)
        return 1
    except NoCredentialsError:
        print("publish failed: no AWS credentials found. Sign in to the account of the portfolio stack "
              "(aws configure sso, AWS_PROFILE or --profile) and run it again.", file=sys.stderr)
        return 1
    except BotoCoreError as error:
        print(f"publish failed: {error}", file=sys.stderr)
        return 1
    except ClientError as error:
        # Anything not anticipated above (throttling, a stack mid-update, missing rights of the
        # caller): AWS's own message names the call and the resource.
        print(f"publish failed: AWS refused {error.operation_name}: {error.response['Error'].get('Message')}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
