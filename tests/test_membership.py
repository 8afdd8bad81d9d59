"""A call session's membership decisions (kiosk/video/membership.py), tested without aiortc (the module is in a
pure layer: tests/test_architecture_imports.py keeps it free of I/O libraries)."""

from __future__ import annotations

from kiosk.video.membership import MemberChanges, offers_to, reconcile


def test_offer_rule_counter_first_then_join_order() -> None:
    """The counter offers to everyone; between staff the earlier member offers; an unlisted member is new."""
    order = ["counter", "a", "b"]
    assert offers_to("counter", "b", counter="counter", order=order)
    assert not offers_to("b", "counter", counter="counter", order=order)
    assert offers_to("a", "b", counter="counter", order=order) and not offers_to(
        "b", "a", counter="counter", order=order
    )
    assert offers_to("b", "new", counter="counter", order=order) and not offers_to(
        "new", "b", counter="counter", order=order
    )


def test_call_state_drops_members_the_relay_no_longer_lists_and_connects_the_others() -> None:
    """Peers missing from call_state.members are gone; every other listed member (not ourselves) must be present."""
    changes = reconcile("a", ["counter", "a", 7, "c"], ["counter", "b"])
    assert changes == MemberChanges(order=["counter", "a", "c"], gone=["b"], present=["counter", "c"])
