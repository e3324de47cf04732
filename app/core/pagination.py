"""Keyset positions, and the opaque page cursors that carry them: base64url of the last row's
(created_at, id). Not secret, just opaque: a forged cursor only selects another position in the
caller's own rows."""

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import UTC, datetime


@dataclass(frozen=True, slots=True)
class Keyset:
    """A position in a newest-first (created_at, id) order: the last row of the previous page."""

    created_at: datetime
    id: int


def encode_cursor(position: Keyset) -> str:
    raw = json.dumps([position.created_at.isoformat(), position.id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(cursor: str) -> Keyset:
    """ValueError when `cursor` is not one this service issued."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_at, row_id = json.loads(raw)
        created = datetime.fromisoformat(created_at)
        if created.tzinfo is None or not 0 < int(row_id) < 2**63:
            raise ValueError("naive time or id out of range")
        # In UTC, as the database compares it; also refuses instants outside years 1-9999 in UTC.
        return Keyset(created_at=created.astimezone(UTC), id=int(row_id))
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError, OverflowError) as exc:
        raise ValueError("not a cursor from this service") from exc
