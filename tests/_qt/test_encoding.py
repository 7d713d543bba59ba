"""The model session's load and encode policy, with stand-in collaborators: no Qt."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from napari_sam2_webgpu._qt.encoding import ModelSession


@pytest.mark.parametrize("alive", [True, False])
def test_encode_and_wait_never_returns_a_silent_none(alive):
    jobs = SimpleNamespace(current=object(), queued=False, busy=False)
    warnings: list = []
    errors = SimpleNamespace(count=0, warn=warnings.append)
    session = ModelSession(
        SimpleNamespace(is_ready=False),
        None,
        None,
        jobs,
        errors,
        selected_choice=lambda: None,
        show_device=lambda info: None,
        on_change=lambda: None,
    )
    waited: list = []
    assert session.encode_and_wait(lambda cond: waited.append(cond()), lambda: alive) is None
    assert jobs.queued and waited == [True]  # queued after the running job, then waited for
    assert len(warnings) == (1 if alive else 0)
