"""Connectors are plug-ins found through the ``crmsync.connectors`` entry-point group."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cache
from importlib.metadata import entry_points
from typing import Any

from connectors.base import Capabilities, ConnectionConfig, Connector, RateGate
from connectors.errors import ConfigError

GROUP = "crmsync.connectors"

log = logging.getLogger("crmsync.connectors")


@cache
def _entry_points() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def available() -> list[str]:
    """The keys of every installed connector."""
    return sorted(_entry_points())


def connector_class(key: str) -> type[Connector]:
    """The connector class registered under ``key``; an unknown key, or a plug-in that
    cannot be imported, is a ``ConfigError`` saying so."""
    eps = _entry_points()
    if key not in eps:
        known = ", ".join(available()) or "none"
        raise ConfigError(f"unknown CRM connector {key!r} (installed: {known})")
    try:
        cls: type[Connector] = eps[key].load()
    except Exception as error:  # a broken plug-in: its import failed
        raise ConfigError(
            f"the {key} connector cannot be loaded: {type(error).__name__}: {error} "
            f"(reinstall the package that provides it)"
        ) from error
    return cls


def load_all() -> list[str]:
    """Import every installed connector (and its CRM client library) now, and return the
    keys of those that failed to load (each logged; using one raises its error then). The
    worker and the web server call it as they start: imported on first use instead, the
    client libraries took 1-3 s of the first webhook's intake and of its sync on a loaded
    machine."""
    failed = []
    for key in available():
        try:
            connector_class(key)
        except Exception as error:  # a broken plug-in must not stop the process starting
            log.warning("connector %s could not be loaded: %s", key, error)
            failed.append(key)
    return failed


def create(key: str, config: ConnectionConfig, gate: RateGate | None = None) -> Connector:
    """Build the connector ``key`` for one connection."""
    cls = connector_class(key)
    return cls(config, gate=gate)  # type: ignore[call-arg]


@dataclass(frozen=True)
class InstalledConnector:
    """An installed connector as ``crmsync connectors list`` shows it. ``error`` says why a
    plug-in could not be loaded (then ``connector`` is None and ``capabilities`` are none):
    one broken package must not hide the others, nor stop the list."""

    key: str
    package: str
    version: str
    capabilities: Capabilities
    connector: type[Connector] | None
    error: str | None = None


def installed() -> list[InstalledConnector]:
    """Every installed connector with the package that provides it (loads each one)."""
    found = []
    for key in available():
        ep = _entry_points()[key]
        dist = getattr(ep, "dist", None)
        cls: type[Connector] | None = None
        error = None
        try:
            cls = connector_class(key)
        except ConfigError as failure:  # a broken plug-in is listed as such, with why
            error = str(failure)
        found.append(
            InstalledConnector(
                key=key,
                package=dist.name if dist is not None else ep.value.split(":")[0],
                version=dist.version if dist is not None else "",
                capabilities=cls.capabilities if cls is not None else Capabilities(),
                connector=cls,
                error=error,
            )
        )
    return found


def loadable() -> list[str]:
    """The keys of the installed connectors that load (those a connection can use)."""
    return [found.key for found in installed() if found.connector is not None]
