import pytest

from serverless_nth.config import Settings
from serverless_nth.kube.pods import GRACE_FLOOR_SECONDS, daemonset_owner, grace_period, skip_reason, to_evict

SYSTEM_CRITICAL = Settings.critical_pod_priority  # the default threshold of a critical pod
NOW = 1_800_000_000.0  # 2027-01-15T08:00:00Z


def skip(pod: dict, stuck_after: float = 30) -> str | None:  # type: ignore[type-arg]
    return skip_reason(pod, NOW, stuck_after)


def pod(**overrides):  # type: ignore[no-untyped-def]
    body = {"metadata": {"name": "p", "namespace": "n", "uid": "u1"}, "spec": {}, "status": {"phase": "Running"}}
    for key, value in overrides.items():
        section, _, field = key.partition("__")
        body[section][field] = value
    return body


def test_daemonset_mirror_and_finished_pods_are_skipped() -> None:
    ds_owner = [{"apiVersion": "apps/v1", "kind": "DaemonSet", "controller": True, "name": "d", "uid": "x"}]
    assert skip(pod(metadata__ownerReferences=ds_owner)) == "daemonset"
    assert skip(pod(metadata__annotations={"kubernetes.io/config.mirror": "abc"})) == "mirror"
    assert skip(pod(status__phase="Succeeded")) == "finished"
    assert skip(pod(status__phase="Failed")) == "finished"


def test_a_daemonset_kind_of_another_api_group_is_an_ordinary_controller() -> None:
    """OpenKruise's apps.kruise.io DaemonSet is not apps/v1's: its pods are evicted like any pod
    with a controller, not as orphans of a DaemonSet that apps/v1 does not have (issue 23)."""
    owner = [
        {"apiVersion": "apps.kruise.io/v1alpha1", "kind": "DaemonSet", "controller": True, "name": "d", "uid": "x"}
    ]
    assert skip(pod(metadata__ownerReferences=owner)) is None
    assert daemonset_owner(pod(metadata__ownerReferences=owner)) is None
    assert to_evict(pod(metadata__ownerReferences=owner), SYSTEM_CRITICAL).has_controller


def test_a_daemonset_that_is_not_the_controller_does_not_count() -> None:
    assert skip(pod(metadata__ownerReferences=[{"kind": "DaemonSet", "name": "d", "uid": "x"}])) is None


def test_ordinary_pods_are_evicted_with_their_facts() -> None:
    target = to_evict(
        pod(
            spec__terminationGracePeriodSeconds=45,
            spec__volumes=[{"name": "s", "emptyDir": {}}],
            metadata__ownerReferences=[{"kind": "ReplicaSet", "controller": True, "name": "r", "uid": "y"}],
        ),
        SYSTEM_CRITICAL,
    )
    assert skip(pod()) is None
    assert (target.ref, target.uid, target.grace_seconds, target.has_emptydir, target.has_controller) == (
        "n/p",
        "u1",
        45,
        True,
        True,
    )


def test_a_pod_without_grace_period_gets_the_kubernetes_default() -> None:
    target = to_evict(pod(), SYSTEM_CRITICAL)
    assert target.grace_seconds == 30
    assert not target.has_controller


@pytest.mark.parametrize(
    ("own", "left", "expected"),
    [
        (30, None, 30),  # no deadline caps it: the pod's own
        (30, 100.0, 30),
        (30, 15.7, 15),
        (30, 0.9, GRACE_FLOOR_SECONDS),  # int() would make 0: a force delete
        (30, -50.0, GRACE_FLOOR_SECONDS),
        (0, None, GRACE_FLOOR_SECONDS),  # 0 is "remove the object now" to the API server
        (0, 10.0, GRACE_FLOOR_SECONDS),
    ],
)
def test_grace_period_is_capped_only_by_a_deadline_and_never_below_the_floor(
    own: int, left: float | None, expected: int
) -> None:
    assert grace_period(own, left) == expected
    assert GRACE_FLOOR_SECONDS >= 1


@pytest.mark.parametrize(
    ("deleted", "reason"),
    [
        ("2027-01-15T07:59:29Z", "stuck-terminating"),  # its grace period ended 31 s ago
        ("2027-01-15T07:59:31Z", None),  # 29 s ago: still waited for
        ("2027-01-15T08:00:20Z", None),  # still in its grace period
    ],
)
def test_a_pod_whose_deletion_ended_long_ago_is_not_waited_for(deleted: str, reason: str | None) -> None:
    assert skip(pod(metadata__deletionTimestamp=deleted)) == reason


def test_a_terminating_pod_knows_when_its_grace_period_ends() -> None:
    target = to_evict(pod(metadata__deletionTimestamp="2027-01-15T08:00:20Z"), SYSTEM_CRITICAL)
    assert target.deleting_since == NOW + 20
    assert to_evict(pod(), SYSTEM_CRITICAL).deleting_since is None
