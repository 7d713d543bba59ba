"""Streaming one URL to a file over HTTP, with throttled progress and a stall guard.

Downloads use ``requests`` (installed with ``pooch``; imported only when something is
downloaded). pooch's own downloader reads in blocking 1 MiB chunks, so it cannot notice a server
that trickles a byte now and then; here each read returns what has arrived, so a download that
stalls is aborted: no data for :data:`DOWNLOAD_TIMEOUT` seconds (per socket read), or fewer than
:data:`STALL_MIN_BYTES` in :data:`STALL_SECONDS`. ``$NAPARI_SAM2_WEBGPU_DOWNLOAD_TIMEOUT`` sets
both times.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ModelDownloadError, ServerUnreachableError
from .settings import ENV_BASE_URL, ENV_CACHE_DIR, ENV_DOWNLOAD_TIMEOUT

__all__ = [
    "DOWNLOAD_CHUNK",
    "DOWNLOAD_TIMEOUT",
    "PROGRESS_SECONDS",
    "STALL_MIN_BYTES",
    "STALL_SECONDS",
    "ProgressCallback",
    "http_download",
]

logger = logging.getLogger(__name__)

#: ``progress(bytes_done, bytes_total, filename)``; ``bytes_total`` is 0 when unknown.
ProgressCallback = Callable[[int, int, str], None]

#: Seconds to wait for the server to connect, answer, or send the next bytes (per socket read).
DOWNLOAD_TIMEOUT = 60
#: Minimum throughput: a download is aborted when fewer than STALL_MIN_BYTES arrived during the
#: last STALL_SECONDS. A server trickling a byte now and then never trips the read timeout.
STALL_SECONDS = 120
STALL_MIN_BYTES = 128 << 10
#: Largest network read, and progress is reported after this many bytes (1 MiB keeps GUI updates
#: rare enough) ...
DOWNLOAD_CHUNK = 1 << 20
#: ... or after this many seconds when data arrives slowly.
PROGRESS_SECONDS = 0.5

# The clock of the stall guard and progress throttle (a module global so tests can swap it).
_clock = time.monotonic


class _Progress:
    """Forwards download progress to the callback, throttled to keep GUI updates rare.

    A call is made at most every :data:`DOWNLOAD_CHUNK` bytes or :data:`PROGRESS_SECONDS`,
    whichever comes first, so a slow download still shows movement; ``force`` reports now.
    """

    def __init__(self, callback: ProgressCallback | None, label: str, total: int) -> None:
        self.callback = callback
        self.label = label
        self.total = total
        self._sent = -1
        self._sent_at = _clock()

    def update(self, done: int, *, force: bool = False) -> None:
        if self.callback is None or done == self._sent:
            return
        now = _clock()
        if (
            force
            or done - max(self._sent, 0) >= DOWNLOAD_CHUNK
            or now - self._sent_at >= PROGRESS_SECONDS
        ):
            self._sent, self._sent_at = done, now
            self.callback(done, self.total, self.label)


class _StallGuard:
    """Minimum-throughput rule: too few bytes during the last `window` seconds means stalled."""

    def __init__(self, window: float, min_bytes: int) -> None:
        self.window = window
        self.min_bytes = min_bytes
        self._start = _clock()
        self._start_bytes = 0

    def check(self, done: int) -> int | None:
        """Return the bytes received in a window that ended with too few, else None."""
        now = _clock()
        if now - self._start < self.window:
            return None
        got = done - self._start_bytes
        if got < self.min_bytes:
            return got
        self._start, self._start_bytes = now, done
        return None


def _download_limits() -> tuple[float, float, int]:
    """``(read timeout, stall window, stall minimum bytes)``, with the environment override."""
    timeout, window = float(DOWNLOAD_TIMEOUT), float(STALL_SECONDS)
    raw = os.environ.get(ENV_DOWNLOAD_TIMEOUT, "").strip()
    if raw:
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        if value > 0 and math.isfinite(value):
            timeout = window = value
        else:
            logger.warning(
                "Ignoring %s=%r: expected a number of seconds > 0.", ENV_DOWNLOAD_TIMEOUT, raw
            )
    return timeout, window, int(STALL_MIN_BYTES)


def _content_length(headers: Any) -> int:
    try:
        return max(int(headers.get("Content-Length") or 0), 0)
    except ValueError:
        return 0


def _fmt_total(total: int) -> str:
    return f"{total:,} bytes" if total > 0 else "an unknown number of bytes"


@dataclass
class _Transfer:
    """One download in progress: what the error messages need to say."""

    url: str
    label: str
    timeout: float
    window: float
    min_bytes: int
    total: int = 0

    @property
    def advice(self) -> str:
        return (
            f"The partial file was discarded; try again later, use a mirror ({ENV_BASE_URL}), "
            f"or allow more time with {ENV_DOWNLOAD_TIMEOUT}=SECONDS."
        )

    def failed(self, what: str) -> ModelDownloadError:
        return ModelDownloadError(f"Download of {self.label} from {self.url} {what}")


def _get(job: _Transfer) -> Any:
    """Send the request; return the streaming response."""
    import requests

    try:
        # identity: byte counts, Content-Length and the checksum all refer to the file itself.
        return requests.get(
            job.url,
            stream=True,
            timeout=(job.timeout, job.timeout),
            headers={"Accept-Encoding": "identity"},
        )
    except requests.ReadTimeout as exc:
        raise job.failed(
            f"stalled: the server accepted the connection but sent no answer within "
            f"{job.timeout:g} s. {job.advice}"
        ) from exc
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise ServerUnreachableError(f"could not download {job.url}: {exc}") from exc
    except requests.RequestException as exc:
        raise job.failed(
            f"failed ({exc}). Nothing was saved; check the URL (or {ENV_BASE_URL}) and try again."
        ) from exc


def _copy_body(raw: Any, dest: Path, decode: bool, bar: _Progress, job: _Transfer) -> int:
    """Write the response body to `dest` as it arrives; return the number of bytes."""
    import urllib3

    # read1 returns what has arrived instead of blocking until a whole chunk is in, so the
    # progress and the stall rule see a slow server as it is. urllib3 < 2.3 lacks it; its
    # read blocks until n bytes arrive, so n is kept small there.
    read1 = getattr(raw, "read1", None)
    chunk_size = DOWNLOAD_CHUNK if read1 is not None else 16 << 10
    read = read1 if read1 is not None else raw.read
    guard = _StallGuard(job.window, job.min_bytes)
    done = 0
    with open(dest, "wb") as fh:
        while True:
            try:
                chunk = read(chunk_size, decode_content=decode)
            except urllib3.exceptions.ReadTimeoutError as exc:
                raise job.failed(
                    f"stalled: no data for {job.timeout:g} s after {done:,} of "
                    f"{_fmt_total(job.total)}. {job.advice}"
                ) from exc
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                raise job.failed(
                    f"was interrupted after {done:,} of {_fmt_total(job.total)} ({exc}). The "
                    "partial file was discarded; run again to retry."
                ) from exc
            if not chunk:
                return done
            try:
                fh.write(chunk)
            except OSError as exc:
                raise ModelDownloadError(
                    f"Could not write the download of {job.label} to {dest.parent} ({exc}). "
                    "The partial file was discarded; free some space or choose another cache "
                    f"folder ({ENV_CACHE_DIR}), then try again."
                ) from exc
            done += len(chunk)
            bar.update(done)
            recent = guard.check(done)
            if recent is not None:
                raise job.failed(
                    f"is too slow (stalled): only {recent:,} bytes arrived in the last "
                    f"{job.window:g} s (at least {job.min_bytes:,} expected), {done:,} of "
                    f"{_fmt_total(job.total)} in all. {job.advice}"
                )


def http_download(url: str, dest: Path, progress: ProgressCallback | None, label: str) -> int:
    """Fetch `url` into `dest`; return the number of bytes written.

    Parameters
    ----------
    url : str
        What to fetch.
    dest : Path
        File to write (truncated first); the caller removes it on failure.
    progress : callable or None
        See :data:`ProgressCallback`; throttled. An exception it raises aborts the download.
    label : str
        Name reported to `progress` and in messages.

    Returns
    -------
    int

    Raises
    ------
    ModelDownloadError
        HTTP error, interrupted, stalled or too slow transfer, disk write error.
    ServerUnreachableError
        No connection at all.
    """
    timeout, window, min_bytes = _download_limits()
    job = _Transfer(url, label, timeout, window, min_bytes)
    response = _get(job)
    with response:
        if not response.ok:
            raise ModelDownloadError(
                f"Download of {label} failed: HTTP {response.status_code} from {url}. Nothing "
                f"was saved; check the URL (or {ENV_BASE_URL}) and try again."
            )
        encoding = response.headers.get("Content-Encoding", "").strip().lower()
        decode = encoding not in ("", "identity")
        # Content-Length counts encoded bytes; with an encoding the file's size is unknown.
        job.total = 0 if decode else _content_length(response.headers)
        bar = _Progress(progress, label, job.total)
        if job.total > 0:
            bar.update(0, force=True)
        done = _copy_body(response.raw, dest, decode, bar, job)
    if job.total > 0 and done != job.total:
        raise ModelDownloadError(
            f"Download of {label} from {url} is incomplete: got {done:,} of {job.total:,} "
            "bytes. The partial file was discarded; run again to retry."
        )
    if job.total == 0:
        bar.total = done  # no size announced: report the end once, as done == total
    bar.update(done, force=True)
    return done
