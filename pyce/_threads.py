"""Thread count and CPU-dispatch information."""

from __future__ import annotations

import operator

from . import _core


def set_num_threads(n: int) -> None:
    """Use ``n`` threads in the kernels (``n >= 1``).

    The default is ``PYCE_NUM_THREADS`` if set, else OpenMP's default (the
    number of cores). Results are bitwise identical for every thread count.

    Parameters
    ----------
    n : int
        The number of threads, at least 1.

    Examples
    --------
    >>> import pyce
    >>> before = pyce.get_num_threads()
    >>> pyce.set_num_threads(1)
    >>> pyce.get_num_threads()
    1
    >>> pyce.set_num_threads(before)
    """
    try:
        n = operator.index(n)
    except TypeError:
        raise TypeError(f"set_num_threads expects an integer, got {n!r}") from None
    if n < 1:
        raise ValueError(f"the number of threads must be >= 1, got {n}")
    _core.set_num_threads(n)


def get_num_threads() -> int:
    """The number of threads the kernels use.

    Returns
    -------
    int
        The count set by :func:`set_num_threads`, else the default
        (``PYCE_NUM_THREADS``, or the number of cores).

    Examples
    --------
    >>> import pyce
    >>> pyce.get_num_threads() >= 1
    True
    """
    return _core.get_num_threads()


def cpu_info() -> dict:
    """What the kernels run on.

    Returns
    -------
    dict
        ``isa``: the instruction set chosen ('avx512', 'avx2' or 'baseline');
        ``supported``: every level this CPU and build can run; ``openmp``: whether
        the build has OpenMP; ``threads``: the thread count in use; plus
        ``forced`` (the ``PYCE_CPU_CAPABILITY`` value, or None) and build details.

    Examples
    --------
    >>> import pyce
    >>> info = pyce.cpu_info()
    >>> info["isa"] in info["supported"], "baseline" in info["supported"]
    (True, True)
    """
    return dict(_core.cpu_info())
