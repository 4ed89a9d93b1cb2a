"""A fork()ed child works after its parent ran multithreaded calls (issue 14, item 4).

Before the fix the child's first multithreaded call waited forever for
OpenMP worker threads that fork had not copied. Each child here runs in a
fresh interpreter (so the parent's own thread team is certain to exist) and
under a timeout, so that a deadlock fails the test instead of hanging it.
"""

import os
import signal
import subprocess
import sys
import tempfile
import textwrap

import pytest

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() is POSIX-only")

# A call large enough to start the OpenMP team (and, with the default
# spin window, to run on several threads).
_PARENT = textwrap.dedent("""
    import os, sys
    import numpy as np
    import pyce

    pyce.set_num_threads(2)
    x = np.random.default_rng(0).standard_normal((512, 4096)).astype(np.float32)
    t = np.arange(512) % 4096
    expected = float(pyce.cross_entropy(x, t))
    for _ in range(3):
        pyce.cross_entropy_with_grad(x, t)

    def child_work():
        # The same large, multithreaded-sized calls in the child.
        assert pyce.get_num_threads() == 1, pyce.get_num_threads()
        assert pyce.cpu_info()["forked_child"]
        got = float(pyce.cross_entropy(x, t))
        loss, grad = pyce.cross_entropy_with_grad(x, t)
        assert got == expected and float(loss) == expected, (got, expected)
        return got
""")

_BARE_FORK = _PARENT + textwrap.dedent("""
    pid = os.fork()
    if pid == 0:
        try:
            child_work()
            try:
                pyce.set_num_threads(2)
            except ValueError as e:
                assert "fork" in str(e), e
            else:
                raise AssertionError("set_num_threads(2) was accepted in a forked child")
        except BaseException as e:
            print("child failed:", repr(e), flush=True)
            os._exit(1)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0, status
    # The parent keeps its threads.
    assert pyce.get_num_threads() == 2 and not pyce.cpu_info()["forked_child"]
    assert float(pyce.cross_entropy(x, t)) == expected
    print("ok")
""")

_MULTIPROCESSING = _PARENT + textwrap.dedent("""
    import multiprocessing as mp

    def work(_):
        return child_work()

    if __name__ == "__main__":
        with mp.get_context("fork").Pool(2) as pool:
            results = pool.map(work, range(4))
        assert results == [expected] * 4, results
        print("ok")
""")


@pytest.mark.parametrize("script", [_BARE_FORK, _MULTIPROCESSING], ids=["os.fork", "multiprocessing-fork"])
def test_forked_child_computes(script):
    # Its own session, so that a deadlocked child (and its children) can be
    # ended as a group when the timeout fails the test.
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        cwd=tempfile.gettempdir(),
    )
    try:
        output, _ = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        pytest.fail(f"the forked child deadlocked (no answer in 120 s):\n{output}")
    assert proc.returncode == 0, output
    assert output.strip().endswith("ok")
