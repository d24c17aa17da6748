"""Country names as CRMs hold them -> ISO 3166-1 alpha-2 codes, and back.

A CRM's country is free text (HubSpot) or a picklist label (Salesforce), typed by people:
"Turkey" where pycountry says "Türkiye", "USA", "UK", "Holland", "Czech Republic",
"Cote d'Ivoire" without its accent. :func:`country_code` resolves, in order:

1. an ISO alpha-2 or alpha-3 code ("DE", "deu", "USA");
2. every name pycountry knows (``name``, ``official_name``, ``common_name``), compared
   without case, accents, punctuation or a leading "the" ("Cote d'Ivoire", "the Bahamas");
3. :data:`ALIASES`: common, former and short names in daily use that ISO 3166 does not
   list ("Russia", "Burma", "Swaziland", "Holland", "UK", ...), each declared and tested
   (``tests/connectors/test_countries.py``), never guessed.

Anything else is unknown (None): a caller leaves ``country_code`` empty and reports it,
rather than fuzzy-matching a name to the wrong country. Used by both connectors (the code
derived from a country name) and by ``sync`` (the customer model and the ``normalized``
match mode), so every part of crmsync resolves a name the same way.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from typing import Any

import pycountry

#: Names in daily use that ISO 3166 (and so pycountry) does not list, by the code they
#: mean. Keys are compared as :func:`_key` folds them.
ALIASES: dict[str, str] = {
    # short forms and abbreviations
    "USA": "US",
    "U.S.A.": "US",
    "U.S.": "US",
    "United States": "US",
    "America": "US",
    "UK": "GB",
    "U.K.": "GB",
    "Great Britain": "GB",
    "Britain": "GB",
    "England": "GB",
    "Scotland": "GB",
    "Wales": "GB",
    "Northern Ireland": "GB",
    "UAE": "AE",
    "Emirates": "AE",
    "KSA": "SA",
    "Russia": "RU",
    "South Korea": "KR",
    "Republic of Korea": "KR",
    "North Korea": "KP",
    "Holland": "NL",
    "The Netherlands": "NL",
    "Vatican": "VA",
    "Vatican City": "VA",
    "Micronesia": "FM",
    "Palestine": "PS",
    "Brunei": "BN",
    "Macau": "MO",
    "Falkland Islands": "FK",
    "Saint Martin": "MF",
    "Sint Maarten": "SX",
    "DRC": "CD",
    "DR Congo": "CD",
    "Democratic Republic of the Congo": "CD",
    "Democratic Republic of Congo": "CD",
    "Congo-Kinshasa": "CD",
    "Congo-Brazzaville": "CG",
    "Republic of Congo": "CG",
    "Ivory Coast": "CI",
    "East Timor": "TL",
    "Cape Verde": "CV",
    "Slovak Republic": "SK",
    "Kyrgyz Republic": "KG",
    "Bosnia": "BA",
    "Trinidad": "TT",
    "St Kitts and Nevis": "KN",
    "St Lucia": "LC",
    "St Vincent and the Grenadines": "VC",
    # former names
    "Turkey": "TR",
    "Burma": "MM",
    "Swaziland": "SZ",
    "Macedonia": "MK",
    "Republic of Macedonia": "MK",
    "FYROM": "MK",
    "Zaire": "CD",
    # the names the countries give themselves, as people type them into a CRM
    "Deutschland": "DE",
    "Österreich": "AT",
    "Schweiz": "CH",
    "Suisse": "CH",
    "Svizzera": "CH",
    "España": "ES",
    "Italia": "IT",
    "Nederland": "NL",
    "België": "BE",
    "Belgique": "BE",
    "Sverige": "SE",
    "Norge": "NO",
    "Danmark": "DK",
    "Suomi": "FI",
    "Polska": "PL",
    "Česko": "CZ",
    "Magyarország": "HU",
    "Brasil": "BR",
    "México": "MX",
    "Perú": "PE",
    "Éire": "IE",
}


def _key(text: str) -> str:
    """A name folded for comparison: no accents, case, punctuation or leading "the";
    "St." is "Saint", "&" is "and"."""
    folded = unicodedata.normalize("NFKD", text)
    folded = "".join(ch for ch in folded if not unicodedata.combining(ch)).casefold()
    folded = folded.replace("&", " and ")
    folded = re.sub(r"[^\w\s]", " ", folded)
    words = folded.split()
    if words and words[0] == "the":
        words = words[1:]
    words = ["saint" if w == "st" else w for w in words]
    return " ".join(words)


@lru_cache(maxsize=1)
def _names() -> dict[str, str]:
    """Every folded name pycountry knows, then the aliases, -> alpha-2."""
    index: dict[str, str] = {}
    country: Any
    for country in pycountry.countries:
        for attribute in ("name", "official_name", "common_name"):
            value = getattr(country, attribute, None)
            if value:
                index.setdefault(_key(str(value)), str(country.alpha_2))
    for alias, code in ALIASES.items():
        index.setdefault(_key(alias), code)
    return index


@lru_cache(maxsize=1)
def _codes() -> dict[str, str]:
    codes: dict[str, str] = {}
    country: Any
    for country in pycountry.countries:
        codes[str(country.alpha_2)] = str(country.alpha_2)
        codes[str(country.alpha_3)] = str(country.alpha_2)
    return codes


@lru_cache(maxsize=4096)
def country_code(country: str | None) -> str | None:
    """The ISO 3166-1 alpha-2 code of a country name or code as a CRM holds it; None when
    it names no country crmsync knows (see the module docstring)."""
    if not country or not country.strip():
        return None
    text = country.strip()
    if text.isalpha() and len(text) in (2, 3):
        code = _codes().get(text.upper())
        if code is not None:
            return code
    return _names().get(_key(text))


@lru_cache(maxsize=512)
def country_name(code: str | None) -> str | None:
    """The country's common name for an ISO alpha-2 code ("DE" -> "Germany"), as a CRM
    without a code field is written."""
    if not code:
        return None
    found: Any = pycountry.countries.get(alpha_2=code.strip().upper())
    if found is None:
        return None
    return str(getattr(found, "common_name", None) or found.name)
