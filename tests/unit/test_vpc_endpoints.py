"""The interface endpoints a VPC without NAT needs are derived from the clients the code creates,
so the docs cannot drift from the code again (issue 19: `lambda` and `autoscaling` were missing).

AWS_SERVICES (serverless_nth/aws/clients.py) is the one list of the services the core calls; STS is
in it only to presign the EKS token locally (the API server, not the function, sends it to STS), and
X-Ray is called by the tracer, outside that list."""

from __future__ import annotations

import re
from pathlib import Path

from localeks.template import load_template
from serverless_nth.aws.clients import AWS_SERVICES

REPO = Path(__file__).resolve().parents[2]
PRESIGNED_ONLY = {"sts"}
NEEDED = (set(AWS_SERVICES) - PRESIGNED_ONLY) | {"xray"}


def _section(text: str, heading: str) -> str:
    start = text.index(heading)
    end = text.find("\n#", start + len(heading))
    return text[start : end if end != -1 else None]


def _endpoints_named(description: str) -> set[str]:
    """The names in the description's own list: "(NAT, or interface endpoints for ec2, ..., and sns
    with NotificationTopicArn)", not any word that happens to be a service's name."""
    match = re.search(r"interface endpoints for ([^)]*)\)", description)
    assert match, f"no list of interface endpoints in: {description}"
    return set(re.findall(r"\b[a-z0-9]+\b", match.group(1)))


def test_the_deploy_guide_lists_every_endpoint_the_code_calls() -> None:
    section = _section((REPO / "docs" / "deploy.md").read_text(), "### VPC endpoints")
    listed = set(re.findall(r"`([a-z0-9-]+)`", section))
    assert listed >= NEEDED, f"missing from docs/deploy.md's VPC endpoints: {sorted(NEEDED - listed)}"
    for presigned in PRESIGNED_ONLY:
        assert f"no {presigned.upper()} endpoint" in section


def test_the_template_parameter_and_the_readme_list_them_too() -> None:
    description = load_template()["Parameters"]["VpcSubnetIds"]["Description"]
    named = _endpoints_named(description)
    assert named >= NEEDED, f"VpcSubnetIds' description lacks {sorted(NEEDED - named)}"
    readme = _section((REPO / "README.md").read_text(), "## Deploy in five steps")
    listed = set(re.findall(r"`([a-z0-9-]+)`", readme))
    assert listed >= NEEDED, f"the README's deploy steps lack {sorted(NEEDED - listed)}"
