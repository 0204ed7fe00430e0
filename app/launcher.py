"""The one entry point of the frozen (PyInstaller) bundle: the app, its workers and the CLI in one executable.

A frozen app has no `python` to run `python -m ul_engine.worker ...`, so the bundle's executable takes the
worker's place itself:

    ul-studio [APP ARGS]             the window (app.__main__)
    ul-studio --worker train|session  a worker process (what `ul_engine.core.supervisor.worker_argv` starts)
    ul-studio --cli doctor|runs|...   the `ul` command line
    ul-studio -m MODULE ARGS          `python -m` (accelerate's launcher and older call sites use it)
    ul-studio -c CODE ARGS            `python -c` (the New run form's speed trial)

Interpreter flags that launchers put first (-u, -B, -E, -s) are accepted and ignored. The GUI branch imports
no torch: workers and the CLI run in their own processes.
"""

from __future__ import annotations

import runpy
import sys

INTERPRETER_FLAGS = ("-u", "-B", "-E", "-s", "-I")


def dispatch(argv: list[str]) -> tuple[str, list[str]]:
    """(what to run, its arguments) for a command line without the program name: "app", "worker", "cli",
    "module" (arguments start with the module's name) or "code" (the code, then its arguments)."""
    args = list(argv)
    while args and args[0] in INTERPRETER_FLAGS:
        args.pop(0)
    if not args:
        return "app", []
    head, rest = args[0], args[1:]
    if head == "--worker":
        return "worker", rest
    if head == "--cli":
        return "cli", rest
    if head in ("-m", "-c"):
        if not rest:
            raise SystemExit(f"ul-studio: {head} needs an argument")
        return ("module" if head == "-m" else "code"), rest
    return "app", args


def main(argv: list[str] | None = None) -> int:
    kind, args = dispatch(sys.argv[1:] if argv is None else argv)
    if kind == "worker":
        from ul_engine.worker.__main__ import main as worker_main  # lazy: only this branch may load torch

        sys.argv = ["ul-studio --worker", *args]
        return worker_main(args)
    if kind == "cli":
        from ul_engine.cli.main import main as cli_main  # lazy: only this branch may load torch

        sys.argv = ["ul", *args]
        return cli_main(args)
    if kind == "module":
        sys.argv = [args[0], *args[1:]]
        runpy.run_module(args[0], run_name="__main__", alter_sys=True)
        return 0
    if kind == "code":
        sys.argv = ["-c", *args[1:]]
        exec(compile(args[0], "<string>", "exec"), {"__name__": "__main__", "__builtins__": __builtins__})
        return 0
    from app.__main__ import main as app_main  # lazy: workers and the CLI never load Qt

    return app_main(args)


if __name__ == "__main__":
    raise SystemExit(main())
