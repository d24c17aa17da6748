"""Where a backfill spends its time: ``python -m bench.profile hubspot 20000``.

Runs one full backfill in this process (the worker's code path without Celery) under
pyinstrument, against the sandbox in its own process, and prints the profile; when the
PostgreSQL it writes to has ``pg_stat_statements`` loaded (``shared_preload_libraries``),
also the statements that took the most time in PostgreSQL. Point it at such a server with
``CRMSYNC_BENCH_POSTGRES_URL``.
"""

from __future__ import annotations

import argparse
import time

from pyinstrument import Profiler
from sqlalchemy import create_engine, text

from bench.common import POSTGRES, Bench, fresh_schema, start_sandbox, store_settings
from sync.engine import sync_connection
from sync.store.db import make_engine

TOP_STATEMENTS = """
select calls, round(total_exec_time::numeric, 0) as ms, rows,
       round((total_exec_time / greatest(calls, 1))::numeric, 2) as ms_per_call,
       left(regexp_replace(query, '\\s+', ' ', 'g'), 150) as query
from pg_stat_statements
where dbid = (select oid from pg_database where datname = current_database())
order by total_exec_time desc limit 15
"""


def _statements(reset: bool) -> list[tuple[object, ...]] | None:
    admin = create_engine(POSTGRES)
    try:
        with admin.begin() as conn:
            try:
                if reset:
                    conn.execute(text("select pg_stat_statements_reset()"))
                    return []
                return [tuple(r) for r in conn.execute(text(TOP_STATEMENTS))]
            except Exception:  # the extension is not loaded on this server
                return None
    finally:
        admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("crm", choices=("salesforce", "hubspot"))
    parser.add_argument("records", type=int)
    parser.add_argument("--no-contacts", action="store_true", help="contacts=false")
    parser.add_argument("--interval", type=float, default=0.001, help="sampling interval")
    args = parser.parse_args()
    sandbox = start_sandbox(args.crm, args.records)
    try:
        with fresh_schema() as url:
            settings, env = store_settings(url)
            engine = make_engine(url)
            b = Bench(args.crm, sandbox, settings, engine, env)
            b.connect({"contacts": False} if args.no_contacts else None)
            _statements(reset=True)
            profiler = Profiler(interval=args.interval)
            started = time.perf_counter()
            with profiler:
                result = sync_connection(engine, settings, b.connection_id, full=True)
            seconds = time.perf_counter() - started
            statements = _statements(reset=False)
            engine.dispose()
    finally:
        sandbox.stop()
    print(profiler.output_text(unicode=True, color=False, show_all=False))
    print(f"{result.status}: {args.records:,} in {seconds:.1f} s; counters {result.counters}")
    if statements is None:
        print("pg_stat_statements is not loaded on this PostgreSQL")
        return
    print("calls  ms  rows  ms/call  statement")
    for row in statements:
        print("  ".join(str(v) for v in row))


if __name__ == "__main__":
    main()
