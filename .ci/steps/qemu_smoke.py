"""Run by .ci/steps/qemu_baseline.sh under qemu -cpu Nehalem: every public function once.

Exits non-zero (or dies with SIGILL) when the dispatch picked anything but
the portable kernels or a result disagrees with pyce.reference.
"""

import sys

import numpy as np

import pyce
from pyce import reference

info = pyce.cpu_info()
assert info["isa"] == "baseline" and info["supported"] == ["baseline"], info
rng = np.random.default_rng(0)
dtypes = [np.float32, np.float64, np.float16]
try:
    import ml_dtypes

    dtypes.append(ml_dtypes.bfloat16)
except ImportError:
    pass

for dtype in dtypes:
    # 2 rows x 5000 classes: several blocks per row, a tail shorter than a vector.
    x = rng.standard_normal((2, 5003)).astype(dtype)
    t = np.array([7, 5002])
    x64 = x.astype(np.float64)
    tol = 1e-12 if dtype == np.float64 else 1e-2 if np.dtype(dtype).itemsize == 2 else 1e-5
    np.testing.assert_allclose(pyce.logsumexp(x), reference.logsumexp(x64), rtol=tol)
    np.testing.assert_allclose(pyce.softmax(x).astype(np.float64), reference.softmax(x64), rtol=tol, atol=tol)
    np.testing.assert_allclose(pyce.cross_entropy(x, t), reference.cross_entropy(x64, t), rtol=tol)
    loss, grad = pyce.cross_entropy_with_grad(x, t, label_smoothing=0.1, weight=np.linspace(1, 2, 5003))
    ref_loss = reference.cross_entropy(x64, t, label_smoothing=0.1, weight=np.linspace(1, 2, 5003))
    np.testing.assert_allclose(loss, ref_loss, rtol=tol)
    assert np.isfinite(grad.astype(np.float64)).all()
    r = pyce.evaluate(x, t)
    np.testing.assert_allclose(r.loss, reference.cross_entropy(x64, t), rtol=tol)
    np.testing.assert_allclose(pyce.entropy(x), reference.entropy(x64), rtol=max(tol, 1e-4))
    pyce.kl_divergence_with_grad(x, x[::-1].copy(), temperature=2.0)
    pyce.focal_loss_with_grad(x, t)
print(f"qemu smoke: {info['isa']} on {sys.platform}, {len(dtypes)} dtypes: ok")
