"""The Qt side of the plugin: the dock widget and its parts.

========================  ==================================================================
:mod:`.widget`            :class:`Sam2Widget`: composition and the console API
:mod:`.encoding`          :class:`ModelSession`: the loaded model, when to load and encode
:mod:`.panels`            the dock's rows as small QWidgets (controls only)
:mod:`.dock`              :class:`DockView`: the panels laid out, the object row bound to the
                          annotator's settings, the status shown
:mod:`.wiring`            :class:`DockWiring`: the buttons and the annotator's events wired to
                          the console API, Encode/Propagate as Cancel, the status shown
:mod:`.layer_choices`     :class:`LayerChoices`: the image/labels combos following the viewer
:mod:`.lifecycle`         :class:`Lifecycle`: alive probing and the one teardown (no Qt)
:mod:`.commits`           :class:`Commits`: commit and undo, aware of propagation (no Qt)
:mod:`.arguments`         the console API's argument checks (no Qt)
:mod:`.jobs`              worker threads, the load/encode job runner with progress bars and
                          cancel, waiting in a nested event loop
:mod:`.propagation`       :class:`PropagationRunner`: a propagation's worker and progress bar
:mod:`.segment_all`       the "Segment all" section and its runner (worker, progress, cancel)
:mod:`.loading`           :class:`ModelChoice` and a job's load-and-encode work (no Qt)
:mod:`.errors`            :class:`ErrorReporter`: failures as messages, :attr:`last_error`
:mod:`.status`            every text the dock shows, as pure functions (no Qt)
:mod:`.shortcuts`         :data:`SHORTCUTS` and their binding on the viewer and prompt layers
========================  ==================================================================

The napari glue underneath (annotator, propagation) has no Qt; this package uses only its
public names.
"""

from __future__ import annotations

from .shortcuts import SHORTCUTS
from .widget import Sam2Widget

__all__ = ["SHORTCUTS", "Sam2Widget"]
