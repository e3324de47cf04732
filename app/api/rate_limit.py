"""A per-user bound on writes, so one end user cannot fill the database (and the replicas' memory
when the rows are read back). Per process: with N replicas a user may make up to N times the limit."""

import math
import time
from collections import OrderedDict

from app.core.errors import TooManyWrites
from app.core.security import Principal


class UserWriteLimit:
    """A token bucket per end user: `per_minute` writes, refilled continuously, bursts up to the same
    number. Services and admins act for many users and are not limited. Only the most recently
    active users' buckets are kept; a forgotten bucket was idle, so it would be full anyway."""

    def __init__(self, per_minute: int, max_users: int = 100_000) -> None:
        self.capacity = float(per_minute)
        self.per_second = per_minute / 60
        self.max_users = max_users
        self._buckets: OrderedDict[int, tuple[float, float]] = OrderedDict()  # user: (tokens, at)

    def take(self, principal: Principal) -> None:
        """Count one write by `principal`; TooManyWrites (429) when their bucket is empty."""
        if principal.is_trusted or not self.capacity:
            return
        now = time.monotonic()
        tokens, at = self._buckets.pop(principal.user_id, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - at) * self.per_second)
        if tokens < 1:
            self._buckets[principal.user_id] = (tokens, now)
            wait = math.ceil((1 - tokens) / self.per_second)
            raise TooManyWrites(f"Too many writes; at most {int(self.capacity)} a minute. Retry in {wait} s", wait)
        self._buckets[principal.user_id] = (tokens - 1, now)
        if len(self._buckets) > self.max_users:
            self._buckets.popitem(last=False)
