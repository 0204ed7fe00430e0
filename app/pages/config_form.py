"""A form generated from the engine's config schema (`ul_engine.core.config.schema_fields`): every field gets an
editor, the field's one-sentence description as tooltip and its allowed range, and an inline error line
that shows the engine's own validation message.

Editors keep text as typed (numbers and lists are parsed as TOML values, as `--set` does), so a wrong
value reaches the engine and comes back with the engine's message instead of being silently clamped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QLabel,
    QLineEdit,
    QVBoxLayout,
    QWidget,
)

from app.models.run_form import field_tooltip, literal_choices, value_text
from app.widgets.field_row import FieldRow
from ul_engine.core.config import parse_value, schema_fields

SECTION_TITLES = {
    "": "General",
    "data": "Data",
    "model": "Model",
    "model.encoder": "Encoder",
    "model.prior": "Latent prior",
    "model.decoder": "Decoder",
    "model.base": "Base model (stage 2)",
    "loss": "Loss",
    "optim": "Optimizer",
    "ema": "EMA",
    "train": "Training",
    "sampling": "Sampling",
}


class FieldEditor(FieldRow):
    """Editor of one config field with its error line."""

    changed = Signal(str)

    def __init__(self, spec: dict[str, Any], parent: QWidget | None = None) -> None:
        super().__init__(parent=parent)
        self.spec = spec
        self.path: str = spec["path"]
        annotation = spec["annotation"]
        self.choices = literal_choices(annotation)
        self.kind = (
            "bool" if annotation == "<class 'bool'>"
            else "choice" if self.choices is not None
            else "str" if annotation == "<class 'str'>"
            else "value"
        )  # fmt: skip
        widget: QCheckBox | QComboBox | QLineEdit
        if self.kind == "bool":
            widget = QCheckBox()
            widget.toggled.connect(lambda _v: self.changed.emit(self.path))
        elif self.kind == "choice":
            widget = QComboBox()
            for choice in self.choices or []:
                widget.addItem(str(choice), choice)
            widget.currentIndexChanged.connect(lambda _i: self.changed.emit(self.path))
        else:
            widget = QLineEdit()
            widget.textEdited.connect(lambda _t: self.changed.emit(self.path))
        widget.setToolTip(field_tooltip(spec))
        widget.setObjectName(f"field:{self.path}")
        self.set_widget(widget)
        self.set_value(spec["default"])

    def value(self) -> Any:
        w = self.widget
        if isinstance(w, QCheckBox):
            return w.isChecked()
        if isinstance(w, QComboBox):
            return w.currentData()
        assert isinstance(w, QLineEdit)
        text = w.text()
        if self.kind == "str":
            return text
        return parse_value(text.strip()) if text.strip() else text

    def set_value(self, value: Any) -> None:
        w = self.widget
        w.blockSignals(True)
        try:
            if isinstance(w, QCheckBox):
                w.setChecked(bool(value))
            elif isinstance(w, QComboBox):
                i = w.findData(value)
                w.setCurrentIndex(max(0, i))
            elif isinstance(w, QLineEdit):
                w.setText(value_text(value))
        finally:
            w.blockSignals(False)

    def has_error(self) -> bool:
        return self.error.isVisible() or bool(self.error.text())


class ConfigForm(QWidget):
    """Every schema field except `exclude`, grouped by section."""

    changed = Signal(str)  # path

    def __init__(
        self, exclude: tuple[str, ...] = ("preset", "description", "stage"), parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.specs = [s for s in schema_fields() if s["path"] not in exclude]
        self.editors: dict[str, FieldEditor] = {}
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        groups: dict[str, QFormLayout] = {}
        for spec in self.specs:
            section = spec["path"].rsplit(".", 1)[0] if "." in spec["path"] else ""
            form = groups.get(section)
            if form is None:
                title = SECTION_TITLES.get(section, section)
                box = QGroupBox(f"{title}  ({section}.*)" if section else title)
                box.setObjectName(f"section:{section}")
                form = QFormLayout(box)
                form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
                groups[section] = form
                layout.addWidget(box)
            editor = FieldEditor(spec)
            editor.changed.connect(self.changed)
            label = QLabel(spec["path"].rsplit(".", 1)[-1].replace("_", " "))
            label.setToolTip(field_tooltip(spec))
            form.addRow(label, editor)
            self.editors[spec["path"]] = editor
        layout.addStretch(1)

    def paths(self) -> list[str]:
        return list(self.editors)

    def set_values(self, flat: dict[str, Any]) -> None:
        for path, value in flat.items():
            editor = self.editors.get(path)
            if editor is not None:
                editor.set_value(value)

    def values(self) -> dict[str, Any]:
        return {path: editor.value() for path, editor in self.editors.items()}

    def value(self, path: str) -> Any:
        return self.editors[path].value()

    def set_value(self, path: str, value: Any) -> None:
        self.editors[path].set_value(value)

    def set_errors(self, errors: dict[str, str]) -> None:
        for path, editor in self.editors.items():
            editor.set_error(errors.get(path))

    def set_editable(self, predicate: Callable[[str], bool]) -> None:
        """Enable the editors whose path satisfies `predicate(path)`; disable the others."""
        for path, editor in self.editors.items():
            editor.widget.setEnabled(bool(predicate(path)))
