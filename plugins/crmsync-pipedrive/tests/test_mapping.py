"""Pipedrive organization <-> customer fields: the country code, which Pipedrive's address
does not have, is derived from the country name and written back as one."""

from __future__ import annotations

from crmsync_pipedrive import mapping
from crmsync_pipedrive.emulator import PHONE_KEY
from harness import PipedriveHarness

from connectors.base import CustomerPush

RECORD = {"name": "Acme", "address_route": "1 Rue de la Paix", "address_country": "France"}


def test_the_country_code_is_derived_from_the_country() -> None:
    fmap = mapping.field_map({})
    assert fmap[mapping.COUNTRY_CODE] == mapping.DERIVED
    assert mapping.DERIVED not in mapping.crm_fields(fmap)  # check() asks for no such field
    fields = mapping.to_fields(RECORD, fmap)
    assert fields["address.country"] == "France" and fields["address.country_code"] == "FR"
    unknown = mapping.to_fields({**RECORD, "address_country": "Atlantis"}, fmap)
    assert unknown["address.country_code"] is None
    assert mapping.to_fields({"name": "Bare"}, fmap)["address.country_code"] is None


def test_a_pushed_code_is_written_as_the_country_name_and_the_address_kept_whole() -> None:
    fmap = mapping.field_map({})
    assert mapping.touches_address_partly({"address.country_code": "DE"}, fmap)
    current = {"route": "1 Rue de la Paix", "locality": "Paris", "country": "France"}
    body = mapping.to_body({"address.country_code": "DE"}, fmap, current)
    assert body == {
        "address": {"route": "1 Rue de la Paix", "locality": "Paris", "country": "Germany"}
    }
    # with the country pushed too, the country is written as given
    both = mapping.to_body({"address.country": "Deutschland", "address.country_code": "DE"}, fmap)
    assert both == {"address": {"country": "Deutschland"}}


def test_the_code_can_be_unmapped_or_kept_in_a_custom_field() -> None:
    assert mapping.COUNTRY_CODE not in mapping.field_map({mapping.COUNTRY_CODE: None})
    kept = mapping.field_map({mapping.COUNTRY_CODE: PHONE_KEY})
    assert kept[mapping.COUNTRY_CODE] == PHONE_KEY
    assert mapping.to_body({"address.country_code": "DE"}, kept) == {
        "custom_fields": {PHONE_KEY: "DE"}
    }


def test_a_code_pushed_alone_reaches_pipedrive_as_its_country(harness: PipedriveHarness) -> None:
    [crm_id] = harness.seed(1)  # an address in the United States
    connector = harness.connector()
    [before] = connector.pull_customers_by_ids([crm_id])
    assert before.fields["address.country_code"] == "US"
    [result] = connector.push_customers(
        [CustomerPush("bill-1", crm_id, {"address.country_code": "CA"})]
    )
    assert result.ok, result.error
    after = harness.read(crm_id)
    assert after["address.country"] == "Canada" and after["address.country_code"] == "CA"
    assert after["address.city"] == before.fields["address.city"]  # the rest of the address kept
