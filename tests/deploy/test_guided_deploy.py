"""docs/deploy.md's table of `sam deploy --guided` prompts is what `sam deploy --guided` asks.

The real aws-sam-cli runs in a copy of template.yaml and samconfig.toml with no credentials: it
asks every question, then stops at "Unable to locate credentials" when it looks for its S3 bucket.
Its prompts, in order, must be the first column of the table, so that a newcomer can follow the
guide one line at a time (issue 19)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from localeks.cluster import REPO
from tests.deploy.conftest import SAM, _offline_env


def _prompts(workdir: Path) -> list[str]:
    shutil.copy(REPO / "template.yaml", workdir / "template.yaml")
    shutil.copy(REPO / "samconfig.toml", workdir / "samconfig.toml")
    answers = "serverless-nth\nus-east-1\nmy-cluster\n" + "\n" * 80  # then every default
    done = subprocess.run(
        [str(SAM), "deploy", "--guided"],
        cwd=workdir,
        input=answers,
        env=_offline_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = done.stdout + done.stderr
    assert "Unable to locate credentials" in output, output[-2000:]
    return re.findall(r"\t([A-Z][^\t\[\n]*?) \[[^\]\n]*\]: ", output)


def _documented() -> list[str]:
    text = (REPO / "docs" / "deploy.md").read_text()
    table = text[text.index("<!-- guided prompts") :].split("\n\n", 1)[0]
    rows = [line.split("|")[1].strip() for line in table.splitlines() if line.startswith("| ") and "---" not in line]
    return rows[1:]  # the header row


def test_the_guide_answers_every_prompt_of_sam_deploy_guided_in_order(tmp_path: Path) -> None:
    asked = _prompts(tmp_path)
    assert len(asked) > 20, asked
    assert _documented() == asked
