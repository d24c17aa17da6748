"""One error tree in ``sync/``: every exception the domain defines is under ``SyncError``,
the tree is drawn in ``sync/errors.py``'s docstring, and the CLI's exit codes and the API's
statuses each map every class of it (and of the connectors' tree) once."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import connectors.errors
import sync
import sync.errors
from api.errors import HTTP_STATUS, status_for
from cli.output import EXIT_CODES, ExitCode, exit_code_for
from sync.errors import SyncError, all_errors


def _sync_modules() -> list[str]:
    return [
        info.name
        for info in pkgutil.walk_packages(sync.__path__, "sync.")
        if ".migrations" not in info.name
    ]


def _connector_errors() -> list[type[connectors.errors.ConnectorError]]:
    found: list[type[connectors.errors.ConnectorError]] = [connectors.errors.ConnectorError]
    for cls in found:
        found.extend(cls.__subclasses__())
    return found


def test_every_exception_defined_in_sync_is_under_sync_error() -> None:
    outside = []
    for name in _sync_modules():
        module = importlib.import_module(name)
        for value in vars(module).values():
            if (
                inspect.isclass(value)
                and issubclass(value, BaseException)
                and value.__module__ == name
                and not issubclass(value, SyncError)
            ):
                outside.append(f"{name}.{value.__name__}")
    assert outside == []


def test_the_errors_the_faces_catch_are_in_the_tree() -> None:
    # the roots that were unrelated before, still importable where callers found them
    from sync.alerts import AlertDeliveryFailed, AlertSetupError
    from sync.billing import InvalidRecord
    from sync.conflicts import ConflictError
    from sync.connections import ConnectionSetupError
    from sync.crypto import SecretKeyMissing
    from sync.csv_import import CsvFileError
    from sync.customers import CustomerNotFound, CustomerRuleBroken, DuplicateCustomer
    from sync.fencing import StaleRun
    from sync.inbox import UnknownConnection
    from sync.operators import ChooseOrganisation, OperatorError, SignInLimited, SignInRefused

    for cls in (
        AlertDeliveryFailed, AlertSetupError, InvalidRecord, ConflictError,
        ConnectionSetupError, SecretKeyMissing, CsvFileError, CustomerNotFound,
        CustomerRuleBroken, DuplicateCustomer, StaleRun, UnknownConnection,
        ChooseOrganisation, OperatorError, SignInLimited, SignInRefused,
    ):  # fmt: skip
        assert issubclass(cls, SyncError), cls
    # callers that speak Python's own terms keep working
    assert issubclass(sync.errors.NotFound, LookupError)
    assert issubclass(sync.errors.InvalidInput, ValueError)


def test_the_docstring_draws_every_class_once_under_its_parent() -> None:
    drawing = (sync.errors.__doc__ or "").split("\n\n")[1].splitlines()
    depth: dict[str, int] = {}
    for number, line in enumerate(drawing):
        if number and "── " not in line:
            continue  # a description's second line
        name = line.strip(" │├└─").split()[0]
        assert name not in depth, f"{name} drawn twice"
        depth[name] = (len(line) - len(line.lstrip(" │├└─"))) // 4
    assert sorted(depth) == sorted(cls.__name__ for cls in all_errors())
    for cls in all_errors()[1:]:
        parent = cls.__bases__[0]
        assert depth[cls.__name__] == depth[parent.__name__] + 1, cls


@pytest.mark.parametrize("error", all_errors()[1:] + _connector_errors(), ids=lambda c: c.__name__)
def test_every_error_has_one_exit_code_and_one_http_status(error: type[SyncError]) -> None:
    assert exit_code_for(error) in (ExitCode.ERROR, ExitCode.NOT_FOUND, ExitCode.INVALID)
    assert 300 <= status_for(error) < 600


def test_the_root_has_no_entry_so_a_new_kind_must_be_mapped() -> None:
    # every first-level class is mapped itself: none falls back on a catch-all
    assert SyncError not in EXIT_CODES and SyncError not in HTTP_STATUS
    for cls in SyncError.__subclasses__():
        assert cls in EXIT_CODES and cls in HTTP_STATUS, cls
    with pytest.raises(KeyError):
        exit_code_for(SyncError)
    with pytest.raises(KeyError):
        status_for(SyncError)


def test_the_mapping_follows_the_meaning() -> None:
    e = sync.errors
    assert exit_code_for(e.CustomerNotFound) == ExitCode.NOT_FOUND
    assert status_for(e.CustomerNotFound) == 404
    assert exit_code_for(e.InvalidRecord) == ExitCode.INVALID
    assert status_for(e.InvalidRecord) == 422
    assert status_for(e.DuplicateCustomer) == 409
    assert status_for(e.ConflictNotOpen) == 409
    assert status_for(e.SignInRefused) == 401
    assert status_for(e.SignInLimited) == 429
    assert exit_code_for(e.SecretKeyMissing) == ExitCode.ERROR
    assert exit_code_for(connectors.errors.AuthError) == ExitCode.INVALID
    assert exit_code_for(connectors.errors.RateLimited) == ExitCode.ERROR
