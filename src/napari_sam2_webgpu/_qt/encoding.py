"""The loaded model, and when to load and encode: the widget's model-loading policy.

:class:`ModelSession` decides what a load or an encode request does given the running job (a
model switched during an encode re-encodes with the new one; prompts on a slice that is not
encoded queue an encode; a cached embedding needs no job), and what a finished job changes.
The work itself runs through :class:`~napari_sam2_webgpu._qt.jobs.JobRunner`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from napari.utils.notifications import show_info

from .._napari import Annotator, AnnotatorError, EncodeRequest, PropagationController
from ..image import EmbeddingCache, ImageError
from .errors import ErrorReporter
from .jobs import Cancelled, Job, JobRunner, Outcome
from .loading import ModelChoice, job_steps, load_and_encode
from .status import error_message

if TYPE_CHECKING:  # pragma: no cover
    from ..image import ImageEmbedding, Sam2Predictor

__all__ = ["ModelSession"]


class ModelSession:
    """The loaded predictor and the load/encode policy of one widget.

    Parameters
    ----------
    annotator : Annotator
        Gets the predictor and the finished embeddings.
    cache : EmbeddingCache
        Where a slice encoded before is found without a job.
    propagation : PropagationController
        Gets the predictor (and its size, for the video components).
    jobs : JobRunner
    errors : ErrorReporter
    selected_choice : callable
        ``selected_choice()``: the model chosen in the widget.
    show_device : callable
        ``show_device(backend_info)`` once a model is loaded.
    on_change : callable
        Called when the state changed (to refresh the status).

    Attributes
    ----------
    predictor : Sam2Predictor or None
    loaded_choice : ModelChoice or None
        What :attr:`predictor` was loaded from.
    last_encode_seconds : float or None
        The last encode's time with this predictor.
    """

    def __init__(
        self,
        annotator: Annotator,
        cache: EmbeddingCache,
        propagation: PropagationController,
        jobs: JobRunner,
        errors: ErrorReporter,
        *,
        selected_choice: Callable[[], ModelChoice],
        show_device: Callable[[Any], None],
        on_change: Callable[[], None],
    ) -> None:
        self._annotator = annotator
        self._cache = cache
        self._propagation = propagation
        self._jobs = jobs
        self._errors = errors
        self._selected_choice = selected_choice
        self._show_device = show_device
        self._on_change = on_change
        self.predictor: Sam2Predictor | None = None
        self.loaded_choice: ModelChoice | None = None
        self.last_encode_seconds: float | None = None

    def is_loaded(self, choice: ModelChoice) -> bool:
        """Whether ``choice`` is the loaded model."""
        return choice == self.loaded_choice and self.predictor is not None

    def load(self, choice: ModelChoice) -> None:
        """Load ``choice`` in a job, unless it is loading already.

        A running job is cancelled; if it was encoding, the displayed slice is encoded again
        with the new model once it is loaded.
        """
        job = self._jobs.current
        if job is not None and job.choice == choice:
            return  # already loading it
        if job is not None:
            if job.request is not None:
                self._jobs.queued = True
                show_info(
                    "Model switched during encoding: the displayed slice will be encoded "
                    f"again with {choice.describe()}."
                )
            self.cancel(quiet=True)
        self._start_job(choice, None)

    def encode(self) -> None:
        """Encode the displayed slice now, or after the running job."""
        if self._jobs.current is not None:
            self._jobs.queued = True
        else:
            self.start_encode()

    def encode_and_wait(
        self, run_loop_until: Callable[[Callable[[], bool]], Any], alive: Callable[[], bool]
    ) -> ImageEmbedding | None:
        """:meth:`encode`, then process events until it (and a load still running) ended.

        Only this encode: not decodes or a propagation. Returns :meth:`chosen_embedding`; when
        that is None without a failure reported meanwhile, says so (never a silent None).
        """
        errors = self._errors.count
        self.encode()  # now, or after the running load or encode
        run_loop_until(lambda: not self._jobs.busy)
        embedding = self.chosen_embedding()
        if embedding is None and self._errors.count == errors and alive():
            self._errors.warn(
                "SAM2: the displayed slice was not encoded (the encode was cancelled, or the "
                "image or slice changed meanwhile): press Encode again."
            )
        return embedding

    def chosen_embedding(self) -> ImageEmbedding | None:
        """The displayed slice's embedding by the chosen model; None if there is none (after a
        failed load the old model is still there: its embedding does not count)."""
        chosen = self._selected_choice() == self.loaded_choice
        if chosen and self.predictor is not None and self._annotator.is_ready:
            return self.predictor.embedding
        return None

    def start_encode(self) -> None:
        """Encode the displayed slice: from the cache, or in a job (loading the model first
        if the chosen one is not loaded)."""
        choice = self._selected_choice()
        need_load = self.predictor is None or choice != self.loaded_choice
        try:
            request = self._annotator.encode_request()
        except (AnnotatorError, ImageError) as exc:
            self._errors.fail(str(exc))
            return
        if need_load and choice.size is None and not (choice.encoder and choice.decoder):
            self._errors.fail("Choose the encoder and decoder .onnx files of your custom model.")
            return
        if not need_load:
            cached = self._cache.get(request.key(self._annotator.model_key))
            if cached is not None:
                self._errors.clear()
                self._annotator.finish_encode(request, cached, self.predictor)
                self._on_change()
                return
        self._start_job(choice if need_load else None, request)

    def auto_encode(self) -> None:
        """Prompts arrived on a slice that is not encoded (called by the annotator)."""
        if self._jobs.current is not None:
            # After the running job, the displayed slice is encoded unless that job did it.
            self._jobs.queued = True
            return
        if self.predictor is None:
            self._errors.warn(
                "No SAM2 model is loaded yet: choose a model and press Encode. Your prompts "
                "are kept and decoded once the image is encoded."
            )
            return
        show_info("This slice is not encoded yet: encoding it now; the mask follows.")
        self.start_encode()

    def cancel(self, quiet: bool = False) -> None:
        """Stop the running job (its result is discarded); ``quiet`` keeps a queued encode and
        says nothing."""
        self._jobs.queued = self._jobs.queued and quiet
        if self._jobs.cancel() is None:
            return
        if not quiet:
            show_info("SAM2: cancelled.")
        self._on_change()

    def close(self) -> None:
        """Stop everything and let go of the model."""
        self._jobs.cancel()
        self._jobs.queued = False
        self.predictor = self.loaded_choice = None

    def _start_job(self, choice: ModelChoice | None, request: EncodeRequest | None) -> None:
        what = choice.describe() if choice is not None else ""
        predictor = self.predictor

        def work(job: Job, report: Callable[..., None]) -> Outcome:
            return load_and_encode(predictor, choice, request, report, lambda: job.cancelled)

        self._jobs.start(
            f"SAM2: loading {what}" if choice is not None else "SAM2: encoding",
            job_steps(choice, request),
            work,
            self._apply_outcome,
            choice=choice,
            request=request,
        )

    def _apply_outcome(self, job: Job, outcome: Outcome) -> None:
        """A job ended (on the GUI thread): use its model and embedding, or report its error;
        then start the encode queued meanwhile."""
        current = self._jobs.release(job)
        if outcome.error is not None:
            if current and not isinstance(outcome.error, Cancelled):
                self._jobs.queued = False
                self._errors.fail(error_message(outcome.error), outcome.error)
            return
        if current:
            self._errors.clear()
        if current and job.choice is not None:
            self._set_predictor(outcome.predictor, job.choice)
        if outcome.embedding is not None:
            applied = self._annotator.finish_encode(
                job.request, outcome.embedding, outcome.predictor, apply=current
            )
            if applied and current:
                self.last_encode_seconds = outcome.seconds
        if self._jobs.queued and self._jobs.current is None:
            self._jobs.queued = False
            if not self._annotator.has_exact_embedding() or not self._annotator.is_ready:
                self.start_encode()

    def _set_predictor(self, predictor: Sam2Predictor, choice: ModelChoice) -> None:
        self.predictor = predictor
        self.loaded_choice = choice
        self.last_encode_seconds = None
        self._show_device(predictor.backend_info)
        self._annotator.set_predictor(predictor)
        self._propagation.set_model(predictor, choice.size)
