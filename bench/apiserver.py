"""The API server's own view of a burst, from its /metrics scraped before and after: its request
latency per verb and resource for the kinds of request the functions send, and what API priority
and fairness did with the functions' flows (time queued, time executing, seats)."""

from __future__ import annotations

from typing import Any

from localeks import apiserver_metrics
from localeks.apiserver_metrics import Labels
from localeks.flowcontrol import FUNCTION_SCHEMAS

# (verb, API group, resource, subresource) of the requests the functions send on a Spot
# interruption or a rebalance recommendation; watches are left out (they last as long as asked).
# The histogram is not labelled by user: left out too, "DELETE pods" (kwok's, as grace periods
# end; the functions delete only a pod a PDB still holds at a certain end). kwok's status writes
# are subresource "status", apart; the controllers' Events share "POST events" (few in a burst).
PRODUCT_REQUESTS = {
    ("GET", "", "nodes", ""),
    ("LIST", "", "nodes", ""),
    ("PATCH", "", "nodes", ""),
    ("LIST", "", "pods", ""),
    ("POST", "", "pods", "eviction"),
    ("LIST", "policy", "poddisruptionbudgets", ""),
    ("GET", "apps", "daemonsets", ""),
    ("POST", "events.k8s.io", "events", ""),
}


def _product_request(labels: Labels) -> str | None:
    key = (labels.get("verb", ""), labels.get("group", ""), labels.get("resource", ""), labels.get("subresource", ""))
    if key not in PRODUCT_REQUESTS or labels.get("dry_run"):
        return None
    verb, _, resource, subresource = key
    return f"{verb} {resource}{'/' + subresource if subresource else ''}"


def _functions_flow(labels: Labels) -> str | None:
    schema = labels.get("flow_schema", "")
    if schema not in FUNCTION_SCHEMAS:
        return None
    if "execute" in labels:  # the wait histogram: requests that got a seat, and those refused
        return f"{schema} {'executed' if labels['execute'] == 'true' else 'rejected'}"
    return schema if labels.get("type") == "regular" else None


def seats(text: str) -> dict[str, float]:
    """Seats of the levels that serve the functions now: the nominal share plus what is borrowed."""
    return {
        labels["priority_level"]: value
        for labels, value in apiserver_metrics.samples(text, "apiserver_flowcontrol_current_limit_seats")
        if labels["priority_level"] in FUNCTION_SCHEMAS
    }


def summary(before: str, after: str) -> dict[str, Any]:
    """p50 / p99 (seconds) and counts between the two scrapes."""
    return {
        "request_latency": apiserver_metrics.quantiles(
            before, after, "apiserver_request_duration_seconds", _product_request
        ),
        "apf_queue_wait": apiserver_metrics.quantiles(
            before, after, "apiserver_flowcontrol_request_wait_duration_seconds", _functions_flow
        ),
        "apf_execution": apiserver_metrics.quantiles(
            before, after, "apiserver_flowcontrol_request_execution_seconds", _functions_flow
        ),
        "seats_at_start": seats(before),
    }
