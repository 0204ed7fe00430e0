"""UL Studio engine: Unified Latents (Heek et al., arXiv 2602.17270) training, sampling and storage.

Importing the package is cheap and torch-free; torch is imported by the modules that need it.
"""

from __future__ import annotations

import os

from ul_engine.core import __version__ as __version__

# Two torch processes on a small machine (a training worker beside the session worker, or beside tests)
# with OpenMP's default spin-waiting slow each other down ~16× (measured: 8.1 s vs 0.51 s per shapes-32
# step on 2 cores). Passive waiting costs nothing measurable alone. libgomp reads this when torch loads,
# so it is set here, before any engine module imports torch; an explicit user setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
