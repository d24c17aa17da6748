"""crmsync's logs: one set-up for every process (web, worker, beat, the CLI), and the
safety net that keeps secrets out of them.

- ``CRMSYNC_LOG_FORMAT``: ``json`` (one JSON object per line, for production), ``console``
  (readable lines), or ``auto`` (readable on a terminal, else JSON); ``CRMSYNC_LOG_LEVEL``.
- Every line carries the ids bound with :func:`bound` for the work in hand
  (``organisation_id``, ``connection_id``, ``run_id``) and whatever ``extra=`` gives; the
  code logs with the standard library (``logging.getLogger(__name__)``), and so do Celery,
  uvicorn and the CRM client libraries: structlog renders all of them the same way.
- No line holds a secret. The code never logs one; and every line, whoever wrote it, is
  redacted on its way out by :class:`RedactingFormatter`: the secret values this process
  knows (each credential it decrypted, the secret key: :func:`register_secret`) and
  credential-looking query parameters and ``Authorization`` values are masked.
- uvicorn's access log keeps every request but drops the query string of the webhook
  routes (:class:`AccessLogRedaction`): a Salesforce Outbound Message URL carries
  ``?secret=``.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO
from urllib.parse import quote, quote_plus

import structlog
from structlog.typing import Processor

from sync.settings import Settings

#: what a masked secret looks like in a log line
MASK = "[redacted]"
#: values shorter than this are not treated as secrets by value (too likely to be a word)
_SHORTEST_SECRET = 8

#: query parameters and header-like pairs whose value is a credential
_CREDENTIAL_NAMES = (
    r"secret|[a-z_]*_secret|token|[a-z_]*_token|api[_-]?key|x-api-key|password|passwd|"
    r"signature|hapikey|session_?id|assertion|authorization"
)
_CREDENTIAL_PARAM = re.compile(
    rf"(?i)(?P<name>\b(?:{_CREDENTIAL_NAMES})[\"']?)(?P<sep>=|%3D|\s*:\s*)"
    r"(?P<value>\[redacted\]|Bearer\s+\[redacted\]|\"(?:[^\"\\]|\\.)*\"|'[^']*'"
    r"|(?:Bearer\s+)?[^\s&\"',;}\]]+)"
)
_AUTH_SCHEME = re.compile(r"(?i)\b(Bearer)\s+[A-Za-z0-9._~+/=-]{6,}")

_secrets: set[str] = set()
_secrets_lock = threading.Lock()
_secrets_pattern: re.Pattern[str] | None = None


def register_secret(*values: str | None) -> None:
    """Mask these values (and their URL-encoded forms) in every log line of this process.

    Called with each credential as it is decrypted, so a secret that slipped into a message
    or an exception (a URL, a CRM's error text) is masked all the same."""
    global _secrets_pattern
    fresh: set[str] = set()
    for value in values:
        if not value or len(value) < _SHORTEST_SECRET:
            continue
        fresh.update({value, quote(value, safe=""), quote_plus(value)})
    with _secrets_lock:
        if fresh - _secrets:
            _secrets.update(fresh)
            _secrets_pattern = None


def _pattern() -> re.Pattern[str] | None:
    global _secrets_pattern
    with _secrets_lock:
        if _secrets_pattern is None and _secrets:
            # longest first, so a secret containing another is masked whole
            ordered = sorted(_secrets, key=len, reverse=True)
            _secrets_pattern = re.compile("|".join(re.escape(s) for s in ordered))
        return _secrets_pattern


def redact(text: str) -> str:
    """``text`` with known secrets, credential parameters and auth headers masked."""
    pattern = _pattern()
    if pattern is not None:
        text = pattern.sub(MASK, text)
    text = _AUTH_SCHEME.sub(lambda m: f"{m.group(1)} {MASK}", text)
    return _CREDENTIAL_PARAM.sub(_mask_value, text)


def _mask_value(match: re.Match[str]) -> str:
    value = match.group("value")
    if MASK in value:
        return match.group(0)
    quote_mark = value[0] if value[0] in "\"'" else ""
    return f"{match.group('name')}{match.group('sep')}{quote_mark}{MASK}{quote_mark}"


class RedactingFormatter(structlog.stdlib.ProcessorFormatter):
    """structlog's formatter, whose every finished line goes through :func:`redact`: the
    last step before a line leaves the process, so nothing added on the way (an exception
    and its traceback, an ``extra=`` value, a third-party library's message) escapes it."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


#: URL paths whose query string is left out of the access log altogether
WEBHOOK_PATHS = ("/webhooks/",)


class AccessLogRedaction(logging.Filter):
    """uvicorn's access log without the query string of webhook routes (a Salesforce
    Outbound Message URL carries ``?secret=``), and with credential-looking parameters of
    any other route masked. The request is still logged: method, path, status."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        # uvicorn.access: '%s - "%s %s HTTP/%s" %d' % (client, method, path, version, status)
        if isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str):
            record.args = (args[0], args[1], redact_path(args[2]), args[3], args[4])
        return True


def redact_path(path: str) -> str:
    """A request path as the access log may show it."""
    route, sep, query = path.partition("?")
    if not sep:
        return path
    if route.startswith(WEBHOOK_PATHS):
        return f"{route}?{MASK}"
    return f"{route}?{redact(query)}"


@contextmanager
def bound(**ids: str | None) -> Iterator[None]:
    """Every log line of this thread (and of tasks it starts with ``contextvars``) carries
    ``ids`` (``organisation_id``, ``connection_id``, ``run_id``) until the block ends."""
    present = {k: v for k, v in ids.items() if v is not None}
    with structlog.contextvars.bound_contextvars(**present):
        yield


def bind(**ids: str | None) -> None:
    """Bind ``ids`` to the log lines of the current context from now on (see :func:`bound`)."""
    structlog.contextvars.bind_contextvars(**{k: v for k, v in ids.items() if v is not None})


def unbind(*names: str) -> None:
    structlog.contextvars.unbind_contextvars(*names)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to the ``sys.stderr`` of the moment (a test runner may have swapped it)."""

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        return None


_HANDLER_NAME = "crmsync"


def uses_json(settings: Settings, stream: TextIO | None = None) -> bool:
    """Whether lines are JSON: ``json``, or ``auto`` away from a terminal."""
    if settings.log_format == "auto":
        target = stream or sys.stderr
        return not (hasattr(target, "isatty") and target.isatty())
    return settings.log_format == "json"


def formatter(settings: Settings, service: str | None = None) -> RedactingFormatter:
    """The formatter every crmsync handler uses (JSON or readable, always redacted)."""
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.ExtraAdder(),
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if service:
        shared.append(_add_service(service))
    renderer: list[Processor]
    if uses_json(settings):
        renderer = [
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(sort_keys=False),
        ]
    else:
        renderer = [
            structlog.dev.ConsoleRenderer(
                colors=sys.stderr.isatty(),
                # never a traceback with local variables: they can hold credentials
                exception_formatter=structlog.dev.plain_traceback,
            )
        ]
    return RedactingFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *renderer],
    )


def _add_service(service: str) -> Processor:
    def add(_logger: Any, _method: str, event: Any) -> Any:
        event.setdefault("service", service)
        return event

    return add


#: loggers that are too chatty below WARNING unless crmsync's own level is DEBUG
_QUIET_BELOW_DEBUG = (
    *("urllib3", "httpx", "httpcore", "hubspot", "kombu", "amqp", "asyncio"),
    # Alembic's plug-in set-up: seven lines before every migration (its "Running upgrade"
    # lines stay)
    "alembic.runtime.plugins",
)


_service: str | None = None


def configure(
    settings: Settings,
    *,
    level: str | int | None = None,
    service: str | None = None,
    extra_secrets: Iterable[str | None] = (),
) -> None:
    """Send every log line of this process (ours, Celery's, uvicorn's, the CRM clients')
    to stderr in the configured format and level, redacted. Safe to call again: the
    previous set-up is replaced (and its ``service`` kept when none is given)."""
    global _service
    if isinstance(level, int):
        numeric = level
    else:
        found = logging.getLevelName((level or settings.log_level).upper())
        if not isinstance(found, int):
            raise ValueError(f"unknown log level {level!r}")
        numeric = found
    _service = service or _service
    if settings.secret_key is not None:
        register_secret(settings.secret_key.get_secret_value())
    register_secret(*extra_secrets)
    root = logging.getLogger()
    for handler in list(root.handlers):
        if handler.get_name() == _HANDLER_NAME:
            root.removeHandler(handler)
    handler = _StderrHandler()
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(formatter(settings, _service))
    root.addHandler(handler)
    root.setLevel(numeric)
    quiet = logging.NOTSET if numeric <= logging.DEBUG else max(numeric, logging.WARNING)
    for noisy in _QUIET_BELOW_DEBUG:
        logging.getLogger(noisy).setLevel(quiet)
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, AccessLogRedaction) for f in access.filters):
        access.addFilter(AccessLogRedaction())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        # uvicorn's own handlers would write a second, unredacted copy; an earlier uvicorn
        # in this process may have left its own level or propagation behind
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = True
        uvicorn_logger.disabled = False
        uvicorn_logger.setLevel(logging.NOTSET)
    # Python's warnings (Celery's, a library's deprecations) become log lines too: one
    # format, and redacted like every other line
    logging.captureWarnings(True)


__all__ = [
    "MASK",
    "AccessLogRedaction",
    "RedactingFormatter",
    "bind",
    "bound",
    "configure",
    "redact",
    "redact_path",
    "register_secret",
    "unbind",
]
