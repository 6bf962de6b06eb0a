"""Failed-login throttling for ``POST /login``, per client and per account. Pure:
the caller passes the time in (seconds, any one clock).

The server has one account (the configured API key or dashboard password), so
"per account" counts the failures of every client together: it bounds a guessing
run spread over many addresses, as OWASP's authentication guidance recommends
alongside the per-client limit
(https://cheatsheetseries.owasp.org/cheatsheets/Authentication_Cheat_Sheet.html,
read 2026-12). API clients that send the key in a header are not throttled: they
do not go through ``/login``.

Rules:

1. A failure counts for ``window_s`` seconds.
2. ``per_client`` failures from one client within the window lock that client
   out for ``lockout_s`` from the last of them; ``per_account`` failures from all
   clients lock every client out the same way.
3. While locked out, a login is refused without its secret being checked, so a
   guess made during a lockout tells nothing, even a right one.
4. A successful login forgets that client's failures (not the account's).
5. Memory is bounded: at most ``max_clients`` clients are tracked; the one whose
   last failure is oldest is forgotten first.
"""

from __future__ import annotations

from collections import OrderedDict, deque


class LoginThrottle:
    """Rules 1 to 5.

    Args:
        per_client: failures from one client that lock it out.
        per_account: failures from all clients that lock the login out.
        window_s: seconds a failure counts.
        lockout_s: seconds a lockout lasts.
        max_clients: clients tracked at most.

    Raises:
        ValueError: a limit below 1 or a duration below 0.
    """

    def __init__(
        self,
        *,
        per_client: int = 5,
        per_account: int = 20,
        window_s: float = 300.0,
        lockout_s: float = 300.0,
        max_clients: int = 10_000,
    ) -> None:
        if min(per_client, per_account, max_clients) < 1 or min(window_s, lockout_s) < 0:
            raise ValueError(
                "login throttle limits must be at least 1 and durations at least 0, got "
                f"per_client={per_client} per_account={per_account} max_clients={max_clients} "
                f"window_s={window_s} lockout_s={lockout_s}"
            )
        self.per_client = per_client
        self.per_account = per_account
        self.window_s = window_s
        self.lockout_s = lockout_s
        self.max_clients = max_clients
        self._clients: OrderedDict[str, deque[float]] = OrderedDict()
        self._account: deque[float] = deque()

    def retry_after_s(self, client: str, now_s: float) -> float | None:
        """Seconds until ``client`` may try again (rules 2, 3), or None if it may now."""
        waits = [
            self._locked_for(self._account, self.per_account, now_s),
            self._locked_for(self._clients.get(client), self.per_client, now_s),
        ]
        longest = max((w for w in waits if w is not None), default=None)
        return longest

    def record_failure(self, client: str, now_s: float) -> None:
        """Count one failed login of ``client`` at ``now_s`` (rules 1, 5)."""
        failures = self._clients.pop(client, None) or deque()
        failures.append(now_s)
        self._trim(failures, now_s)
        self._clients[client] = failures  # most recent last
        while len(self._clients) > self.max_clients:
            self._clients.popitem(last=False)
        self._account.append(now_s)
        self._trim(self._account, now_s)

    def record_success(self, client: str) -> None:
        """Forget ``client``'s failures (rule 4)."""
        self._clients.pop(client, None)

    def _trim(self, failures: deque[float], now_s: float) -> None:
        # Keep what rule 2 can still need: failures inside the window, and the
        # last one while a lockout from it may run.
        keep_s = max(self.window_s, self.lockout_s)
        while failures and failures[0] < now_s - keep_s:
            failures.popleft()

    def _locked_for(self, failures: deque[float] | None, limit: int, now_s: float) -> float | None:
        if not failures or len(failures) < limit:
            return None
        # Locked when `limit` failures fell within one window, until lockout_s after
        # the last of them.
        recent = list(failures)[-limit:]
        if recent[-1] - recent[0] > self.window_s:
            return None
        remaining_s = recent[-1] + self.lockout_s - now_s
        return remaining_s if remaining_s > 0 else None
