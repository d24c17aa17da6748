"""Realistic, deterministic seed data for the CRM sandbox.

Both emulators seed from :func:`companies`: international names and addresses, multi-line
streets, non-ASCII text, a few empty fields, and two to three contacts per company. The same
``seed`` always gives the same records, so tests and benchmarks can rely on them.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field


@dataclass(frozen=True)
class SeedContact:
    first_name: str
    last_name: str
    email: str
    phone: str


@dataclass(frozen=True)
class SeedCompany:
    """A company as a CRM user would have typed it (vendor-neutral)."""

    index: int
    name: str
    street: str  # lines separated by "\n", as Salesforce's BillingStreet
    city: str
    state: str
    state_code: str
    postal_code: str
    country: str
    country_code: str
    phone: str
    domain: str
    contacts: list[SeedContact] = field(default_factory=list)


# (country, ISO code, [(city, state, state code, postal-code pattern)], phone prefix)
_PLACES: list[tuple[str, str, list[tuple[str, str, str, str]], str]] = [
    (
        "United States",
        "US",
        [
            ("San Francisco", "California", "CA", "941##"),
            ("New York", "New York", "NY", "100##"),
            ("Austin", "Texas", "TX", "787##"),
            ("Chicago", "Illinois", "IL", "606##"),
        ],
        "+1",
    ),
    (
        "Germany",
        "DE",
        [
            ("München", "Bayern", "BY", "80###"),
            ("Köln", "Nordrhein-Westfalen", "NW", "50###"),
            ("Berlin", "Berlin", "BE", "10###"),
        ],
        "+49",
    ),
    (
        "France",
        "FR",
        [
            ("Paris", "Île-de-France", "IDF", "750##"),
            ("Lyon", "Auvergne-Rhône-Alpes", "ARA", "690##"),
        ],
        "+33",
    ),
    (
        "India",
        "IN",
        [("Bengaluru", "Karnataka", "KA", "560###"), ("Mumbai", "Maharashtra", "MH", "400###")],
        "+91",
    ),
    (
        "Australia",
        "AU",
        [("Sydney", "New South Wales", "NSW", "2###"), ("Melbourne", "Victoria", "VIC", "3###")],
        "+61",
    ),
    ("Singapore", "SG", [("Singapore", "", "", "0#####")], "+65"),
    (
        "Japan",
        "JP",
        [("東京", "東京都", "13", "1##-####"), ("大阪", "大阪府", "27", "5##-####")],
        "+81",
    ),
    ("Brazil", "BR", [("São Paulo", "São Paulo", "SP", "01###-###")], "+55"),
    ("Sweden", "SE", [("Göteborg", "Västra Götaland", "O", "4## ##")], "+46"),
    ("Poland", "PL", [("Łódź", "Łódzkie", "10", "9#-###")], "+48"),
    (
        "United Kingdom",
        "GB",
        [("London", "", "", "EC1A #BB"), ("Edinburgh", "Scotland", "SCT", "EH# #AB")],
        "+44",
    ),
]

_PREFIXES = [
    "Acme",
    "Globex",
    "Initech",
    "Umbrella",
    "Stark",
    "Wayne",
    "Nordwind",
    "Sakura",
    "Zürich",
    "Øresund",
    "Česká",
    "Müller",
    "Société",
    "Ñandú",
    "Åkesson",
    "Dragon",
    "Lotus",
    "Maple",
    "Orion",
    "Vega",
    "Kestrel",
    "Bräu",
    "Fjord",
    "Crédit",
    "Tata",
]
_SUFFIXES = [
    "Corporation",
    "GmbH",
    "S.A.",
    "Ltd",
    "Pty Ltd",
    "K.K.",
    "SARL",
    "Inc.",
    "Holdings",
    "AB",
    "sp. z o.o.",
    "Pte. Ltd.",
    "LLC",
    "& Söhne",
    "Group",
]
_MIDDLES = [
    "Industries",
    "Logistics",
    "Software",
    "Analytics",
    "Foods",
    "Energy",
    "Robotics",
    "Textil",
    "Médical",
    "Systems",
    "Werke",
    "Trading",
    "Labs",
    "Bank",
    "Studios",
]
_STREETS = [
    "Main Street",
    "Hauptstraße",
    "Rue de Rivoli",
    "MG Road",
    "George Street",
    "Orchard Road",
    "銀座通り",
    "Avenida Paulista",
    "Drottninggatan",
    "ul. Piotrkowska",
    "Baker Street",
    "Königsallee",
    "Market Street",
    "Boulevard Haussmann",
]
_FIRST = [
    "Ada",
    "José",
    "Zoë",
    "Mateusz",
    "Søren",
    "Aiko",
    "Priya",
    "Liam",
    "Chloé",
    "Björn",
    "Fatima",
    "Noah",
    "Élodie",
    "Kenji",
    "Olga",
    "Raúl",
    "Amara",
    "Jürgen",
    "Mei",
    "Sven",
]
_LAST = [
    "Lovelace",
    "García",
    "Müller",
    "Kowalski",
    "Kierkegaard",
    "Tanaka",
    "Sharma",
    "O'Brien",
    "Dubois",
    "Åström",
    "Haddad",
    "Smith",
    "Lefèvre",
    "Watanabe",
    "Ivanova",
]


def _fill(pattern: str, rng: random.Random) -> str:
    return "".join(str(rng.randint(0, 9)) if ch == "#" else ch for ch in pattern)


def _ascii_slug(text: str) -> str:
    return "".join(ch for ch in text.lower() if ch.isascii() and ch.isalnum()) or "co"


def company(index: int, seed: int = 0) -> SeedCompany:
    """The ``index``-th company of the data set ``seed`` (pure: same inputs, same company)."""
    rng = random.Random(seed * 1_000_003 + index)
    country, code, cities, dial = _PLACES[rng.randrange(len(_PLACES))]
    city, state, state_code, postal = cities[rng.randrange(len(cities))]
    name = f"{rng.choice(_PREFIXES)} {rng.choice(_MIDDLES)} {rng.choice(_SUFFIXES)} {index}"
    lines = [f"{rng.randint(1, 999)} {rng.choice(_STREETS)}"]
    if rng.random() < 0.35:
        lines.append(f"Suite {rng.randint(100, 999)}")
    if rng.random() < 0.1:
        lines.append(f"c/o {rng.choice(_FIRST)} {rng.choice(_LAST)}")
    domain = f"{_ascii_slug(name.split()[0])}{index}.example"
    contacts = []
    for _ in range(rng.randint(2, 3)):
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        email = f"{_ascii_slug(first)}.{_ascii_slug(last)}{rng.randint(1, 99)}@{domain}"
        contacts.append(
            SeedContact(
                first, last, email, f"{dial} {rng.randint(100, 999)} {rng.randint(1000, 9999)}"
            )
        )
    return SeedCompany(
        index=index,
        name=name,
        street="\n".join(lines),
        city=city,
        state=state,
        state_code=state_code,
        postal_code=_fill(postal, rng),
        country=country,
        country_code=code,
        phone=f"{dial} {rng.randint(100, 999)} {rng.randint(100, 999)} {rng.randint(1000, 9999)}",
        domain=domain,
        contacts=contacts,
    )


def companies(count: int, seed: int = 0, start: int = 0) -> Iterator[SeedCompany]:
    """``count`` companies of the data set ``seed``, from ``start``."""
    for index in range(start, start + count):
        yield company(index, seed)
