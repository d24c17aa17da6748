"""Is the store at the migrations this code ships? Checked before a run and as the worker
and the web start: a store behind the code (crmsync upgraded, ``crmsync db upgrade`` not
run) is refused up front with what to do, rather than failing a run halfway on a table or
column it does not have yet.

One query of ``alembic_version`` per check; an engine found up to date is not asked again
in this process (a store is not downgraded under a running crmsync), one found behind is
asked again each time, so that ``crmsync db upgrade`` takes effect without a restart."""

from __future__ import annotations

import threading
from functools import cache
from weakref import WeakKeyDictionary

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from sync.errors import StoreNotCurrent
from sync.store.db import MIGRATIONS, make_engine, store_revisions

_current: WeakKeyDictionary[Engine, bool] = WeakKeyDictionary()
_lock = threading.Lock()


@cache
def code_heads() -> frozenset[str]:
    """The head revisions of the migrations this code ships (read from disk once)."""
    from alembic.script import ScriptDirectory

    return frozenset(ScriptDirectory(str(MIGRATIONS)).get_heads())


@cache
def _known_revisions() -> frozenset[str]:
    from alembic.script import ScriptDirectory

    return frozenset(s.revision for s in ScriptDirectory(str(MIGRATIONS)).walk_revisions())


def require_current_store(engine: Engine) -> None:
    """Raise :class:`~sync.errors.StoreNotCurrent` unless the store's revisions are the
    code's heads."""
    with _lock:
        if _current.get(engine):
            return
    found = store_revisions(engine)
    needed = code_heads()
    if found == needed:
        with _lock:
            _current[engine] = True
        return
    raise StoreNotCurrent(sorted(found), sorted(needed), ahead=bool(found - _known_revisions()))


def check_at_start(url: str) -> None:
    """As a service starts: :func:`require_current_store` on an engine of its own (a
    prefork worker's children must not inherit its connection), except that a store that
    does not answer now is not refused here (each run and request checks it again)."""
    engine = make_engine(url)
    try:
        require_current_store(engine)
    except SQLAlchemyError:
        return
    finally:
        engine.dispose()
