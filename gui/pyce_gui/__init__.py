"""pyce-gui: the live cross-entropy explorer (PySide6 + pyqtgraph) for pyce.

Run it with ``pyce-gui`` (or ``python -m pyce_gui``). The state and every derived
number live in the Qt-free :mod:`pyce_gui.model`; the rest is the Qt interface.
"""

__version__ = "0.1.0"
