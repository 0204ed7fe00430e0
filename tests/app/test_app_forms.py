"""Forms that hold their values and say what they mean: the mouse wheel scrolls a form instead of changing
the field under the pointer, and every field of the New run form explains itself in plain words."""

from __future__ import annotations

from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import QApplication, QScrollArea, QWidget


def wheel(widget: QWidget, notches: int = -3) -> None:
    """A wheel turn over the middle of `widget`, through the application's event filters as a real one."""
    pos = widget.rect().center()
    event = QWheelEvent(QPointF(pos), QPointF(widget.mapToGlobal(pos)), QPoint(0, 0), QPoint(0, 120 * notches),
                        Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase,
                        False)  # fmt: skip
    QApplication.sendEvent(widget, event)


def test_the_wheel_scrolls_the_new_run_form_not_the_field_under_the_pointer(qtbot, window) -> None:
    runs = window.page("runs")
    dialog = runs.train_shapes()
    qtbot.waitExposed(dialog)
    spin = dialog.latent_channels
    scroll = dialog.findChild(QScrollArea)
    assert spin.focusPolicy() == Qt.FocusPolicy.StrongFocus  # the wheel never gives it focus
    before = spin.value()
    bar = scroll.verticalScrollBar()
    bar.setValue(0)
    scroll.ensureWidgetVisible(spin)
    top = bar.value()
    dialog.name.setFocus()
    assert not spin.hasFocus()
    wheel(spin, -3)  # scrolling down over the unfocused field
    assert spin.value() == before  # the value holds…
    assert bar.value() > top or bar.value() == bar.maximum()  # …and the form scrolled instead
    combo = dialog.downsampling
    index = combo.currentIndex()
    wheel(combo, -2)
    assert combo.currentIndex() == index

    spin.setFocus()  # a focused field keeps the wheel
    qtbot.waitUntil(spin.hasFocus, timeout=5000)
    wheel(spin, 1)
    assert spin.value() == before + 1
    dialog.reject()


def test_the_demos_samples_go_to_a_folder_named_demo(qtbot, make_ctx, home) -> None:
    from app.pages.generate import GeneratePage
    from ul_engine.demo import ensure_demo_run

    ctx = make_ctx()
    demo = ensure_demo_run(ctx.store)
    assert demo is not None and demo.stage == 2
    page = GeneratePage(ctx)
    qtbot.addWidget(page)
    page.runs.refresh()
    assert page.runs.info().name == "demo"
    assert page.samples_folder() == home / "samples" / "demo"  # not runs/<id>/samples
