"""enrollment: outbox rows rendered at send time, reminders per invite

Revision ID: 0003
Revises: 0001
Create Date: 2026-11-22 06:40:00

Template mail keeps a JSON context (ids only) instead of rendered bodies, so ``subject``/``body_text`` may be
empty until the relay renders them; an invite counts the reminders already queued for it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("context", sa.JSON(), nullable=True))
        batch_op.alter_column("subject", existing_type=sa.String(length=512), nullable=True)
        batch_op.alter_column("body_text", existing_type=sa.Text(), nullable=True)
    with op.batch_alter_table("enrollment_invites", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reminders_sent", sa.Integer(), server_default="0", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("enrollment_invites", schema=None) as batch_op:
        batch_op.drop_column("reminders_sent")
    op.execute("UPDATE outbox SET subject = '' WHERE subject IS NULL")
    op.execute("UPDATE outbox SET body_text = '' WHERE body_text IS NULL")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.alter_column("body_text", existing_type=sa.Text(), nullable=False)
        batch_op.alter_column("subject", existing_type=sa.String(length=512), nullable=False)
        batch_op.drop_column("context")
