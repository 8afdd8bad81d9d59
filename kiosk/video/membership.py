"""Who is in a call and who offers to whom (pure: no aiortc, no I/O).

The membership decisions of :class:`kiosk.video.session.CallSession`, apart from its peer connections: the
protocol's offer rule (:func:`offers_to`) and how a ``call_state`` from the relay is reconciled with the peers a
session has (:func:`reconcile`). The session carries the result out (drops peers, offers, asks for restarts).
:func:`resume_message` is the ``resume`` a member sends after each ``welcome`` while it is in a call.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["MemberChanges", "offers_to", "reconcile", "resume_message"]


def offers_to(me: str, other: str, *, counter: str | None, order: list[str]) -> bool:
    """The protocol's offer rule: does ``me`` make the offer to ``other``?

    The counter offers to every staff member; between staff, the one earlier in ``order`` (join
    order) offers. A member missing from ``order`` is the newcomer.
    """
    if me == counter:
        return True
    if other == counter:
        return False
    if me not in order:
        return False
    if other not in order:
        return True
    return order.index(me) < order.index(other)


@dataclass(frozen=True)
class MemberChanges:
    """What a ``call_state`` means for one session.

    Attributes:
        order: the members in join order, as the relay lists them (the counter first).
        gone: members this session has a peer for that the relay no longer lists: drop them.
        present: every listed member but this session's own terminal, in order: make sure each is connected.
    """

    order: list[str]
    gone: list[str]
    present: list[str]


def reconcile(me: str, listed: Iterable[object], connected: Iterable[str]) -> MemberChanges:
    """Reconcile the relay's member list (``call_state.members``; anything not a string is ignored) with the
    members ``me`` has peers for (``connected``)."""
    members = [m for m in listed if isinstance(m, str)]
    return MemberChanges(
        order=members,
        gone=[m for m in connected if m not in members],
        present=[m for m in members if m != me],
    )


def resume_message(
    me: str, call: str, department: str, counter: str, members: Iterable[str]
) -> dict[str, object] | None:
    """The ``resume`` that vouches for ``call`` after a ``welcome`` (``docs/protocol.md``, "Relay shutdown"): the
    members as this terminal knows them, the counter first and ``me`` among them; None without any other member
    (nothing to resume)."""
    listed = [counter] + [m for m in dict.fromkeys(members) if m != counter]
    if me not in listed:
        listed.append(me)
    if len(listed) < 2 or not (call and department and counter):
        return None
    return {"type": "resume", "call": call, "department": department, "members": listed}
