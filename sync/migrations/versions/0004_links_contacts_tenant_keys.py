"""links and contacts: one composite key per parent instead of three foreign keys

A link or a CRM contact is written per record by every backfill, and PostgreSQL checks
each foreign key of each inserted row with a trigger (a locked read of the parent). Their
``organisation_id`` was checked on its own, although it must be the organisation of the
row's customer and of its connection. Two composite keys, (customer_id, organisation_id)
→ customers and (connection_id, organisation_id) → connections, check the same parents
with two lookups per row instead of three, and also refuse a row whose organisation is not
its customer's or its connection's (which the three separate keys let through).

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

#: SQLite's foreign keys have no names: batch mode names them by this convention
SQLITE_NAMES = {"fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s"}
PARENTS = (
    ("organisation_id", "organisations"),
    ("connection_id", "connections"),
    ("customer_id", "customers"),
)


def _old_name(sqlite: bool, table: str, column: str, parent: str) -> str:
    return f"fk_{table}_{column}_{parent}" if sqlite else f"{table}_{column}_fkey"


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    with op.batch_alter_table("customers") as batch:
        batch.create_unique_constraint("uq_customers_id_org", ["id", "organisation_id"])
    with op.batch_alter_table("connections") as batch:
        batch.create_unique_constraint("uq_connections_id_org", ["id", "organisation_id"])
    for table in ("links", "contacts"):
        with op.batch_alter_table(
            table, naming_convention=SQLITE_NAMES if sqlite else None
        ) as batch:
            for column, parent in PARENTS:
                batch.drop_constraint(_old_name(sqlite, table, column, parent), type_="foreignkey")
            batch.create_foreign_key(
                f"fk_{table}_customer_org",
                "customers",
                ["customer_id", "organisation_id"],
                ["id", "organisation_id"],
            )
            batch.create_foreign_key(
                f"fk_{table}_connection_org",
                "connections",
                ["connection_id", "organisation_id"],
                ["id", "organisation_id"],
            )


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    for table in ("links", "contacts"):
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(f"fk_{table}_customer_org", type_="foreignkey")
            batch.drop_constraint(f"fk_{table}_connection_org", type_="foreignkey")
            for column, parent in PARENTS:
                batch.create_foreign_key(
                    _old_name(sqlite, table, column, parent), parent, [column], ["id"]
                )
    with op.batch_alter_table("connections") as batch:
        batch.drop_constraint("uq_connections_id_org", type_="unique")
    with op.batch_alter_table("customers") as batch:
        batch.drop_constraint("uq_customers_id_org", type_="unique")
