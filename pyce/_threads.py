"""Thread count and CPU-dispatch information."""

from __future__ import annotations

import operator

from . import _core


def set_num_threads(n: int) -> None:
    """Use ``n`` threads in the kernels (``1 <= n <= max_threads()``).

    The default is ``PYCE_NUM_THREADS`` if set (capped at ``max_threads()``),
    else OpenMP's default (the number of cores). Results are bitwise identical
    for every thread count.

    Parameters
    ----------
    n : int
        The number of threads, at least 1 and at most ``max_threads()``.

    Raises
    ------
    ValueError
        ``n < 1`` or ``n > max_threads()``: more threads than that only
        oversubscribe the cores, and when the system cannot create them the
        OpenMP runtime ends the process instead of raising.

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
    limit = _core.max_threads()
    if not 1 <= n <= limit:
        why = (
            "1 in a fork()ed child: OpenMP's threads do not survive fork"
            if _core.cpu_info()["forked_child"]
            else "4 per processor, at least 64"
        )
        raise ValueError(
            f"the number of threads must be between 1 and {limit} (max_threads(): {why}), got {n}"
        )
    _core.set_num_threads(n)


def max_threads() -> int:
    """The most threads :func:`set_num_threads` accepts: 4 per processor, at least 64.

    In a child made by ``fork()`` from a process that loaded pyce it is 1: OpenMP's
    threads do not survive fork (a child that started a thread team would
    wait for the parent's threads forever), so the child computes on its own
    thread, as PyTorch's does. Processes started with "spawn" or
    "forkserver" are not affected.

    Returns
    -------
    int
        The cap on :func:`set_num_threads`.

    Examples
    --------
    >>> import pyce
    >>> pyce.max_threads() >= pyce.get_num_threads()
    True
    """
    return _core.max_threads()


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
        ``forced`` (the ``PYCE_CPU_CAPABILITY`` value, or None), ``forked_child``
        (one thread after fork, see :func:`max_threads`) and build details.

    Examples
    --------
    >>> import pyce
    >>> info = pyce.cpu_info()
    >>> info["isa"] in info["supported"], "baseline" in info["supported"]
    (True, True)
    """
    return dict(_core.cpu_info())
