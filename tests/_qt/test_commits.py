"""Commit and undo as the dock does them, with stand-in collaborators: no Qt."""

from __future__ import annotations

from types import SimpleNamespace

from napari_sam2_webgpu._qt.commits import Commits


class _Errors:
    def __init__(self) -> None:
        self.cleared = 0

    def guard(self, fn, *args):
        return fn(*args)

    def clear(self) -> None:
        self.cleared += 1


def _commits(propagated=False, last_undo_step=False, painted=5, undone=True):
    annotator = SimpleNamespace(object_id=3, commit=lambda: painted, undo=lambda: undone)
    finished: list = []

    def finish_object() -> None:
        finished.append(annotator.object_id)
        annotator.object_id = 4

    propagation = SimpleNamespace(
        is_propagated=lambda: propagated,
        finish_object=finish_object,
        is_last_undo_step=lambda: last_undo_step,
    )
    waited: list = []
    errors = _Errors()
    commits = Commits(annotator, propagation, errors, lambda: waited.append(True))
    return commits, annotator, errors, waited, finished


def test_commit_waits_for_the_decode_and_paints():
    commits, _, errors, waited, finished = _commits()
    assert commits.commit() == 5
    assert waited == [True] and errors.cleared == 1 and finished == []
    commits, _, errors, _, _ = _commits(painted=None)
    assert commits.commit() == 0 and errors.cleared == 0


def test_commit_after_a_propagation_only_moves_on():
    commits, annotator, errors, _, finished = _commits(propagated=True)
    assert commits.commit() == 0
    assert finished == [3] and annotator.object_id == 4 and errors.cleared == 1


def test_undo_of_a_propagation_keeps_its_object():
    def undo() -> bool:
        annotator.object_id = 9  # napari's undo moved the id on
        return True

    commits, annotator, errors, _, _ = _commits(last_undo_step=True)
    annotator.undo = undo
    assert commits.undo() is True
    assert annotator.object_id == 3 and errors.cleared == 1
    commits, _, errors, _, _ = _commits(undone=False)
    assert commits.undo() is False and errors.cleared == 0
