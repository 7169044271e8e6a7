"""The xdist scheduler of `make test` (tests/xdist_groups.py) reads the xdist_group marks from the
test files: a marked module runs on one worker, a marked test with its parameters too, the rest
one test at a time."""

from __future__ import annotations

from tests.xdist_groups import group_of

FAULTS = "tests/reliability/test_control_plane_faults.py"


def test_a_marked_module_is_one_group() -> None:
    assert group_of("tests/integration/test_long_drains.py::test_anything") == "long-drains"
    assert group_of("tests/integration/test_observability.py::test_x[a-b]") == "observability"


def test_a_marked_test_is_one_group_with_all_its_parameters() -> None:
    assert group_of(f"{FAULTS}::test_evictions_whose_answer_is_lost_or_garbled_are_retried[lost-answer]") == "garbled"
    assert group_of(f"{FAULTS}::test_evictions_whose_answer_is_lost_or_garbled_are_still_counted[x]") == "garbled"


def test_the_others_are_scheduled_one_at_a_time() -> None:
    assert group_of(f"{FAULTS}::test_429_with_retry_after_on_evictions_is_honoured") is None
    assert group_of("tests/integration/test_handlers.py::test_rebalance_drains_when_enabled") is None
    assert group_of("tests/integration/no_such_file.py::test_x") is None


def test_xdist_own_renaming_is_read_too() -> None:
    assert group_of("tests/integration/test_handlers.py::test_x[a@b]") is None
    assert group_of("tests/integration/test_handlers.py::test_x[a]@mine") == "mine"
