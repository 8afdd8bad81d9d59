"""Who may use the fleet page: sessions with CSRF tokens, lock-out after failed logins. Pure (time passed in).

The password check itself (:func:`relay_server.admin.settings.verify_password`) is slow on purpose and runs on
a worker thread at the edge; this module decides everything around it.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from dataclasses import dataclass, field
from enum import Enum

from relay_server.admin.settings import AdminAccount, FleetSettings

# A real scrypt hash of a random password: unknown users cost the same time as known ones.
DUMMY_HASH = "scrypt$32768$8$1$xAMOEPzE8VgQdbjNbGeSsA$zkdcEvV9ayBwyvLYKeKK_yDE_gW4CdyMKsYWyYy_hE4"


class Verdict(Enum):
    OK = "ok"
    WRONG = "wrong"  # unknown user or wrong password (never said which)
    LOCKED = "locked"  # too many failures: try again later
    DEMO_REMOTE = "demo_remote"  # a demo account from an address that is not loopback


@dataclass
class Session:
    id: str
    user: str
    csrf: str
    expires: float


@dataclass
class LoginGuard:
    """Counts failed logins per user name and per client address; ``limit`` failures lock for ``lock_s``."""

    limit: int
    lock_s: float
    failures: dict[str, list[float]] = field(default_factory=dict)

    def _keys(self, user: str, peer: str) -> tuple[str, str]:
        return "user:" + user, "peer:" + peer

    def locked_for(self, user: str, peer: str, now: float) -> float:
        """Seconds until ``user`` from ``peer`` may try again (0: now)."""
        wait = 0.0
        for key in self._keys(user, peer):
            recent = [t for t in self.failures.get(key, []) if now - t < self.lock_s]
            self.failures[key] = recent
            if len(recent) >= self.limit:
                wait = max(wait, recent[-self.limit] + self.lock_s - now)
        return wait

    def failed(self, user: str, peer: str, now: float) -> None:
        for key in self._keys(user, peer):
            self.failures.setdefault(key, []).append(now)

    def succeeded(self, user: str, peer: str) -> None:
        for key in self._keys(user, peer):
            self.failures.pop(key, None)


def is_loopback(peer: str) -> bool:
    try:
        return ipaddress.ip_address(peer.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


class Auth:
    """Accounts, the login guard and the sessions of one fleet page."""

    def __init__(self, settings: FleetSettings) -> None:
        self.accounts = {a.user: a for a in settings.admins}
        self.lifetime = settings.session_minutes * 60
        self.guard = LoginGuard(settings.lockout_failures, settings.lockout_minutes * 60)
        self.sessions: dict[str, Session] = {}

    def before_check(self, user: str, peer: str, now: float) -> tuple[Verdict | None, str]:
        """What to do before the slow password check: a verdict to answer at once, or None and the hash to check."""
        if self.guard.locked_for(user, peer, now) > 0:
            return Verdict.LOCKED, DUMMY_HASH
        account = self.accounts.get(user)
        return None, account.password_hash if account else DUMMY_HASH

    def after_check(self, user: str, peer: str, matched: bool, now: float) -> tuple[Verdict, Session | None]:
        """The verdict once the password was checked against the hash :meth:`before_check` gave."""
        account: AdminAccount | None = self.accounts.get(user)
        if account is None or not matched:
            self.guard.failed(user, peer, now)
            return Verdict.WRONG, None
        if account.demo and not is_loopback(peer):
            return Verdict.DEMO_REMOTE, None
        self.guard.succeeded(user, peer)
        session = Session(secrets.token_urlsafe(32), user, secrets.token_urlsafe(32), now + self.lifetime)
        self.sessions[session.id] = session
        return Verdict.OK, session

    def session(self, sid: str | None, now: float) -> Session | None:
        """The live session of a cookie value, or None (expired sessions are forgotten)."""
        for old in [s for s in self.sessions.values() if s.expires <= now]:
            del self.sessions[old.id]
        if not sid:
            return None
        return self.sessions.get(sid)

    @staticmethod
    def csrf_ok(session: Session, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(session.csrf.encode(), (token or "").encode())

    def logout(self, sid: str | None) -> None:
        if sid:
            self.sessions.pop(sid, None)
