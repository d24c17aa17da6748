"""connections: a pause by the CRM's daily limit (until, reason), the CRM's allowance as
last seen, and the default fields the CRM lacks (unmapped, with why)

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def _json() -> sa.types.TypeEngine[Any]:
    # JSONB on PostgreSQL, as the model's Json type
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("connections", schema=None) as batch_op:
        batch_op.add_column(sa.Column("limit_until", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("limit_reason", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("api_usage", _json(), nullable=False, server_default="{}"))
        batch_op.add_column(
            sa.Column("unmapped_fields", _json(), nullable=False, server_default="{}")
        )


def downgrade() -> None:
    with op.batch_alter_table("connections", schema=None) as batch_op:
        batch_op.drop_column("unmapped_fields")
        batch_op.drop_column("api_usage")
        batch_op.drop_column("limit_reason")
        batch_op.drop_column("limit_until")
