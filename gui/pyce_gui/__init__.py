"""pyce-gui: the live cross-entropy explorer (PySide6 + pyqtgraph) for pyce.

Run it with ``pyce-gui`` (or ``python -m pyce_gui``). The state and every derived
number live in the Qt-free :mod:`pyce_gui.model`; the rest is the Qt interface.
"""

from pyce._version import __version__  # one version for the one distribution

__all__ = ["__version__"]
