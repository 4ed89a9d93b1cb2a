"""``pyce bench``: time pyce against the memory-bandwidth floor and its peers.

Method (DESIGN.md section 7). In the same run, on the same thread count, the
bench measures streaming bandwidth with pyce's own C++ probes
(``pyce._core.stream_read`` / ``stream_scale``) on a float32 buffer of exactly
the logits' byte count, and uses it as the floor of each operation:

=========  ===================================  ============================
op         what is timed                        floor (bytes that must move)
=========  ===================================  ============================
forward    ``cross_entropy(x, t)``              read x once
fused      ``cross_entropy_with_grad(x, t)``    read x + write a new gradient
fused_out  ``... (x, t, out=buffer)``           read x + write a reused gradient
inplace    ``... (x, t, inplace=True)``         read x + write x in place
backward   ``cross_entropy_backward(x, t)``     read x + write a new gradient
logsumexp  ``logsumexp(x)``                     read x once
=========  ===================================  ============================

Each figure is the best of ``--repeat`` runs after a warm-up call; a run of a
very short call averages enough back-to-back calls to last ``--min-time``. Each
op is timed alternately with the probe that bounds it (``time_against_floor``),
so that drifting bandwidth on a shared machine moves both alike; the header's
bandwidths come from a separate measurement before the shape's ops.
Each op is also timed on a few of its rows kept in cache (``measure_in_cache``),
scaled to all rows: the floor its arithmetic sets, beside the one memory sets.
Peers: the NumPy float64 reference (``pyce.reference``), PyTorch
(``torch.nn.functional.cross_entropy``, with autograd for the gradient) and JAX
(``jax.jit`` of the same loss), each when importable.

Run ``pyce bench --help`` for the options. Measuring functions and table
formatting are kept apart: ``time_call``, ``measure_floors``, ``measure_memory``,
``measure_scaling`` measure; ``fmt_*``, ``render_table`` and ``*_table`` format.
"""

from __future__ import annotations

from .cli import _json_default, build_parser, main  # noqa: F401
from .console import make_progress, print_report  # noqa: F401
from .environment import _optional, cpu_model, package_version, set_threads, thread_counts, versions  # noqa: F401
from .floors import (  # noqa: F401
    _probe_array,
    bandwidths,
    in_cache_rows,
    measure_exp_throughput,
    measure_floors,
    measure_in_cache,
    stream_probes,
)
from .format import (  # noqa: F401
    Progress,
    Span,
    fmt_gbs,
    fmt_mb,
    fmt_ms,
    fmt_ratio,
    parse_list,
    parse_shape,
    progress_line,
    render_table,
    shape_str,
)
from .memory import (  # noqa: F401
    MEMORY_KINDS,
    _memory_child,
    _proc_status_kb,
    _reset_peak_rss,
    measure_memory,
    memory_kinds,
)
from .ops import (  # noqa: F401
    DEFAULT_DTYPES,
    DEFAULT_SHAPES,
    FLOOR_KIND,
    IN_CACHE_BYTES,
    KNOWN_DTYPES,
    OP_LABEL,
    OPS,
    PEER_OP,
    PEERS,
    QUICK_SHAPES,
    REFERENCE_LIMIT,
    TRAFFIC,
    UNSUPPORTED,
    check_pyce_support,
    make_problem,
    numpy_dtype,
    pyce_op,
)
from .peers import PeerUnavailable, _torch_tensor, available_peers, peer_op  # noqa: F401
from .plot import plot_results  # noqa: F401
from .report import (  # noqa: F401
    format_report,
    header_lines,
    memory_table,
    report_blocks,
    results_table,
    scaling_table,
    table_notes,
)
from .runner import _row, _time_peer, _time_peers, _time_pyce, measure_scaling, run_benchmark  # noqa: F401
from .timing import Timing, time_against_floor, time_call  # noqa: F401

__all__ = ["main"]
