from __future__ import annotations

from modeldeploy_operator.watchdog import WatchMonitor


def test_a_live_watch_is_never_stale() -> None:
    w = WatchMonitor()
    w.saw("ns", "a", "1")
    w.listed([("ns", "a", "1")])
    w.listed([("ns", "a", "1")])
    assert w.stale() == []


def test_a_change_the_watch_delivers_late_is_not_stale() -> None:
    w = WatchMonitor()
    w.saw("ns", "a", "1")
    w.listed([("ns", "a", "2")])  # the list is ahead of the watch for a moment
    w.saw("ns", "a", "2")
    w.listed([("ns", "a", "2")])
    assert w.stale() == []


def test_a_version_two_lists_saw_but_the_watch_never_did_is_stale() -> None:
    w = WatchMonitor()
    w.saw("ns", "a", "1")
    w.listed([("ns", "a", "2")])
    w.listed([("ns", "a", "2")])
    assert w.stale() == ["ns/a"]
    w.saw("ns", "a", "2")  # the watch recovered (e.g. reconnected)
    assert w.stale() == []


def test_objects_that_keep_changing_are_not_stale_and_deleted_ones_are_forgotten() -> None:
    w = WatchMonitor()
    w.listed([("ns", "a", "2")])
    w.listed([("ns", "a", "3")])
    assert w.stale() == []
    w.listed([("ns", "b", "7")])
    w.listed([("ns", "b", "7")])
    assert w.stale() == ["ns/b"]
    w.listed([])
    assert w.stale() == []
