"""docs/protocol.md is the contract: every message, field, error code and end reason of common/protocol.py
is in it, and every error code the relay raises is one protocol.py declares."""

from __future__ import annotations

import re
from pathlib import Path

from common import protocol

ROOT = Path(__file__).resolve().parent.parent
DOC = (ROOT / "docs" / "protocol.md").read_text(encoding="utf-8")


def _table_rows(heading: str) -> dict[str, str]:
    """First-column code → the rest of the row, for the Markdown table under ``## heading``."""
    section = DOC.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        m = re.match(r"\| `([a-z_]+)` \|(.*)", line)
        if m:
            rows[m.group(1)] = m.group(2)
    return rows


def test_every_client_message_is_documented_with_its_fields_and_senders() -> None:
    """Each message a terminal may send has a row naming who sends it and each of its fields."""
    rows = _table_rows("Messages a terminal sends")
    assert set(rows) == set(protocol.CLIENT_MESSAGES)
    for kind, fields in protocol.CLIENT_MESSAGES.items():
        for name in fields:
            assert f"`{name}`" in rows[kind], (
                f"docs/protocol.md: '{kind}' row does not mention field '{name}'"
            )
        for role in protocol.CLIENT_ROLES[kind]:
            assert role in rows[kind] or "all" in rows[kind], f"'{kind}' row does not say {role} sends it"


def test_every_relay_message_is_documented_with_its_fields() -> None:
    """Each message the relay sends has a row listing its fields (welcome's are described in Authentication)."""
    rows = _table_rows("Messages the relay sends")
    assert set(rows) == set(protocol.SERVER_MESSAGES)
    auth = DOC.split("## Authentication\n", 1)[1].split("\n## ", 1)[0]
    for name in protocol.SERVER_MESSAGES["welcome"]:
        assert f"`{name}`" in auth, f"docs/protocol.md: Authentication does not describe welcome's '{name}'"
    for kind, fields in protocol.SERVER_MESSAGES.items():
        if kind == "welcome":
            continue
        for name in fields:
            assert f"`{name}`" in rows[kind], (
                f"docs/protocol.md: '{kind}' row does not mention field '{name}'"
            )


def test_error_codes_and_end_reasons_match() -> None:
    """The error table is exactly the declared codes; every code the relay raises is declared; every end reason
    is explained."""
    assert set(_table_rows("Errors")) == set(protocol.ERROR_CODES)
    raised = set()
    for path in (ROOT / "relay_server").glob("*.py"):
        raised |= set(re.findall(r'ProtocolError\(\s*"([a-z_]+)"', path.read_text(encoding="utf-8")))
        raised |= set(re.findall(r'protocol\.error\("([a-z_]+)"', path.read_text(encoding="utf-8")))
    assert raised <= set(protocol.ERROR_CODES), raised - set(protocol.ERROR_CODES)
    reasons = DOC.split("`ended.reason`:", 1)[1].split("\n\n", 1)[0]
    for reason in protocol.END_REASONS:
        assert f"`{reason}`" in reasons, f"ended.reason '{reason}' is not explained"
