"""Which payment status may follow which. canceled and refunded are final."""

from app.models.enums import PaymentStatus as S

ALLOWED_TRANSITIONS: dict[S, frozenset[S]] = {
    S.PENDING: frozenset({S.PROCESSING, S.SUCCEEDED, S.FAILED, S.CANCELED}),
    S.PROCESSING: frozenset({S.SUCCEEDED, S.FAILED, S.CANCELED}),
    S.FAILED: frozenset({S.PENDING, S.PROCESSING, S.SUCCEEDED, S.CANCELED}),
    S.SUCCEEDED: frozenset({S.REFUNDED}),
    S.CANCELED: frozenset(),
    S.REFUNDED: frozenset(),
}


def can_transition(current: S, target: S) -> bool:
    """True for an allowed move; a move to the current status is a no-op and also allowed."""
    return current == target or target in ALLOWED_TRANSITIONS[current]
