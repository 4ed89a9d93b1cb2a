"""examples/vocab_parallel_head.py under torchrun: 2 processes print the loss curve of 1."""

import pathlib
import re
import socket
import subprocess
import sys
import tempfile

import pytest

pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")
if not dist.is_available() or not dist.is_gloo_available():
    pytest.skip("torch.distributed with gloo is not available", allow_module_level=True)

EXAMPLE = pathlib.Path(__file__).resolve().parents[1] / "examples" / "vocab_parallel_head.py"
ARGS = ["--vocab", "1003", "--dim", "16", "--batch", "128", "--steps", "4"]


def _losses(output):
    return [float(v) for v in re.findall(r"^step +\d+ +loss ([0-9.]+)$", output, flags=re.M)]


def _run(command):
    done = subprocess.run(command, capture_output=True, text=True, timeout=180, cwd=tempfile.gettempdir())
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_two_processes_print_the_loss_curve_of_one():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    one = _run([sys.executable, str(EXAMPLE)] + ARGS)
    two = _run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node=2",
            f"--master_port={port}",
            str(EXAMPLE),
        ]
        + ARGS
    )
    assert "split as [502, 501]" in two
    curve_one, curve_two = _losses(one), _losses(two)
    assert len(curve_one) == 4 and len(curve_two) == 4
    assert curve_one == pytest.approx(curve_two, rel=1e-6)
    assert curve_one[-1] < curve_one[0]  # it learns
