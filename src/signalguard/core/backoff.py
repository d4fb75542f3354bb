"""The one retry schedule: how long every loop waits after a failure, on either host.

The guard's status and claim calls, the outbox's batches, the market streams' reconnects and the
worker's calls to the database all wait by it: 1 s after the first failure, doubling, at most 5 s. The
ceiling is the lease's: a holder whose renewal failed must try again several times within the lease's
30 s, and an open tab should drain its outbox soon after an outage ends. No randomness (the core reads
no random source): callers that share one failure (many tabs after one outage) are already spread by
the moments their own calls failed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

#: Doublings past which the delay is the ceiling whatever the numbers (keeps 2**n small).
_MAX_DOUBLINGS: Final = 32


@dataclass(frozen=True, slots=True)
class Backoff:
    """``first`` seconds after the first failure in a row, doubling, at most ``ceiling``.

    Tests scale the schedule (``Backoff(0.01, 0.05)``); the product runs :data:`BACKOFF`.
    """

    first: float = 1.0
    ceiling: float = 5.0

    def delay(self, failures: int) -> float:
        """Seconds to wait after ``failures`` failures in a row (``first`` for none or one)."""
        doublings = min(max(0, failures - 1), _MAX_DOUBLINGS)
        return min(self.ceiling, self.first * float(2**doublings))


#: The schedule of the product: 1, 2, 4, 5, 5, … seconds.
BACKOFF: Final = Backoff()
