"""Setting up a connection for any installed connector, from its own models.

A connector declares its settings and credentials as pydantic models (``settings_model``,
``credentials_model``; see ``connectors.base``). The CLI's ``connections add KEY`` and the
console's connection form are built from :func:`option_fields`, and what the operator gives
is checked by :func:`check_config` with the models' own error messages.
"""

from __future__ import annotations

import types
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, SecretStr, ValidationError

from connectors.base import Connector
from connectors.errors import ConfigError

FieldKind = Literal["text", "secret", "int", "float", "bool"]


@dataclass(frozen=True)
class OptionField:
    """One setting or credential as a form field / CLI option."""

    name: str
    kind: FieldKind
    help: str
    required: bool
    default: Any
    #: True for credentials (stored encrypted), False for settings
    credential: bool

    @property
    def option(self) -> str:
        """The CLI option: ``--instance-url``."""
        return "--" + self.name.replace("_", "-")

    def envvar(self, connector_key: str) -> str | None:
        """Secrets are also read from ``KEY_FIELD`` (``HUBSPOT_ACCESS_TOKEN``)."""
        if not self.credential:
            return None
        return f"{connector_key}_{self.name}".upper().replace("-", "_")


def _kind(annotation: Any) -> FieldKind:
    if get_origin(annotation) in (Union, types.UnionType):
        inner = [a for a in get_args(annotation) if a is not type(None)]
        annotation = inner[0] if len(inner) == 1 else str
    if annotation is SecretStr:
        return "secret"
    if annotation is bool:
        return "bool"
    if annotation is int:
        return "int"
    if annotation is float:
        return "float"
    return "text"


def _fields(model: type[BaseModel], credential: bool) -> list[OptionField]:
    return [
        OptionField(
            name=name,
            kind=_kind(info.annotation),
            help=info.description or "",
            required=info.is_required(),
            default=None if info.is_required() else info.default,
            credential=credential,
        )
        for name, info in model.model_fields.items()
    ]


def option_fields(connector: type[Connector]) -> list[OptionField]:
    """The connector's settings, then its credentials, as options / form fields."""
    return _fields(connector.settings_model, False) + _fields(connector.credentials_model, True)


def _problems(error: ValidationError, model: type[BaseModel]) -> list[str]:
    problems = []
    for detail in error.errors():
        message = str(detail["msg"]).removeprefix("Value error, ")
        loc = [str(part) for part in detail["loc"]]
        if not loc:
            problems.append(message)
        elif loc[0] in model.model_fields:
            problems.append(f"--{loc[0].replace('_', '-')}: {message}")
        else:
            problems.append(f"{loc[0]!r}: {message}")
    return problems


def check_config(
    connector: type[Connector], settings: Mapping[str, Any], credentials: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, str]]:
    """Check a connection's settings and credentials with the connector's models.

    Returns what to store: the settings given (plain JSON values, defaults left out so that
    a later default applies) and the credentials given, as strings. Raises ``ConfigError``
    naming every problem, each in the model's own words."""
    problems: list[str] = []
    checked_settings: dict[str, Any] = {}
    checked_credentials: dict[str, str] = {}
    try:
        parsed = connector.settings_model.model_validate(dict(settings))
        checked_settings = parsed.model_dump(mode="json", exclude_unset=True, exclude_none=True)
    except ValidationError as error:
        problems += _problems(error, connector.settings_model)
    given = {k: v for k, v in credentials.items() if v not in (None, "")}
    try:
        secrets = connector.credentials_model.model_validate(given)
        for name in secrets.model_fields_set:
            value = getattr(secrets, name)
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            if value is not None:
                checked_credentials[name] = str(value)
    except ValidationError as error:
        problems += _problems(error, connector.credentials_model)
    if problems:
        raise ConfigError(f"{connector.key} connection: " + "; ".join(problems))
    return checked_settings, checked_credentials
