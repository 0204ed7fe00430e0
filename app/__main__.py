"""`ul-studio` / `python -m app`: open UL Studio's main window.

    ul-studio [--home DIR] [--page runs|monitor|...] [--version]

`--version` prints the version and exits without needing a display. With UL_STUDIO_BENCH_LAUNCH=1 the app
prints {"launch_to_shown_s": ...} (measured from interpreter start) when the window is first exposed, and
quits: `python -m app.bench` uses it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import cast

from app import APP_NAME, ORGANIZATION, __version__
from ul_engine.core.errors import ULError

_T0 = time.perf_counter()


def _process_start_offset() -> float:
    """Seconds between this process's start and now (falls back to the time since this module loaded)."""
    try:
        import psutil  # lazy: only the launch benchmark (UL_STUDIO_BENCH_LAUNCH) asks

        return time.time() - psutil.Process().create_time()
    except Exception:
        return time.perf_counter() - _T0


def _report_first_expose(window) -> None:
    """Print the time from process start to the first expose of the window's native surface, then quit."""
    from PySide6.QtCore import QEvent, QObject, QTimer  # lazy: --version and --help exit before Qt loads

    class FirstExpose(QObject):
        def eventFilter(self, obj, event) -> bool:
            if event.type() == QEvent.Type.Expose and obj.isExposed():
                obj.removeEventFilter(self)
                print(json.dumps({"launch_to_shown_s": _process_start_offset()}), flush=True)
                QTimer.singleShot(0, window.close)
            return False

    window.winId()  # create the native window now, so the filter sees its first expose
    window._first_expose_watcher = FirstExpose(window)
    window.windowHandle().installEventFilter(window._first_expose_watcher)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="ul-studio", description="UL Studio: train and explore Unified Latents.")
    p.add_argument("--version", action="version", version=f"ul-studio {__version__}")
    p.add_argument("--home", type=Path, help="data folder (default: $UL_HOME or the user data folder)")
    p.add_argument("--page", choices=("runs", "monitor", "reconstruct", "latents", "generate"))
    p.add_argument("--no-devices", action="store_true", help="do not start the worker that reports the devices")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    bench = os.environ.get("UL_STUDIO_BENCH_LAUNCH") == "1"

    from PySide6.QtCore import QCoreApplication, QTimer  # lazy: --version and --help exit before Qt loads
    from PySide6.QtWidgets import QApplication, QMessageBox  # lazy: --version and --help exit before Qt loads

    from app import theme  # lazy: --version and --help exit before Qt loads
    from app.resources import app_icon  # lazy: --version and --help exit before Qt loads
    from app.widgets.wheel_guard import install_wheel_guard  # lazy: --version and --help exit before Qt loads

    QCoreApplication.setOrganizationName(ORGANIZATION)
    QCoreApplication.setApplicationName(ORGANIZATION)
    QCoreApplication.setApplicationVersion(__version__)
    app = cast(QApplication, QApplication.instance() or QApplication(sys.argv[:1]))
    app.setApplicationDisplayName(APP_NAME)
    app.setDesktopFileName("io.github.ulstudio.ULStudio")  # packaging/desktop/: the window finds its entry
    app.setWindowIcon(app_icon())
    theme.apply(app)
    install_wheel_guard()
    setattr(app, "_ul_theme_watcher", theme.ThemeWatcher(app))  # noqa: B010 (kept alive; main_window reads it)

    from app.context import AppContext  # lazy: --version and --help exit before Qt loads
    from app.main_window import make_window  # lazy: --version and --help exit before Qt loads
    from ul_engine.store import default_home  # lazy: --version and --help exit before SQLAlchemy loads

    home = args.home or default_home()
    try:
        ctx = AppContext(home, start_session=not (args.no_devices or bench), install_demo=True)
    except ULError as exc:
        QMessageBox.critical(None, APP_NAME, f"Cannot open the data folder {home}:\n{exc}")
        return 2
    window = make_window(ctx, restore=not bench)
    if args.page:
        window.show_page(args.page)

    if bench:
        _report_first_expose(window)
    window.show()
    QTimer.singleShot(0, ctx.start)
    code = app.exec()
    if window.detached:
        # Training goes on in the background: skip Qt's teardown, whose QProcess destructors would kill it.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
