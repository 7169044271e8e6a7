"""What `sam deploy` hands CloudFormation, and what CloudFormation's SAM transform makes of it.

Runs under .venv-sam's Python (aws-sam-cli and aws-sam-translator live there, not in .venv):

    .venv-sam/bin/python tests/deploy/sam_pipeline.py jobs.json out.json

Each job names a template that `sam build` wrote (``.aws-sam/build/template.yaml`` or a
``--build-dir``) and the parameter values of one deploy. For each job this does what `sam deploy`
and CloudFormation do, with the same code:
- package: aws-sam-cli's own ``Template(...).export()`` (the path ``sam package`` and ``sam deploy``
  take), which zips every built artifact and names its S3 object by the MD5 of its content. The
  uploader here names the object exactly as ``S3Uploader.upload_with_dedup`` does and uploads
  nothing;
- transform: aws-sam-translator's ``Translator.translate`` with the deploy's parameter values (the
  AWS::Serverless-2016-10-31 transform CloudFormation runs; it adds the template's defaults and the
  pseudo parameters itself).
No AWS call is made and no credential is read: the region is given, the signer is not used.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import boto3
from samcli.lib.package.artifact_exporter import Template
from samcli.lib.package.code_signer import CodeSigner
from samcli.lib.package.s3_uploader import S3Uploader
from samcli.lib.package.uploaders import Uploaders
from samcli.yamlhelper import yaml_parse
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator

BUCKET = "deploy-test-artifacts"
REGION = "us-east-1"


class OfflineS3Uploader(S3Uploader):
    """S3Uploader that gives every artifact the object name `sam deploy` gives it, and uploads nothing."""

    def __init__(self, bucket_name: str, prefix: str | None) -> None:  # no S3 client, no transfer manager
        self.s3 = None
        self.bucket_name = bucket_name
        self.prefix = prefix
        self.kms_key_id = None
        self.force_upload = False
        self.no_progressbar = True
        self._artifact_metadata = None

    def upload(self, file_name: str, remote_path: str) -> str:
        if self.prefix:
            remote_path = f"{self.prefix}/{remote_path}"
        return self.make_url(remote_path)


def package(built_template: str, stack_name: str) -> dict[str, Any]:
    """samcli.commands.package.package_context.PackageContext._export_without_language_extensions."""
    with open(built_template, encoding="utf-8") as f:
        template_dict = yaml_parse(f.read())
    uploaders = Uploaders(OfflineS3Uploader(BUCKET, stack_name), None)  # type: ignore[arg-type]
    template = Template(
        os.path.abspath(built_template),
        os.getcwd(),
        uploaders,
        CodeSigner(None, None),
        normalize_template=True,
        normalize_parameters=True,
        template_dict=template_dict,
        language_extensions_enabled=False,
    )
    return template.export()


def transform(packaged: dict[str, Any], parameters: dict[str, str]) -> dict[str, Any]:
    translator = Translator(managed_policy_map={}, sam_parser=Parser(), boto_session=boto3.Session(region_name=REGION))
    return translator.translate(sam_template=packaged, parameter_values=dict(parameters))


def main() -> None:
    with open(sys.argv[1], encoding="utf-8") as f:
        jobs = json.load(f)
    out = {}
    for job in jobs:
        packaged = package(job["built_template"], job.get("stack_name", "serverless-nth"))
        out[job["name"]] = {
            "packaged": packaged,
            "translated": transform(json.loads(json.dumps(packaged)), job["parameters"]),
            "parameters": job["parameters"],
        }
    with open(sys.argv[2], "w", encoding="utf-8") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main()
