"""Clips: every audio item the service made or received, with its files, latents and lineage.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "clips",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("public_id", sa.String(36), nullable=False, unique=True),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("origin", sa.String(16), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("parent_id", sa.String(36), nullable=True),
        sa.Column("job_id", sa.String(36), nullable=True),
        sa.Column("item_index", sa.Integer(), nullable=True),
        sa.Column("title", sa.Text(), nullable=True),
        sa.Column("lyrics", sa.Text(), nullable=True),
        sa.Column("caption", sa.Text(), nullable=True),
        sa.Column("model", sa.String(128), nullable=True),
        sa.Column("seed", sa.BigInteger(), nullable=True),
        sa.Column("duration", sa.Double(), nullable=True),
        sa.Column("bpm", sa.Integer(), nullable=True),
        sa.Column("key_scale", sa.String(64), nullable=True),
        sa.Column("audio_file", sa.String(128), nullable=False),
        sa.Column("audio_format", sa.String(16), nullable=False),
        sa.Column("source_file", sa.String(128), nullable=False),
        sa.Column("latents_file", sa.String(128), nullable=True),
        sa.Column("cover_file", sa.String(128), nullable=True),
        sa.Column("lrc_file", sa.String(128), nullable=True),
        sa.Column("extra", sa.JSON(), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
    )
    op.create_index("ix_clips_owner_id", "clips", ["owner", "id"])
    op.create_index("ix_clips_job_id", "clips", ["job_id"])
    op.create_index("ix_clips_created_at", "clips", ["created_at"])


def downgrade() -> None:
    op.drop_table("clips")
