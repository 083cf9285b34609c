"""The one retry policy: which errors are retried, how often, and how long we wait.

Only `TransientError` is retried. Each operation that crosses the network (one S3 put, one SFTP
upload, one Athena query, one small record) gets `attempts` tries in total, waits growing
exponentially (base_delay, 2x, 4x ... capped at max_delay), each scaled by a random factor in
[0.5, 1] so parallel deliveries do not retry in lockstep. The clients below us do not retry on
their own (botocore runs with one attempt per request), so the budget is exactly this.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from loader.errors import TransientError

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4
    base_delay: float = 0.5
    max_delay: float = 8.0

    def delay(self, attempt: int) -> float:
        """The wait after failed try number `attempt` (1-based)."""
        ceiling = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        return ceiling * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not security


DEFAULT_POLICY = RetryPolicy()


def retrying(
    operation: Callable[[], T],
    *,
    policy: RetryPolicy = DEFAULT_POLICY,
    attempts: int | None = None,
    base_delay: float | None = None,
    max_delay: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call `operation` until it succeeds, retrying only TransientError, within the policy."""
    if attempts is not None or base_delay is not None or max_delay is not None:
        policy = RetryPolicy(
            attempts=policy.attempts if attempts is None else attempts,
            base_delay=policy.base_delay if base_delay is None else base_delay,
            max_delay=policy.max_delay if max_delay is None else max_delay,
        )
    if policy.attempts < 1:
        raise ValueError("a retry policy needs at least one attempt")
    for attempt in range(1, policy.attempts + 1):
        try:
            return operation()
        except TransientError as error:
            if attempt == policy.attempts:
                raise
            delay = policy.delay(attempt)
            logger.warning(
                "%s (attempt %d of %d, retrying in %.1fs)", error, attempt, policy.attempts, delay
            )
            sleep(delay)
    raise AssertionError("unreachable")
