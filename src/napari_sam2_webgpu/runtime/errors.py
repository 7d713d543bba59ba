"""The runtime's error type, and ONNX Runtime's messages cut down to what a user can act on."""

from __future__ import annotations

import re

__all__ = ["WebGPUUnavailableError", "one_line"]


class WebGPUUnavailableError(RuntimeError):
    """WebGPU was requested explicitly but cannot be used; the message says precisely why."""


# ONNX Runtime prefixes messages with "file.cc:123 <C++ signature> "; only the text after the
# innermost one means something to a user.
_SOURCE_LOCATION = re.compile(r"\S+\.(?:cc|cpp|cxx|h|hpp|mm):\d+\s+")
_CPP_SIGNATURE = re.compile(r"^[\w:~<>*&, ]+\([^()]*\)(?:::<lambda\(\)>)?(?:\s*const)?\s+")
_ORT_TAG = re.compile(r"\[ONNXRuntimeError\]\s*:\s*\d+\s*:\s*")


def one_line(text: object, limit: int = 400) -> str:
    """Collapse a message to one line for logs, status bars and fallback reasons.

    ONNX Runtime's ``[ONNXRuntimeError] : N :`` tags and its C++ source locations and signatures
    are removed: only the text after the innermost location explains the problem.

    Parameters
    ----------
    text : object
        The message, or an exception (its ``str``).
    limit : int
        Longest result; longer messages end in ``"..."``.

    Returns
    -------
    str
    """
    s = " ".join(str(text).split())
    s = _ORT_TAG.sub("", s)
    parts = _SOURCE_LOCATION.split(s)
    if len(parts) > 1:
        tail = _CPP_SIGNATURE.sub("", parts[-1]).strip()
        s = tail or s
    return s if len(s) <= limit else s[: limit - 3] + "..."
