"""scim: groups keep the client's other attributes (externalId, …) like users do; member display names

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 07:00:00

SCIM clients send ``externalId`` (and may send more) for groups; users already keep such attributes in
``users.attributes``. Groups get the same JSON column, and memberships keep the ``display`` a client sent
(docs/adr/0031-scim-storage-and-lifecycle.md).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("groups", schema=None) as batch_op:
        batch_op.add_column(sa.Column("attributes", sa.JSON(), nullable=True))
    for table in ("group_members", "group_nesting"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("display", sa.String(length=512), nullable=True))


def downgrade() -> None:
    for table in ("group_nesting", "group_members"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("display")
    with op.batch_alter_table("groups", schema=None) as batch_op:
        batch_op.drop_column("attributes")
