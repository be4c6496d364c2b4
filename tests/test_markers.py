"""The fast tier stays offline: every collected test that may download (marked `network`, by hand or
by conftest for the weight fixtures) is also marked `slow`, so `pytest -m "not slow"` deselects it."""

from __future__ import annotations

from conftest import NETWORK_FIXTURES


def test_every_network_test_is_slow(request):
    items = request.session.items
    network = [i for i in items if i.get_closest_marker("network") is not None]
    assert [i.nodeid for i in network if i.get_closest_marker("slow") is None] == []
    # a test reaching a weight fixture through another fixture counts too (fixturenames is the closure)
    fixture_users = [i for i in items if NETWORK_FIXTURES & set(getattr(i, "fixturenames", ()))]
    assert [i.nodeid for i in fixture_users if i.get_closest_marker("network") is None] == []
