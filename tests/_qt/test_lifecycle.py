"""When the dock widget ends: :class:`Lifecycle`, Qt-free."""

from __future__ import annotations

from napari_sam2_webgpu._qt.lifecycle import Lifecycle


def _lifecycle(calls: list, probe=lambda: None) -> Lifecycle:
    return Lifecycle(probe, lambda: calls.append("stop"), lambda: calls.append("release"))


def test_lifecycle_closes_once_stopping_before_releasing():
    calls: list = []
    life = _lifecycle(calls)
    assert life.alive() and not life.closed
    life.close()
    life.close()
    assert calls == ["stop", "release"]
    assert life.closed and not life.alive()


def test_lifecycle_stop_runs_while_still_alive():
    seen: list = []
    life = Lifecycle(lambda: None, lambda: seen.append(life.alive()), lambda: None)
    life.close()
    assert seen == [True]


def test_lifecycle_tears_down_when_the_qt_object_is_gone():
    calls: list = []

    def probe() -> None:
        raise RuntimeError("wrapped C/C++ object has been deleted")

    life = _lifecycle(calls, probe)
    assert not life.alive()
    assert calls == ["stop", "release"]


def test_lifecycle_closes_when_taken_out_of_its_dock_only():
    calls: list = []
    life = _lifecycle(calls)
    life.parent_changed(False)  # never docked: nothing happens
    assert not life.closed
    life.parent_changed(True)
    life.parent_changed(True)
    assert not life.closed
    life.parent_changed(False)
    assert life.closed and calls == ["stop", "release"]
