"""A smoke test of the bench's own code (the bench itself runs under ``make bench``).

The proxy is what points the extractors at the sandbox: a ``CONNECT`` to a routed vendor
host reaches the sandbox through TLS the client can verify, and any other host is refused.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bench.extractors import _select
from bench.proxy import Upstream, VendorProxy
from bench.side_by_side import _minimum_calls
from sandbox.server import Sandbox, SandboxOptions


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    workdir = tmp_path_factory.mktemp("sandbox")
    with Sandbox(SandboxOptions(companies=3, workdir=workdir)) as sb:
        yield sb


def test_the_proxy_routes_a_vendor_host_to_the_sandbox_and_refuses_others(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    port = int(sandbox.hubspot_url.rsplit(":", 1)[1])
    proxy = VendorProxy({"api.hubapi.com": Upstream("127.0.0.1", port)}, tmp_path).start()
    try:
        with httpx.Client(
            proxy=proxy.url, verify=ssl.create_default_context(cafile=proxy.cert), trust_env=False
        ) as client:
            answer = client.get(
                "https://api.hubapi.com/crm/v3/objects/companies",
                headers={"Authorization": "Bearer bench-token"},
            )
            assert answer.status_code == 200
            assert len(answer.json()["results"]) == 3
            with pytest.raises(httpx.ProxyError):
                client.get("https://example.com/")
    finally:
        proxy.stop()
    assert proxy.connects == {"api.hubapi.com": 1}
    assert proxy.refused == ["CONNECT example.com:443"]


def test_a_catalog_selects_one_stream(tmp_path: Path) -> None:
    catalog = tmp_path / "catalog.json"
    entries = [
        {"tap_stream_id": name, "metadata": [{"breadcrumb": [], "metadata": {}}]}
        for name in ("contacts", "companies")
    ]
    catalog.write_text(json.dumps({"streams": entries}))
    _select(catalog, "companies")
    chosen = {
        s["tap_stream_id"]: s["metadata"][0]["metadata"]["selected"]
        for s in json.loads(catalog.read_text())["streams"]
    }
    assert chosen == {"contacts": False, "companies": True}
    with pytest.raises(RuntimeError, match="no stream 'deals'"):
        _select(catalog, "deals")


def test_the_minimum_calls_are_full_pages() -> None:
    assert _minimum_calls("hubspot", 100_000, 250_176) == 1000 + 2502
    assert _minimum_calls("salesforce", 100_000, 0) == 50
    # linking to customers billing already had writes their ids back: a batch per batch
    assert _minimum_calls("hubspot", 100_000, 0, linked=1000) == 1000 + 10
    assert _minimum_calls("salesforce", 100_000, 0, linked=1000) == 50 + 5
