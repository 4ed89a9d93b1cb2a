"""pyce.torch: the drop-in for torch.nn.functional.cross_entropy / nn.CrossEntropyLoss.

Skipped as a whole when PyTorch is not installed.
"""

from __future__ import annotations

import itertools
import zlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)  # tiny problems: keep torch's pool out of pyce's way

import pyce.torch as pt  # noqa: E402
from pyce.torch._composite import torch_cross_entropy  # noqa: E402
from pyce.torch._tensors import as_numpy, from_numpy  # noqa: E402

from _helpers import EPS32, load_reference  # noqa: E402

F = torch.nn.functional
ref = load_reference()

LAYOUTS = {
    "nc": (8, 11),
    "ncd": (2, 5, 3, 4),  # (N, C, d1, d2): class dim 1, not innermost
    "unbatched": (17,),
    "big-vocab": (3, 4099),
}
TORCH_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def make(layout, dtype, *, weight, ignore, smoothing, soft, seed=0):
    shape = LAYOUTS[layout]
    g = torch.Generator().manual_seed(
        zlib.crc32(repr((layout, weight, ignore, smoothing, soft, seed)).encode())
    )
    x = (torch.randn(shape, generator=g, dtype=torch.float64) * 2).to(dtype)
    cdim = 0 if len(shape) == 1 else 1
    C = shape[cdim]
    tshape = shape[:cdim] + shape[cdim + 1 :]
    if soft:
        p = torch.rand(shape, generator=g, dtype=torch.float64) ** 3 + 1e-3
        t = (p / p.sum(dim=cdim, keepdim=True)).to(dtype)
    else:
        t = torch.randint(0, C, tshape, generator=g)
        if ignore and t.numel() > 1:
            mask = torch.rand(tshape, generator=g) < 0.3
            mask.view(-1)[0] = False
            t[mask] = -100
    w = (torch.rand(C, generator=g, dtype=torch.float64) * 1.5 + 0.25).to(dtype) if weight else None
    return x, t, w


def tol(dtype, x):
    scale = 1 + x.abs().max().item()
    if dtype == torch.float64:
        return dict(rtol=1e-12, atol=1e-14 * scale), dict(rtol=1e-12, atol=1e-14 * scale)
    return dict(rtol=4e-6, atol=8 * EPS32 * scale), dict(rtol=2e-5, atol=2e-6)


def run(fn, x, t, w, reduction, **kw):
    """Loss and gradient (with a random upstream gradient for 'none') through autograd."""
    x = x.detach().clone().requires_grad_(True)
    loss = fn(x, t, weight=w, reduction=reduction, **kw)
    g = (
        torch.linspace(-1, 2, loss.numel(), dtype=loss.dtype).reshape(loss.shape)
        if reduction == "none"
        else None
    )
    loss.backward(g)
    return loss.detach(), x.grad


def _cases():
    for layout, weight, ignore, smoothing, soft, dname in itertools.product(
        LAYOUTS, [False, True], [False, True], [0.0, 0.2], [False, True], TORCH_DTYPES
    ):
        if soft and ignore:
            continue
        yield pytest.param(
            layout,
            weight,
            ignore,
            smoothing,
            soft,
            dname,
            id=f"{layout}-w{int(weight)}-i{int(ignore)}-s{smoothing}-soft{int(soft)}-{dname}",
        )


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("layout,weight,ignore,smoothing,soft,dname", list(_cases()))
def test_matches_torch(layout, weight, ignore, smoothing, soft, dname, reduction):
    dtype = TORCH_DTYPES[dname]
    x, t, w = make(layout, dtype, weight=weight, ignore=ignore, smoothing=smoothing, soft=soft)
    kw = dict(label_smoothing=smoothing)
    loss, grad = run(pt.cross_entropy, x, t, w, reduction, **kw)
    loss_t, grad_t = run(F.cross_entropy, x, t, w, reduction, **kw)
    assert loss.dtype == dtype and loss.shape == loss_t.shape
    assert grad.dtype == dtype and grad.shape == x.shape
    ltol, gtol = tol(dtype, x)
    torch.testing.assert_close(loss, loss_t, **ltol, equal_nan=True)
    torch.testing.assert_close(grad, grad_t, **gtol, equal_nan=True)


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("z_loss,softcap", [(1e-2, None), (0.0, 3.0), (5e-3, 2.5)])
def test_z_loss_and_softcap(layout, reduction, z_loss, softcap):
    """pyce's kernel against the torch composite (and the NumPy reference)."""
    for weight, ignore, soft in [(False, False, False), (True, True, False), (False, False, True)]:
        x, t, w = make(layout, torch.float64, weight=weight, ignore=ignore, smoothing=0.1, soft=soft)
        kw = dict(label_smoothing=0.1, z_loss=z_loss, softcap=softcap, ignore_index=-100)
        loss, grad = run(pt.cross_entropy, x, t, w, reduction, **kw)
        loss_t, grad_t = run(torch_cross_entropy, x, t, w, reduction, **kw)
        torch.testing.assert_close(loss, loss_t, rtol=1e-12, atol=1e-13)
        torch.testing.assert_close(grad, grad_t, rtol=1e-12, atol=1e-13)
        axis = 0 if x.dim() == 1 else 1
        expected = ref.cross_entropy(
            x.numpy(),
            t.numpy(),
            axis=axis,
            weight=None if w is None else w.numpy(),
            reduction=reduction,
            label_smoothing=0.1,
            z_loss=z_loss,
            softcap=softcap,
        )
        np.testing.assert_allclose(loss.numpy(), expected, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"label_smoothing": 0.3},
        {"z_loss": 0.05},
        {"softcap": 1.5},
        {"z_loss": 0.02, "softcap": 2.0, "label_smoothing": 0.1},
    ],
    ids=str,
)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_gradcheck(kw, reduction):
    g = torch.Generator().manual_seed(3)
    x = (torch.randn(4, 6, 3, generator=g, dtype=torch.float64) * 2).requires_grad_(True)
    t = torch.randint(0, 6, (4, 3), generator=g)
    t[0, 1] = -100
    w = torch.rand(6, generator=g, dtype=torch.float64) + 0.5
    assert torch.autograd.gradcheck(
        lambda z: pt.cross_entropy(z, t, weight=w, reduction=reduction, **kw), (x,), eps=1e-6, atol=1e-7
    )
    p = torch.softmax(torch.randn(5, 7, generator=g, dtype=torch.float64), dim=1)
    y = torch.randn(5, 7, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda z: pt.cross_entropy(z, p, reduction=reduction, **kw), (y,), eps=1e-6, atol=1e-7
    )


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("layout", ["nc", "ncd", "big-vocab"])
def test_16bit_tensors(dtype, layout):
    pytest.importorskip("ml_dtypes")
    x, t, w = make(layout, dtype, weight=False, ignore=True, smoothing=0.0, soft=False)
    loss, grad = run(pt.cross_entropy, x, t, None, "mean")
    assert loss.dtype == dtype and grad.dtype == dtype
    # PyTorch in float32 on the same 16-bit values: pyce computes 16-bit logits in float32.
    loss32, grad32 = run(F.cross_entropy, x.float(), t, None, "mean")
    torch.testing.assert_close(loss.float(), loss32.to(dtype).float(), rtol=0, atol=0)
    ulp = 2.0**-7 if dtype == torch.bfloat16 else 2.0**-10
    assert torch.all((grad.float() - grad32).abs() <= ulp * grad32.abs() + 2.0**-20)


def test_zero_copy_views():
    x = torch.randn(4, 5)
    assert as_numpy(x).__array_interface__["data"][0] == x.data_ptr()
    pytest.importorskip("ml_dtypes")
    b = x.to(torch.bfloat16)
    v = as_numpy(b)
    assert v.__array_interface__["data"][0] == b.data_ptr() and v.dtype.name == "bfloat16"
    np.testing.assert_array_equal(v.astype(np.float32), b.float().numpy())
    back = from_numpy(v, torch.bfloat16)
    assert back.data_ptr() == b.data_ptr() and torch.equal(back, b)


def test_grad_output_scaling_and_no_grad():
    x, t, _ = make("nc", torch.float64, weight=False, ignore=False, smoothing=0.0, soft=False)
    a = x.clone().requires_grad_(True)
    (3.0 * pt.cross_entropy(a, t)).backward()
    b = x.clone().requires_grad_(True)
    (3.0 * F.cross_entropy(b, t)).backward()
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-12, atol=1e-14)
    with torch.no_grad():
        loss = pt.cross_entropy(x, t)
    assert not loss.requires_grad
    torch.testing.assert_close(loss, F.cross_entropy(x, t), rtol=1e-12, atol=0)
    # Non-contiguous input (a transposed view) and a second use of the graph input.
    y = torch.randn(11, 8, dtype=torch.float64).t().requires_grad_(False)
    z = y.clone().requires_grad_(True)
    loss = pt.cross_entropy(z.t().t(), t) + pt.cross_entropy(z, t, reduction="sum")
    loss.backward()
    z2 = y.clone().requires_grad_(True)
    (F.cross_entropy(z2, t) + F.cross_entropy(z2, t, reduction="sum")).backward()
    torch.testing.assert_close(z.grad, z2.grad, rtol=1e-12, atol=1e-14)


def test_falls_back_to_torch():
    # A tensor on another device (meta: shapes only) goes to PyTorch.
    x = torch.randn(4, 5, device="meta", requires_grad=True)
    t = torch.zeros(4, dtype=torch.long, device="meta")
    loss = pt.cross_entropy(x, t, z_loss=0.1, softcap=2.0)
    assert loss.device.type == "meta" and loss.shape == ()
    # Probability targets that need a gradient: PyTorch's path, gradients for both.
    x = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    p = torch.softmax(torch.randn(6, 4, dtype=torch.float64), dim=1).requires_grad_(True)
    pt.cross_entropy(x, p).backward()
    x2 = x.detach().clone().requires_grad_(True)
    p2 = p.detach().clone().requires_grad_(True)
    F.cross_entropy(x2, p2).backward()
    torch.testing.assert_close(p.grad, p2.grad, rtol=0, atol=0)
    torch.testing.assert_close(x.grad, x2.grad, rtol=0, atol=0)
    # A weight that needs a gradient: PyTorch's path, and PyTorch's error.
    w = torch.rand(4, dtype=torch.float64, requires_grad=True)
    with pytest.raises(RuntimeError, match="weight"):
        pt.cross_entropy(x, torch.randint(0, 4, (6,)), weight=w)
    # An integer "logits" dtype is PyTorch's to reject.
    with pytest.raises(RuntimeError):
        pt.cross_entropy(torch.zeros(3, 4, dtype=torch.long), torch.zeros(3, dtype=torch.long))


def test_module():
    w = torch.rand(10, dtype=torch.float64) + 0.5
    crit = pt.CrossEntropyLoss(weight=w, label_smoothing=0.1, z_loss=1e-3, softcap=30.0)
    assert "z_loss=0.001" in repr(crit) and "softcap=30.0" in repr(crit)
    assert isinstance(crit, torch.nn.Module) and torch.equal(crit.weight, w)
    assert "weight" in dict(crit.named_buffers())
    x = torch.randn(7, 10, dtype=torch.float64, requires_grad=True)
    t = torch.randint(0, 10, (7,))
    loss = crit(x, t)
    loss.backward()
    expected = torch_cross_entropy(
        x.detach(), t, weight=w, label_smoothing=0.1, z_loss=1e-3, softcap=30.0, reduction="mean"
    )
    torch.testing.assert_close(loss.detach(), expected, rtol=1e-12, atol=0)
    plain = pt.CrossEntropyLoss()
    torch.testing.assert_close(plain(x, t), F.cross_entropy(x, t), rtol=1e-12, atol=0)


def test_errors():
    x = torch.randn(3, 4)
    with pytest.raises(ValueError, match="avg is not a valid value for reduction"):
        pt.cross_entropy(x, torch.zeros(3, dtype=torch.long), reduction="avg")
    with pytest.raises(ValueError, match="softcap"):
        pt.cross_entropy(x, torch.zeros(3, dtype=torch.long), softcap=0.0)
    with pytest.raises(IndexError, match="target 9 at position 1"):
        pt.cross_entropy(x, torch.tensor([0, 9, 1]))
    with pytest.raises(ValueError, match="batch_size"):
        pt.cross_entropy(x, torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="reduction"):
        pt.CrossEntropyLoss(reduction="batchmean")


# Issue 14 item 10: pyce.torch raises what PyTorch raises, accepts what it accepts.
_X = torch.randn(2, 3, generator=torch.Generator().manual_seed(1))
_T = torch.tensor([0, 2])
_P = _X.softmax(dim=1)
REJECTED = {
    "index target of the logits' shape": (_X, torch.zeros(2, 3, dtype=torch.long), {}),
    "float target of another shape": (_X, torch.zeros(2), {}),
    "batch size mismatch": (_X, torch.tensor([0, 1, 2]), {}),
    "weight of the wrong length": (_X, _T, {"weight": torch.ones(2)}),
    "2-D weight": (_X, _T, {"weight": torch.ones(1, 3)}),
    "float64 weight, float32 input": (_X, _T, {"weight": torch.ones(3, dtype=torch.float64)}),
    "int64 weight": (_X, _T, {"weight": torch.ones(3, dtype=torch.long)}),
    "bfloat16 weight, float32 input": (_X, _T, {"weight": torch.ones(3, dtype=torch.bfloat16)}),
    "float32 weight, bfloat16 input": (_X.bfloat16(), _T, {"weight": torch.ones(3)}),
    "ignore_index with probabilities": (_X, _P, {"ignore_index": 1}),
    "label_smoothing 1.5": (_X, _T, {"label_smoothing": 1.5}),
    "label_smoothing a string": (_X, _T, {"label_smoothing": "0.1"}),
    "target spatial size": (torch.randn(2, 3, 5), torch.zeros(2, 4, dtype=torch.long), {}),
    "int32 target": (_X, _T.int(), {}),
    "int16 target": (_X, _T.short(), {}),
    "bool target": (_X, _T.bool(), {}),
    "target out of range": (_X, torch.tensor([0, 9]), {}),
    "negative target": (_X, torch.tensor([0, -5]), {}),
    "no classes, a target": (torch.randn(2, 0), torch.zeros(2, dtype=torch.long), {}),
    "ignore_index beyond int64": (_X, _T, {"ignore_index": 2**63}),
    "ignore_index a float": (_X, _T, {"ignore_index": 1.0}),
    "reduction None": (_X, _T, {"reduction": None}),
    "target a list": (_X, [0, 2], {}),
    "input an ndarray": (_X.numpy(), _T, {}),
}


@pytest.mark.parametrize("case", list(REJECTED))
def test_raises_what_pytorch_raises(case):
    input, target, kw = REJECTED[case]
    with pytest.raises(Exception) as expected:
        F.cross_entropy(input, target, **kw)
    with pytest.raises(Exception) as got:
        pt.cross_entropy(input, target, **kw)
    assert isinstance(got.value, expected.type), (got.value, expected.value)
    if not isinstance(got.value, IndexError):  # pyce's IndexError names the position too
        assert str(got.value) == str(expected.value)


ACCEPTED = {
    "no classes, all ignored": (torch.randn(2, 0), torch.full((2,), -100), {}),
    "no classes, probabilities": (torch.randn(2, 0), torch.randn(2, 0), {}),
    "no classes, probabilities, none": (torch.randn(2, 0), torch.randn(2, 0), {"reduction": "none"}),
    "no rows": (torch.randn(0, 3), torch.zeros(0, dtype=torch.long), {}),
    "uint8 target": (_X, _T.to(torch.uint8), {}),
    "negative label_smoothing": (_X, _T, {"label_smoothing": -0.1}),
    "label_smoothing a tensor": (_X, _T, {"label_smoothing": torch.tensor(0.1)}),
    "unbatched input, 1-element target": (torch.randn(3), torch.tensor([1]), {}),
    "float64 probabilities, float32 input": (_X, _P.double(), {}),
    "bfloat16 probabilities, float32 input": (_X, _P.bfloat16(), {}),
    "bfloat16 input and weight": (_X.bfloat16(), _T, {"weight": torch.tensor([0.5, 2.0, 1.5]).bfloat16()}),
    "float16 input and weight": (_X.half(), _T, {"weight": torch.tensor([0.5, 2.0, 1.5]).half()}),
}


@pytest.mark.parametrize("case", list(ACCEPTED))
def test_accepts_what_pytorch_accepts(case):
    input, target, kw = ACCEPTED[case]
    expected = F.cross_entropy(input, target, **kw)
    got = pt.cross_entropy(input, target, **kw)
    assert got.dtype == expected.dtype and got.shape == expected.shape
    if input.dtype in (torch.bfloat16, torch.float16):  # pyce computes in float32, rounds once
        float32 = {k: (v.float() if isinstance(v, torch.Tensor) else v) for k, v in kw.items()}
        expected = F.cross_entropy(input.float(), target, **float32).to(input.dtype)
    torch.testing.assert_close(got, expected, equal_nan=True)


def test_bfloat16_class_weights():
    """Issue 14 item 9: a bfloat16 model's weighted loss, on pyce's kernel, with its gradient."""
    pytest.importorskip("ml_dtypes")
    g = torch.Generator().manual_seed(5)
    x = (torch.randn(16, 9, generator=g) * 3).bfloat16()
    t = torch.randint(0, 9, (16,), generator=g)
    t[3] = -100
    w = (torch.rand(9, generator=g) + 0.5).bfloat16()
    upstream = torch.linspace(-1, 2, 16).bfloat16()  # bfloat16 values, the same for both
    for reduction in ["mean", "sum", "none"]:
        results = []
        for xx, ww in [(x, w), (x.float(), w.float())]:
            z = xx.clone().requires_grad_(True)
            loss = (pt.cross_entropy if xx.dtype == torch.bfloat16 else F.cross_entropy)(
                z, t, weight=ww, reduction=reduction, label_smoothing=0.1
            )
            loss.backward(upstream.to(loss.dtype) if reduction == "none" else None)
            results.append((loss.detach(), z.grad))
        (loss, grad), (loss32, grad32) = results
        assert loss.dtype == grad.dtype == torch.bfloat16
        torch.testing.assert_close(loss, loss32.bfloat16(), rtol=2.0**-8, atol=0)
        assert torch.all((grad.float() - grad32).abs() <= 2.0**-8 * grad32.abs() + 2.0**-24)
    with pytest.raises(RuntimeError, match="expected scalar type BFloat16 but found Float"):
        pt.cross_entropy(x, t, weight=w.float())


def test_z_loss_and_softcap_errors_name_them():
    """Issue 14 item 15: pyce's own options say what is wrong with them."""
    with pytest.raises(TypeError, match="z_loss must be a number >= 0, got None"):
        pt.cross_entropy(_X, _T, z_loss=None)
    with pytest.raises(ValueError, match="z_loss must be a finite number >= 0, got -1"):
        pt.cross_entropy(_X, _T, z_loss=-1)
    with pytest.raises(TypeError, match="softcap must be None or a number > 0"):
        pt.cross_entropy(_X, _T, softcap="big")
    with pytest.raises(TypeError, match="z_loss must be a number >= 0, got None"):
        pt.CrossEntropyLoss(z_loss=None)


# Issue 14 item 12: second derivatives and forward-mode AD.
@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"label_smoothing": 0.2},
        {"z_loss": 0.05, "softcap": 2.0, "label_smoothing": 0.1},
    ],
    ids=str,
)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_gradgradcheck(kw, reduction):
    g = torch.Generator().manual_seed(4)
    x = (torch.randn(3, 5, 2, generator=g, dtype=torch.float64) * 2).requires_grad_(True)
    t = torch.randint(0, 5, (3, 2), generator=g)
    t[1, 0] = -100
    w = torch.rand(5, generator=g, dtype=torch.float64) + 0.5
    assert torch.autograd.gradgradcheck(
        lambda z: pt.cross_entropy(z, t, weight=w, reduction=reduction, **kw), (x,)
    )
    p = torch.softmax(torch.randn(4, 6, generator=g, dtype=torch.float64), dim=1)
    y = torch.randn(4, 6, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda z: pt.cross_entropy(z, p, reduction=reduction, **kw), (y,))


def test_create_graph_gives_a_differentiable_gradient():
    x = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    t = torch.randint(0, 4, (6,))
    (grad,) = torch.autograd.grad(pt.cross_entropy(x, t), x, create_graph=True)
    (grad_t,) = torch.autograd.grad(F.cross_entropy(x, t), x, create_graph=True)
    assert grad.grad_fn is not None
    v = torch.randn(6, 4, dtype=torch.float64)
    (hvp,) = torch.autograd.grad((grad * v).sum(), x)
    (hvp_t,) = torch.autograd.grad((grad_t * v).sum(), x)
    torch.testing.assert_close(hvp, hvp_t, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("layout", ["nc", "ncd", "unbatched"])
def test_forward_mode_ad(layout, reduction):
    fwAD = torch.autograd.forward_ad
    x, t, w = make(layout, torch.float64, weight=True, ignore=True, smoothing=0.1, soft=False)
    v = torch.randn_like(x)
    results = []
    for fn in (pt.cross_entropy, F.cross_entropy):
        with fwAD.dual_level():
            out = fn(fwAD.make_dual(x, v), t, weight=w, reduction=reduction, label_smoothing=0.1)
            primal, tangent = fwAD.unpack_dual(out)
            results.append((primal.clone(), tangent.clone()))
    (p, d), (p_t, d_t) = results
    torch.testing.assert_close(p, p_t, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(d, d_t, rtol=1e-12, atol=1e-14)

    # torch.func's transforms too (jvp, and grad composed with them).
    def loss(z):
        return pt.cross_entropy(z, t, weight=w, reduction=reduction)

    def loss_t(z):
        return F.cross_entropy(z, t, weight=w, reduction=reduction)

    for a, b in zip(torch.func.jvp(loss, (x,), (v,)), torch.func.jvp(loss_t, (x,), (v,))):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    assert torch.autograd.gradcheck(
        loss, (x.clone().requires_grad_(True),), check_forward_ad=True, check_batched_grad=False
    )


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_forward_and_reverse_mode_together(reduction):
    """A dual input that also requires grad: the tangent and then backward."""
    fwAD = torch.autograd.forward_ad
    x, t, _ = make("nc", torch.float64, weight=False, ignore=True, smoothing=0.0, soft=False)
    v = torch.randn_like(x)
    grads, tangents = [], []
    for fn in (pt.cross_entropy, F.cross_entropy):
        z = x.clone().requires_grad_(True)
        with fwAD.dual_level():
            out = fn(fwAD.make_dual(z, v), t, reduction=reduction)
            tangents.append(fwAD.unpack_dual(out).tangent.clone())
            upstream = torch.linspace(-1, 2, out.numel(), dtype=out.dtype).reshape(out.shape)
            out.backward(upstream)
        grads.append(z.grad)
    torch.testing.assert_close(tangents[0], tangents[1], rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-12, atol=1e-14)


def test_retained_graph_and_in_place_changes():
    x, t, _ = make("nc", torch.float64, weight=False, ignore=False, smoothing=0.0, soft=False)
    a = x.clone().requires_grad_(True)
    loss = pt.cross_entropy(a, t)
    loss.backward(retain_graph=True)
    loss.backward()  # the saved gradient went to the first; the second recomputes it
    b = x.clone().requires_grad_(True)
    F.cross_entropy(b, t).backward()
    torch.testing.assert_close(a.grad, 2 * b.grad, rtol=1e-12, atol=1e-14)
    with pytest.raises(RuntimeError, match="second time"):
        loss.backward()
    # Changing the logits in place after a reduced loss is fine, as it is for PyTorch's.
    c = x.clone().requires_grad_(True)
    logits = c * 1.0
    loss = pt.cross_entropy(logits, t)
    with torch.no_grad():
        logits.mul_(0.0)
    loss.backward()
    torch.testing.assert_close(c.grad, b.grad, rtol=1e-12, atol=1e-14)


def test_class_dim_1_reaches_the_numpy_api_as_a_view(monkeypatch):
    """An (N, C, d1, d2) tensor goes to pyce as a zero-copy view with axis=1 (no movedim
    and copy here): the NumPy API's strided-axis path sees the tensor's own memory."""
    import pyce._cross_entropy as numpy_api

    seen = []
    original = numpy_api.cross_entropy_with_grad

    def spy(logits, target, **kwargs):
        seen.append((logits.__array_interface__["data"][0], logits.shape, kwargs["axis"]))
        return original(logits, target, **kwargs)

    monkeypatch.setattr(numpy_api, "cross_entropy_with_grad", spy)
    x, t, _ = make("ncd", torch.float32, weight=False, ignore=True, smoothing=0.1, soft=False)
    x.requires_grad_(True)
    pt.cross_entropy(x, t, label_smoothing=0.1).backward()
    assert seen == [(x.data_ptr(), tuple(x.shape), 1)]


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_nothing_logits_sized_outlives_backward(reduction):
    """After backward (the loss still alive) the graph holds neither the logits, nor
    probability targets, nor a saved gradient, as PyTorch's own graph holds nothing."""
    import gc
    import weakref

    z = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    logits = z * 2.0
    p = torch.softmax(torch.randn(6, 5, dtype=torch.float64), dim=1)
    loss = pt.cross_entropy(logits, p, reduction=reduction)
    refs = [weakref.ref(logits), weakref.ref(p)]
    del logits, p
    loss.backward(torch.ones_like(loss))
    gc.collect()
    assert [r() for r in refs] == [None, None]
    assert loss.grad_fn.call.arrays is None and loss.grad_fn.grad is None


def test_plain_rows_shortcut_takes_only_what_kernel_call_would_take_alike():
    """plain_rows_call, the few-checks shortcut of the commonest call, makes the call
    kernel_call makes for (N, C) float32/float64 logits, int64 class indices and no
    option but ignore_index and a reduction; for anything else it declines (None) and
    kernel_call decides. Its loss and gradient are the NumPy API's, bit for bit."""
    import pyce
    from pyce.torch._cross_entropy import kernel_call, plain_rows_call

    def both(x, t, weight=None, ignore_index=-100, reduction="mean", smoothing=0.0):
        args = (x, t, weight, ignore_index, reduction, smoothing, 0.0, None)
        return plain_rows_call(*args), kernel_call(*args)

    x = torch.randn(64, 10, requires_grad=True)
    t = torch.randint(0, 10, (64,))
    for dtype in (torch.float32, torch.float64):
        for reduction in ("mean", "sum"):
            xd = x.detach().to(dtype).requires_grad_(True)
            plain, general = both(xd, t, ignore_index=3, reduction=reduction)
            assert plain is not None and plain.plain_rows and general.plain_rows
            for name in (
                "dtype",
                "axis",
                "ignore_index",
                "reduction",
                "label_smoothing",
                "z_loss",
                "softcap",
            ):
                assert getattr(plain, name) == getattr(general, name), name
            loss = pt.cross_entropy(xd, t, ignore_index=3, reduction=reduction)
            loss.backward()
            want_loss, want_grad = pyce.cross_entropy_with_grad(
                xd.detach().numpy(), t.numpy(), ignore_index=3, reduction=reduction
            )
            assert loss.item() == float(want_loss) and loss.dtype is dtype
            np.testing.assert_array_equal(xd.grad.numpy(), want_grad)
    declined = {
        "class weights": both(x, t, weight=torch.ones(10)),
        "label smoothing": both(x, t, smoothing=0.1),
        "unreduced": both(x, t, reduction="none"),
        "NumPy integer ignore_index": both(x, t, ignore_index=np.int64(-100)),
        "bfloat16": both(x.detach().bfloat16(), t),
        "transposed logits": both(torch.randn(10, 64).t(), t),
        "strided target": both(x, torch.randint(0, 10, (128,))[::2]),
        "uint8 target": both(x, t.to(torch.uint8)),
        "(N, C, d) logits": both(torch.randn(4, 10, 3), torch.randint(0, 10, (4, 3))),
        "no classes": both(torch.randn(4, 0), torch.zeros(4, dtype=torch.long)),
        "target of another length": both(x, t[:10]),
    }
    for what, (plain, _general) in declined.items():
        assert plain is None, what
