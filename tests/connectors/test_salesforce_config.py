"""What a Salesforce connection takes is checked as it is given: an org id that cannot be
one is refused at ``connections add`` (Outbound Messages naming the real org would all be
refused later)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from connectors.errors import ConfigError
from connectors.salesforce.config import SalesforceSettings
from connectors.salesforce.connector import SalesforceConnector
from connectors.setup import check_config

URL = "https://acme.my.salesforce.com"


@pytest.mark.parametrize(
    "org_id", ["00D5g0000000001", "00D5g0000000001EAA", " 00D5g0000000001EAA "]
)
def test_an_org_id_of_15_or_18_characters_is_taken(org_id: str) -> None:
    settings = SalesforceSettings.model_validate({"instance_url": URL, "organization_id": org_id})
    assert settings.organization_id == org_id.strip()


@pytest.mark.parametrize(
    "org_id", ["00DWRONG000000001", "0015g0000000001EAA", "00D5g00000000", "00D5g0000000001-AA"]
)
def test_anything_else_is_refused_with_where_to_find_it(org_id: str) -> None:
    with pytest.raises(ValidationError, match=r"not a Salesforce org id.*Company Information"):
        SalesforceSettings.model_validate({"instance_url": URL, "organization_id": org_id})


def test_connections_add_checks_it_before_the_crm() -> None:
    with pytest.raises(ConfigError, match=r"--organization-id.*not a Salesforce org id"):
        check_config(
            SalesforceConnector,
            {"instance_url": URL, "organization_id": "00DWRONG000000001"},
            {"access_token": "t"},
        )
