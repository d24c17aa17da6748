"""Salesforce Outbound Messages are parsed by defusedxml: a DTD, an entity or an external
reference is refused (400, nothing stored, nothing enqueued) in whatever encoding it comes,
UTF-16 included, where no byte pattern can see it; a well-formed UTF-16 message is read."""

from __future__ import annotations

import pytest

from tests.security.conftest import World, outbound_message

LAUGHS = (
    '<!DOCTYPE soapenv:Envelope [<!ENTITY a "ha"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
    '<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">]>'
)
EXTERNAL = '<!DOCTYPE soapenv:Envelope [<!ENTITY x SYSTEM "file:///etc/passwd">]>'


def hostile(world: World, dtd: str, encoding: str) -> bytes:
    message = outbound_message(world.a.salesforce_org, ("04l000000000001AAA", "001A"))
    message = message.replace(
        "<sf:Id>001A</sf:Id>", "<sf:Id>&d;</sf:Id>" if "d " in dtd else "<sf:Id>&x;</sf:Id>"
    )
    return f'<?xml version="1.0" encoding="{encoding}"?>{dtd}{message}'.encode(encoding)


@pytest.mark.parametrize("encoding", ["UTF-8", "UTF-16", "UTF-16-LE", "UTF-16-BE"])
@pytest.mark.parametrize("dtd", [LAUGHS, EXTERNAL], ids=["entity-expansion", "external-entity"])
def test_a_dtd_is_refused_in_any_encoding(world: World, dtd: str, encoding: str) -> None:
    path = f"/webhooks/salesforce/{world.a.salesforce}?secret={world.a.salesforce_secret}"
    body = hostile(world, dtd, encoding)
    assert b"DOCTYPE" not in body or encoding == "UTF-8"  # invisible to a byte regex
    response = world.post(path, body, {"Content-Type": "text/xml"})
    assert response.status_code == 400, response.text
    detail = response.json()["detail"]
    # expat reads UTF-8 and UTF-16 with a BOM; a body it cannot even decode is refused too
    assert "DTD" in detail if encoding in ("UTF-8", "UTF-16") else "XML" in detail
    assert world.inbox() == 0
    assert world.enqueued() == 0


def test_a_well_formed_utf16_message_is_read(world: World) -> None:
    path = f"/webhooks/salesforce/{world.a.salesforce}?secret={world.a.salesforce_secret}"
    message = outbound_message(world.a.salesforce_org, ("04l000000000002AAA", "001B"))
    body = f'<?xml version="1.0" encoding="UTF-16"?>{message}'.encode("utf-16")
    response = world.post(path, body, {"Content-Type": "text/xml"})
    assert response.status_code == 200, response.text
    assert b"<Ack>true</Ack>" in response.content
    assert world.inbox() == 1
    assert world.enqueued() == 1
