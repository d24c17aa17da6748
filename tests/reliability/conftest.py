"""The reliability suite runs the real system: Celery worker processes on Redis and
PostgreSQL, the CRM sandbox over HTTP, the web API. Its stack is the worker tests' one."""

from __future__ import annotations

from tests.tasks.conftest import crm, sandbox, stack

__all__ = ["crm", "sandbox", "stack"]
