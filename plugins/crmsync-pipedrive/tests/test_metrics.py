"""The plug-in's calls are counted in crmsync's metrics under its own CRM kind, with the
connection's organisation and id, by operation (a resource, never a record's id)."""

from __future__ import annotations

from crmsync_pipedrive.connector import PipedriveConnector
from harness import PipedriveHarness

from connectors.base import ConnectionConfig
from connectors.telemetry import calls_counted


def test_calls_are_labelled_with_the_connection_and_its_organisation(
    harness: PipedriveHarness,
) -> None:
    harness.seed(3)
    connector = PipedriveConnector(
        ConnectionConfig(
            "pd-metrics",
            harness.credentials(),
            harness.settings(),
            harness.field_map,
            organisation_id="org-metrics",
        )
    )
    page = next(iter(connector.pull_customers(None, full=True)))
    assert len(page.records) == 3
    labelled = calls_counted("pd-metrics")
    assert labelled
    assert {s["crm"] for s in labelled} == {"pipedrive"}
    assert {s["organisation_id"] for s in labelled} == {"org-metrics"}
    operations = {s["operation"] for s in labelled}
    assert "GET organizations" in operations
    assert not any(ch.isdigit() for op in operations for ch in op.split(" ", 1)[1])
