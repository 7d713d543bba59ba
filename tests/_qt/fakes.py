"""Stand-ins for the Qt signals and combos the widget's Qt-free collaborators use."""

from __future__ import annotations

import inspect


def _accepted(slot, args: tuple) -> tuple:
    """The leading ``args`` that ``slot`` takes: Qt drops the rest, as for a lambda."""
    params = inspect.signature(slot).parameters.values()
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return args
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return args[: len(positional)]


class FakeSignal:
    """Qt's signal or napari's event emitter: connect, disconnect, emit (as Qt calls slots)."""

    def __init__(self) -> None:
        self.slots: list = []

    def connect(self, slot) -> None:
        self.slots.append(slot)

    def disconnect(self, slot) -> None:
        self.slots.remove(slot)

    def emit(self, *args) -> None:
        for slot in list(self.slots):
            slot(*_accepted(slot, args))


class FakeCombo:
    """The part of QComboBox that fill_layer_combo and LayerChoices use."""

    def __init__(self) -> None:
        self.items: list = []
        self.current = -1
        self.activated = FakeSignal()

    def blockSignals(self, on: bool) -> None:  # noqa: N802 - Qt's name
        pass

    def clear(self) -> None:
        self.items = []

    def addItem(self, text: str, data=None) -> None:  # noqa: N802
        self.items.append((text, data))

    def count(self) -> int:
        return len(self.items)

    def itemData(self, index: int):  # noqa: N802
        return self.items[index][1]

    def setCurrentIndex(self, index: int) -> None:  # noqa: N802
        self.current = index

    def texts(self) -> list[str]:
        return [text for text, _ in self.items]
