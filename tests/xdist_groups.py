"""``--dist loadgroup`` that works with this pytest: one test at a time to the worker that is free,
except the tests of an ``xdist_group`` mark, which go to one worker together, in their order.

pytest-xdist 3.8 puts a test in its group by renaming its node id on the worker (``item._nodeid``),
which pytest 9 no longer reads (node ids live in ``item._id``): its loadgroup then schedules every
test on its own, and a module whose tests share state (tests/integration/test_long_drains.py: its
last test reads what the others emitted) is split across workers. The controller, which schedules,
sees only node ids, so this scheduler reads the marks from the test files' text: a module-level
``pytestmark = pytest.mark.xdist_group("name")`` groups the whole module, a
``@pytest.mark.xdist_group("name")`` right above a ``def test_...`` groups that test (all its
parameters). The groups are sent first, the largest first (xdist's loadscope order)."""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

from xdist.scheduler import LoadScopeScheduling

_MODULE_MARK = re.compile(r'^pytestmark = pytest\.mark\.xdist_group\("([^"]+)"\)', re.MULTILINE)
_TEST_MARK = re.compile(r'^@pytest\.mark\.xdist_group\("([^"]+)"\)[^\n]*\n(?:@[^\n]*\n)*def (test_\w+)', re.MULTILINE)


@functools.cache
def marks(path: str) -> tuple[str | None, dict[str, str]]:
    """The module's group (or None) and the group of each marked test function, from the file."""
    try:
        text = Path(path).read_text()
    except OSError:
        return None, {}
    module = _MODULE_MARK.search(text)
    return (module.group(1) if module else None), {name: group for group, name in _TEST_MARK.findall(text)}


def group_of(nodeid: str) -> str | None:
    if "@" in nodeid.rsplit("]", 1)[-1]:  # xdist's own renaming, where it works
        return nodeid.rsplit("@", 1)[-1]
    path, _, rest = nodeid.partition("::")
    module, tests = marks(path)
    if module is not None:
        return module
    return tests.get(rest.split("[", 1)[0].split("::")[-1])


class GroupScheduling(LoadScopeScheduling):  # type: ignore[misc]
    def _split_scope(self, nodeid: str) -> str:
        group = group_of(nodeid)
        return f"group:{group}" if group is not None else nodeid


def make_scheduler(config: Any, log: Any) -> GroupScheduling | None:
    if config.getvalue("dist") != "loadgroup":
        return None
    return GroupScheduling(config, log)
