"""admin api: idempotency keys for POSTs that create secrets or send mail

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 18:00:00

``Idempotency-Key`` on ``/api/v1`` POSTs that return secrets (bypass codes) or queue mail (invites):
the first response is kept sealed for a day so a retried request gets it again instead of a second batch
(docs/adr/0050-admin-api.md).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

PREFIX_COLUMNS = ("username", "email", "given_name", "family_name", "display_name")  # Part A, text search


def upgrade() -> None:
    op.create_table(
        "idempotency_keys",
        sa.Column("client_id", sa.String(length=32), nullable=False),
        sa.Column("key", sa.String(length=128), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("response_enc", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("client_id", "key", name=op.f("pk_idempotency_keys")),
    )
    op.create_index(op.f("ix_idempotency_keys_created_at"), "idempotency_keys", ["created_at"], unique=False)
    # Part B (docs/adr/0052): bypass-code lookup tag.
    op.add_column("bypass_codes", sa.Column("lookup_tag", sa.String(length=2), nullable=True))
    # Part A (docs/adr/0051): the admin user listing filters by status or source in username order.
    for name, column in (("ix_users_status_live", "status"), ("ix_users_managed_by_live", "managed_by")):
        op.create_index(
            name,
            "users",
            [column, "username_key", "id"],
            sqlite_where=sa.text("deleted_at IS NULL"),
            postgresql_where=sa.text("deleted_at IS NULL"),
        )
    # Part A, text search: q is a case-insensitive prefix of these columns, keyed by
    # syncd.store.tables.fold_case (SQLite: COLLATE NOCASE; PostgreSQL: lower() with text_pattern_ops).
    sqlite = op.get_bind().dialect.name == "sqlite"
    for column in PREFIX_COLUMNS:
        key = f"{column} COLLATE NOCASE" if sqlite else f"lower({column}) text_pattern_ops"
        op.execute(f"CREATE INDEX ix_users_{column}_prefix ON users ({key})")


def downgrade() -> None:
    for column in PREFIX_COLUMNS:  # Part A, text search
        op.drop_index(f"ix_users_{column}_prefix", table_name="users")
    for name in ("ix_users_status_live", "ix_users_managed_by_live"):  # Part A
        op.drop_index(name, table_name="users")
    with op.batch_alter_table("bypass_codes") as batch:  # Part B
        batch.drop_column("lookup_tag")
    op.drop_index(op.f("ix_idempotency_keys_created_at"), table_name="idempotency_keys")
    op.drop_table("idempotency_keys")
