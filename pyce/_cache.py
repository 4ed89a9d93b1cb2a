"""The buffer cache: large outputs reuse the memory of recently freed ones.

A new array of hundreds of MB costs more than its size suggests: the
operating system maps and zeroes each page the first time it is written, so a
forward+backward into a fresh gradient moves about 1.5x the bytes of one into
a reused buffer. pyce therefore keeps a few freed output buffers (gradients,
softmax outputs) and hands them out again, as a training loop asks for a
same-sized gradient every step. The memory of a cached buffer stays with the
process until :func:`empty_cache` or a lower :func:`set_cache_limit`.
"""

from __future__ import annotations

import operator

import numpy as np

from . import _core

# Below this size a new array is cheap (malloc reuses its own memory) and the
# per-call cost of the cache would show on small calls.
CACHE_MIN_BYTES = 1 << 20


def empty_output(shape, dtype) -> np.ndarray:
    """An uninitialised C-contiguous array for a kernel to write, cached if large."""
    dtype = np.dtype(dtype)
    nbytes = dtype.itemsize
    for n in shape:
        nbytes *= n
    if nbytes < CACHE_MIN_BYTES:
        return np.empty(tuple(shape), dtype=dtype)
    return _core.empty(tuple(shape), dtype)


def empty_cache() -> None:
    """Return every cached output buffer to the operating system.

    Arrays still in use are not affected; their memory goes back to the cache
    (or the OS) when they are freed.

    Examples
    --------
    >>> import pyce
    >>> pyce.empty_cache()
    >>> pyce.cache_info()["cached_bytes"]
    0
    """
    _core.empty_cache()


def set_cache_limit(nbytes: int) -> None:
    """Keep at most ``nbytes`` of freed output buffers (0 disables the cache).

    The default is ``PYCE_CACHE_MB`` megabytes if set, else a quarter of the
    machine's memory; at most four buffers are kept in any case.

    Parameters
    ----------
    nbytes : int
        The most bytes of freed buffers kept, at least 0.

    Examples
    --------
    >>> import pyce
    >>> before = pyce.cache_info()["limit_bytes"]
    >>> pyce.set_cache_limit(256 * 2**20)
    >>> pyce.cache_info()["limit_bytes"]
    268435456
    >>> pyce.set_cache_limit(before)
    """
    try:
        nbytes = operator.index(nbytes)
    except TypeError:
        raise TypeError(f"set_cache_limit expects an integer number of bytes, got {nbytes!r}") from None
    if nbytes < 0:
        raise ValueError(f"the cache limit must be >= 0 bytes, got {nbytes}")
    _core.set_cache_limit(nbytes)


def cache_info() -> dict:
    """The buffer cache's state.

    Returns
    -------
    dict
        ``limit_bytes``, ``cached_bytes`` (freed buffers held now),
        ``cached_buffers``, and the ``hits`` and ``misses`` of large outputs
        since start-up.

    Examples
    --------
    >>> import pyce
    >>> sorted(pyce.cache_info())
    ['cached_buffers', 'cached_bytes', 'hits', 'limit_bytes', 'misses']
    """
    return dict(_core.cache_info())
