"""Country names as CRMs write them resolve to ISO 3166-1 alpha-2 codes, or to nothing."""

from __future__ import annotations

from typing import Any

import pycountry
import pytest

from connectors.countries import ALIASES, _key, country_code, country_name

#: names seen in real CRMs (issue 12), with the code each means
IN_DAILY_USE = {
    "Turkey": "TR",
    "Türkiye": "TR",
    "Czech Republic": "CZ",
    "Czechia": "CZ",
    "Russia": "RU",
    "South Korea": "KR",
    "North Korea": "KP",
    "Vietnam": "VN",
    "Iran": "IR",
    "Bolivia": "BO",
    "Macedonia": "MK",
    "North Macedonia": "MK",
    "Swaziland": "SZ",
    "USA": "US",
    "U.S.A.": "US",
    "United States": "US",
    "United States of America": "US",
    "UK": "GB",
    "United Kingdom": "GB",
    "Great Britain": "GB",
    "England": "GB",
    "Holland": "NL",
    "The Netherlands": "NL",
    "Netherlands": "NL",
    "Burma": "MM",
    "Ivory Coast": "CI",
    "Cote d'Ivoire": "CI",
    "Côte d'Ivoire": "CI",
    "Cape Verde": "CV",
    "East Timor": "TL",
    "Laos": "LA",
    "Syria": "SY",
    "Tanzania": "TZ",
    "Venezuela": "VE",
    "Moldova": "MD",
    "Taiwan": "TW",
    "Hong Kong": "HK",
    "Macau": "MO",
    "UAE": "AE",
    "Democratic Republic of the Congo": "CD",
    "Republic of the Congo": "CG",
    "The Bahamas": "BS",
    "St. Lucia": "LC",
    "Aland Islands": "AX",
    "Reunion": "RE",
    "Curacao": "CW",
    "Deutschland": "DE",
    "Germany": "DE",
    "germany": "DE",
    "  GERMANY ": "DE",
    "DE": "DE",
    "de": "DE",
    "DEU": "DE",
    "Bosnia and Herzegovina": "BA",
    "Bosnia & Herzegovina": "BA",
    "Trinidad and Tobago": "TT",
}


@pytest.mark.parametrize(("name", "code"), sorted(IN_DAILY_USE.items()))
def test_names_in_daily_use_resolve(name: str, code: str) -> None:
    assert country_code(name) == code


@pytest.mark.parametrize("name", ["Atlantis", "Kosovo", "Korea", "XX", "QQQ", "", "  ", None])
def test_an_unknown_or_ambiguous_name_is_unknown(name: str | None) -> None:
    # Kosovo has no ISO 3166-1 code; "Korea" could be either: neither is guessed
    assert country_code(name) is None


def test_every_iso_country_resolves_by_code_and_by_every_name() -> None:
    country: Any
    for country in pycountry.countries:
        code = str(country.alpha_2)
        assert country_code(code) == code
        assert country_code(str(country.alpha_3)) == code
        for attribute in ("name", "official_name", "common_name"):
            value = getattr(country, attribute, None)
            if value:
                assert country_code(str(value)) == code, (value, code)
        assert country_code(country_name(code)) == code


def test_the_alias_table_is_declared_iso_codes_that_never_shadow_an_iso_name() -> None:
    iso_names: dict[str, str] = {}
    country: Any
    for country in pycountry.countries:
        for attribute in ("name", "official_name", "common_name"):
            value = getattr(country, attribute, None)
            if value:
                iso_names[_key(str(value))] = str(country.alpha_2)
    for alias, code in ALIASES.items():
        assert pycountry.countries.get(alpha_2=code) is not None, alias
        assert iso_names.get(_key(alias), code) == code, f"{alias} is an ISO name elsewhere"
        assert country_code(alias) == code


def test_names_for_codes() -> None:
    assert country_name("DE") == "Germany"
    assert country_name("tw") == "Taiwan"
    assert country_name("ZZ") is None and country_name(None) is None
