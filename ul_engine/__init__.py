"""UL Studio engine: Unified Latents (Heek et al., arXiv 2602.17270) training, sampling and storage.

Importing the package is cheap and torch-free; torch is imported by the modules that need it.
"""

from __future__ import annotations

__version__ = "0.1.0"
