"""telemetry: device battery, signal, firmware, location and silence tracking

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25 02:10:00.000000

"""

import sqlalchemy as sa
from advanced_alchemy.types import DateTimeUTC
from alembic import op

__all__ = ("downgrade", "upgrade")

# revision identifiers, used by Alembic.
revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_COLUMNS = (
    ("battery", sa.Integer()),
    ("signal_dbm", sa.Integer()),
    ("firmware", sa.String(length=64)),
    ("telemetry_lat", sa.Float()),
    ("telemetry_lng", sa.Float()),
    ("telemetry_at", DateTimeUTC(timezone=True)),
    ("expected_heartbeat_seconds", sa.Integer()),
    ("silent_since", DateTimeUTC(timezone=True)),
)


def upgrade() -> None:
    with op.batch_alter_table("device", schema=None) as batch_op:
        for name, type_ in _COLUMNS:
            batch_op.add_column(sa.Column(name, type_, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("device", schema=None) as batch_op:
        for name, _ in reversed(_COLUMNS):
            batch_op.drop_column(name)
