"""pyce's version: the one place it is written.

pyproject.toml reads it from here at build time (scikit-build-core's regex
metadata provider), ``pyce.__version__`` and ``pyce_gui.__version__`` import it.
"""

__version__ = "0.1.0"
