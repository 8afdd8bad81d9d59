"""``[fleet]`` and ``[[admin]]`` of ``relay.toml``, and the scrypt password hashes of admin accounts. Pure."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from common.tomlconf import ConfigError, Section

# scrypt cost: 2**15 × 8 × 128 B = 32 MiB and ~0.1 s per login attempt on these machines (slow for a guesser).
SCRYPT_N, SCRYPT_R, SCRYPT_P = 1 << 15, 8, 1
_SCRYPT_MAXMEM = 64 * 1024 * 1024
HASH_HELP = "make one with: relay-server admin-hash USER"


@dataclass(frozen=True)
class AdminAccount:
    user: str
    password_hash: str
    demo: bool = False  # a published demo login: accepted only from loopback addresses


@dataclass(frozen=True)
class FleetSettings:
    """The fleet page (``[fleet]``). Off unless ``enabled``; binds to the loopback address by default."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 8766
    session_minutes: float = 480.0
    lockout_failures: int = 5
    lockout_minutes: float = 15.0
    admins: tuple[AdminAccount, ...] = ()


def hash_password(password: str, *, n: int = SCRYPT_N, salt: bytes | None = None) -> str:
    """``scrypt$N$r$p$salt$key`` (base64 without padding) for ``relay.toml``."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    key = hashlib.scrypt(
        password.encode(), salt=salt, n=n, r=SCRYPT_R, p=SCRYPT_P, maxmem=_SCRYPT_MAXMEM, dklen=32
    )
    return f"scrypt${n}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(key)}"


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches ``stored`` (constant-time comparison of the derived keys)."""
    try:
        _, n, r, p, salt, key = stored.split("$")
        want = base64.urlsafe_b64decode(key + "=" * (-len(key) % 4))
        got = hashlib.scrypt(
            password.encode(),
            salt=base64.urlsafe_b64decode(salt + "=" * (-len(salt) % 4)),
            n=int(n),
            r=int(r),
            p=int(p),
            maxmem=_SCRYPT_MAXMEM,
            dklen=len(want),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, want)


def hash_problem(stored: str) -> str | None:
    """Why ``stored`` is not a hash :func:`verify_password` can check, or None."""
    parts = stored.split("$")
    if len(parts) != 6 or parts[0] != "scrypt" or not all(x.isdigit() for x in parts[1:4]):
        return f"must look like 'scrypt$32768$8$1$SALT$KEY'; {HASH_HELP}"
    n = int(parts[1])
    if n < 1 << 14 or n & (n - 1):
        return f"scrypt N must be a power of two of at least 16384 (slow on purpose); {HASH_HELP}"
    return None


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def parse_fleet(root: Section) -> FleetSettings:
    """Read ``[fleet]`` and every ``[[admin]]`` from the root of ``relay.toml``.

    Raises:
        ConfigError: naming the file, line and key.
    """
    d = FleetSettings()
    f = root.section("fleet")
    settings = dict(
        enabled=f.get("enabled", bool, d.enabled),
        host=f.get("host", str, d.host),
        port=f.get("port", int, d.port, check=lambda p: None if 0 <= p <= 65535 else "must be 0..65535"),
        session_minutes=f.get(
            "session_minutes",
            float,
            d.session_minutes,
            check=lambda v: None if v > 0 else "must be greater than 0",
        ),
        lockout_failures=f.get(
            "lockout_failures",
            int,
            d.lockout_failures,
            check=lambda v: None if v >= 1 else "must be at least 1",
        ),
        lockout_minutes=f.get(
            "lockout_minutes",
            float,
            d.lockout_minutes,
            check=lambda v: None if v > 0 else "must be greater than 0",
        ),
    )
    admins: list[AdminAccount] = []
    for a in root.sections("admin"):
        user = a.get(
            "user",
            str,
            check=lambda u: (
                None
                if u and len(u) <= 64 and u.isprintable() and " " not in u
                else "1-64 printable characters without spaces"
            ),
        )
        if any(x.user == user for x in admins):
            raise a.error("user", f"admin '{user}' is defined twice")
        admins.append(
            AdminAccount(user, a.get("password_hash", str, check=hash_problem), a.get("demo", bool, False))
        )
        a.done()
    if settings["enabled"] and not admins:
        raise f.error("enabled", "the fleet page needs at least one [[admin]] account; " + HASH_HELP)
    f.done()
    return FleetSettings(admins=tuple(admins), **settings)


__all__ = ["AdminAccount", "ConfigError", "FleetSettings", "hash_password", "parse_fleet", "verify_password"]
