"""Developer tools of the app: icon rendering, screenshots, benchmarks, probes (not imported by the app itself).

Importing the engine package first sets its OpenMP wait policy before any tool imports torch (libgomp reads it
when torch loads; spin-waiting beside a training job slows both many times over: ul_engine/__init__.py).
"""

import ul_engine as _ul_engine  # noqa: F401
