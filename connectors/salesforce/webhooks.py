"""Salesforce Outbound Messages: verify, parse, and acknowledge.

An Outbound Message is a SOAP envelope POSTed by Salesforce::

    <soapenv:Envelope><soapenv:Body>
      <notifications xmlns="http://soap.sforce.com/2005/09/outbound">
        <OrganizationId>00D...</OrganizationId> <ActionId/> <SessionId/> <EnterpriseUrl/> ...
        <Notification><Id>04l...</Id>
          <sObject xsi:type="sf:Account" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">
            <sf:Id>001...</sf:Id> <sf:Name>...</sf:Name> ...
          </sObject></Notification>   (up to 100)
      </notifications></soapenv:Body></soapenv:Envelope>

An Outbound Message is defined on one object ("Outbound Messaging", Setup: an org may
define them on any object): a Notification of an ``sf:Account`` is a customer's, of an
``sf:Contact`` a contact's, and one of any other object (a Lead, an Opportunity) is left
out, while the message is still acknowledged (refused, Salesforce would resend it for 24
hours, the Account and Contact notifications in it too).

Salesforce signs nothing, so a connection has a secret carried in the endpoint URL
(``?secret=``) or in a header (``X-Crmsync-Secret``), compared in constant time, and the
``OrganizationId`` must be the connection's. The receiver must answer 200 with
:func:`ack_response`, or Salesforce retries for 24 hours. Delivery is at least once: the
Notification ``Id`` is the de-duplication key.
https://developer.salesforce.com/docs/atlas.en-us.api.meta/api/sforce_api_om_outboundmessaging_understanding.htm

The XML is parsed with ``defusedxml`` with DTDs forbidden: a document type declaration, an
entity declaration or an external reference is refused by the parser itself, whatever the
body's encoding (a UTF-16 body hides ``<!DOCTYPE`` from any byte pattern), which rules out
entity expansion ("billion laughs") and external entities.
"""

from __future__ import annotations

import hmac
import xml.etree.ElementTree as ET
from datetime import datetime
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring as safe_fromstring

from connectors.base import WebhookEvent, WebhookRequest
from connectors.errors import WebhookRejected

SOAP_NS = "http://schemas.xmlsoap.org/soap/envelope/"
OUTBOUND_NS = "http://soap.sforce.com/2005/09/outbound"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
SECRET_HEADER = "X-Crmsync-Secret"
#: the sObject type of a Notification -> the events' object ("" : no xsi:type, an Account)
_OBJECT_TYPES: dict[str, Literal["customer", "contact"]] = {
    "Account": "customer",
    "": "customer",
    "Contact": "contact",
}
MAX_BODY_BYTES = 5 * 1024 * 1024

ACK_BODY = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    f'<soapenv:Envelope xmlns:soapenv="{SOAP_NS}"><soapenv:Body>'
    f'<notificationsResponse xmlns="{OUTBOUND_NS}"><Ack>true</Ack></notificationsResponse>'
    "</soapenv:Body></soapenv:Envelope>"
).encode()


def ack_response() -> bytes:
    """The SOAP body that acknowledges an Outbound Message (answer it with HTTP 200 and
    ``Content-Type: text/xml``)."""
    return ACK_BODY


def _envelope(body: bytes) -> ET.Element:
    if len(body) > MAX_BODY_BYTES:
        raise WebhookRejected(413, "Outbound Message body too large")
    try:
        root = safe_fromstring(body, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        raise WebhookRejected(
            400, f"Outbound Message refused: a DTD, entity or external reference ({exc})"
        ) from exc
    except (ET.ParseError, ValueError, LookupError) as exc:
        # expat raises ValueError for an encoding it cannot read (a declared
        # "UTF-16-LE", say) and LookupError for one it does not know: a bad body, not ours
        raise WebhookRejected(400, f"Outbound Message is not well-formed XML: {exc}") from exc
    notifications = root.find(f"{{{SOAP_NS}}}Body/{{{OUTBOUND_NS}}}notifications")
    if notifications is None:
        raise WebhookRejected(400, "Outbound Message has no soapenv:Body/notifications")
    return notifications


def _text(element: ET.Element, tag: str) -> str | None:
    found = element.find(f"{{{OUTBOUND_NS}}}{tag}")
    if found is None or found.text is None:
        return None
    return found.text.strip()


def verify(request: WebhookRequest, *, secret: str | None, organization_id: str | None) -> None:
    """Raise :class:`WebhookRejected` unless the request carries the connection's secret and
    names the connection's organisation."""
    if not secret:
        raise WebhookRejected(401, "no webhook_secret is configured for this connection")
    if request.method.upper() != "POST":
        raise WebhookRejected(400, f"Outbound Messages are POSTed, not {request.method}")
    headers = {k.lower(): v for k, v in request.headers.items()}
    given = headers.get(SECRET_HEADER.lower())
    if given is None:
        given = parse_qs(urlsplit(request.url).query).get("secret", [None])[0]
    if given is None or not hmac.compare_digest(given.encode(), secret.encode()):
        raise WebhookRejected(401, "Outbound Message secret missing or wrong")
    notifications = _envelope(request.body)
    org = _text(notifications, "OrganizationId")
    if not organization_id:
        raise WebhookRejected(401, "no organization_id is configured for this connection")
    # Org ids come as 15 or 18 characters; the first 15 are the case-sensitive id.
    if org is None or not hmac.compare_digest(org[:15].encode(), organization_id[:15].encode()):
        raise WebhookRejected(401, f"Outbound Message from another organisation: {org}")


def _parse_stamp(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def parse(body: bytes) -> list[WebhookEvent]:
    """The events of an Outbound Message, one per Notification (keyed by its ``Id``)."""
    notifications = _envelope(body)
    events = []
    for notification in notifications.findall(f"{{{OUTBOUND_NS}}}Notification"):
        key = _text(notification, "Id")
        sobject = notification.find(f"{{{OUTBOUND_NS}}}sObject")
        if not key or sobject is None:
            raise WebhookRejected(400, "Notification without Id or sObject")
        sobject_type = (sobject.get(f"{{{XSI_NS}}}type") or "").rpartition(":")[2]
        if sobject_type not in _OBJECT_TYPES:
            continue
        values: dict[str, Any] = {}
        for child in sobject:
            values[child.tag.rpartition("}")[2]] = (child.text or "").strip() or None
        crm_id = values.get("Id")
        if not crm_id:
            raise WebhookRejected(400, f"Notification {key} has no sObject Id")
        deleted = str(values.get("IsDeleted") or "").lower() == "true"
        events.append(
            WebhookEvent(
                key=key,
                kind="deleted" if deleted else "changed",
                object_type=_OBJECT_TYPES[sobject_type],
                crm_id=crm_id,
                occurred_at=_parse_stamp(values.get("SystemModstamp")),
                payload=values,
            )
        )
    return events
