"""pyce.torch against PyTorch's own test material for cross-entropy.

Every OpInfo sample of ``nn.functional.cross_entropy`` and every ModuleInfo
input of ``nn.CrossEntropyLoss`` (``torch.testing._internal``, as the installed
torch ships them) runs through pyce.torch and through PyTorch: same values, same
gradients (for the input, and for probability targets that require grad), and
for ModuleInfo's error inputs the same exception type and message. Samples are
run as given and with their targets detached, so that probability targets
reach pyce's kernel too (PyTorch's samples make them require grad, which only
PyTorch's implementation differentiates). Skipped when torch is not installed.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

# expecttest: a test extra; torch's sample generators import it.
from torch.testing._internal.common_methods_invocations import op_db  # noqa: E402
from torch.testing._internal.common_modules import module_db  # noqa: E402

import pyce.torch as pt  # noqa: E402
from pyce.torch._cross_entropy import kernel_call  # noqa: E402

F = torch.nn.functional
OPINFO = next(op for op in op_db if op.name == "nn.functional.cross_entropy")
MODULEINFO = next(m for m in module_db if m.name == "nn.CrossEntropyLoss")
DTYPES = [torch.float32, torch.float64, torch.bfloat16, torch.float16]
HALF = (torch.bfloat16, torch.float16)


def _ids(dtypes):
    return [str(d).removeprefix("torch.") for d in dtypes]


def _opinfo_samples(dtype):
    return list(OPINFO.sample_inputs("cpu", dtype, requires_grad=True))


def _module_inputs(dtype):
    return MODULEINFO.module_inputs_func(
        MODULEINFO, device="cpu", dtype=dtype, requires_grad=True, training=True
    )


def _upstream(loss, rounded_to):
    """A grad_output that is not all ones for an unreduced loss (rounded to the
    sample's dtype, so that the float64 comparison gets the same values)."""
    if loss.dim() == 0:
        return torch.ones_like(loss)
    values = torch.linspace(-1.0, 2.0, loss.numel(), dtype=torch.float64).reshape(loss.shape)
    return values.to(rounded_to).to(loss.dtype)


def _loss_and_grads(fn, input, target, **kwargs):
    """The loss and the gradients of the input (and of a target that requires grad)."""
    x = input.detach().clone().requires_grad_(True)
    t = target.detach().clone().requires_grad_(target.requires_grad)
    loss = fn(x, t, **kwargs)
    wrt = [x] + ([t] if t.requires_grad else [])
    grads = torch.autograd.grad(loss, wrt, _upstream(loss, rounded_to=input.dtype))
    return loss.detach(), grads


def _exact(input, target, kwargs):
    """PyTorch in float64 on the same values (for 16-bit samples)."""
    kw = {
        k: (v.double() if isinstance(v, torch.Tensor) and v.is_floating_point() else v)
        for k, v in kwargs.items()
    }
    t = target.double() if target.is_floating_point() else target
    x = input.detach().double().requires_grad_(True)
    loss = F.cross_entropy(x, t, **kw)
    (grad,) = torch.autograd.grad(loss, [x], _upstream(loss, rounded_to=input.dtype))
    return loss.detach(), (grad,)


def _assert_16bit_close(ours, exact, dtype):
    """Within two roundings of the 16-bit format of the float64 answer, plus float32
    arithmetic on the largest term (a gradient entry near 0 is a difference of terms up
    to the largest entry's size), or two roundings of a subnormal. pyce computes 16-bit
    logits in float32 and rounds once; PyTorch's own 16-bit path rounds its
    intermediates, and its probability-target gradients can be tens of roundings off,
    so for 16-bit calls on pyce's kernel the float64 answer is the oracle."""
    ulp = 2.0**-8 if dtype == torch.bfloat16 else 2.0**-11
    ours, exact = ours.double(), exact.double()
    float32_error = 2.0**-22 * exact.abs().max()
    subnormal_spacing = torch.finfo(dtype).smallest_normal * torch.finfo(dtype).eps
    bad = (ours - exact).abs() > 2 * ulp * exact.abs() + float32_error + subnormal_spacing
    assert not bad.any(), (ours[bad], exact[bad])


def _compare(ours, theirs, dtype, exact=None):
    """Same dtypes and shapes as PyTorch; values within PyTorch's own tolerances for the
    dtype (assert_close's defaults), or for 16-bit calls on the kernel, of the float64 answer."""
    (loss, grads), (loss_t, grads_t) = ours, theirs
    assert loss.dtype == loss_t.dtype and loss.shape == loss_t.shape
    assert len(grads) == len(grads_t)
    for g, g_t in zip(grads, grads_t):
        assert g.dtype == g_t.dtype and g.shape == g_t.shape
    if exact is None:
        torch.testing.assert_close(loss, loss_t, equal_nan=True)
        for g, g_t in zip(grads, grads_t):
            torch.testing.assert_close(g, g_t, equal_nan=True)
    else:
        _assert_16bit_close(loss, exact[0], dtype)
        for g, g_exact in zip(grads, exact[1]):
            _assert_16bit_close(g, g_exact, dtype)


def _variants(target):
    """The sample as given, and with its target detached (when that changes anything)."""
    yield target
    if target.requires_grad:
        yield target.detach()


def _on_kernel(input, target, kwargs):
    """Whether pyce's kernel takes the call (else PyTorch's implementation does)."""
    return (
        kernel_call(
            input,
            target,
            kwargs.get("weight"),
            kwargs.get("ignore_index", -100),
            kwargs.get("reduction", "mean"),
            kwargs.get("label_smoothing", 0.0),
            0.0,
            None,
        )
        is not None
    )


@pytest.mark.parametrize("dtype", DTYPES, ids=_ids(DTYPES))
def test_opinfo_samples(dtype):
    samples = _opinfo_samples(dtype)
    assert len(samples) >= 20
    on_kernel = 0
    for sample in samples:
        (target,) = sample.args
        for t in _variants(target):
            kw = sample.kwargs
            kernel = _on_kernel(sample.input, t, kw)
            on_kernel += kernel
            ours = _loss_and_grads(pt.cross_entropy, sample.input, t, **kw)
            theirs = _loss_and_grads(F.cross_entropy, sample.input, t, **kw)
            exact = _exact(sample.input, t, kw) if dtype in HALF and kernel else None
            _compare(ours, theirs, dtype, exact)
    # Every sample with a detached target is one pyce's kernel takes.
    assert on_kernel == len(samples)


@pytest.mark.parametrize("dtype", [torch.float64], ids=["float64"])
def test_opinfo_samples_second_order_and_forward_ad(dtype):
    """OpInfo says cross_entropy supports gradgrad and forward AD: so must pyce.torch."""
    for sample in _opinfo_samples(dtype):
        (target,) = sample.args
        t = target.detach()
        x = sample.input.detach().clone().requires_grad_(True)

        def loss(z, t=t, kw=sample.kwargs):
            return pt.cross_entropy(z, t, **kw)

        assert torch.autograd.gradcheck(loss, (x,), check_forward_ad=True, check_batched_grad=False)
        assert torch.autograd.gradgradcheck(loss, (x,), check_fwd_over_rev=False)


@pytest.mark.parametrize("dtype", MODULEINFO.dtypes, ids=_ids(MODULEINFO.dtypes))
def test_moduleinfo_inputs(dtype):
    inputs = _module_inputs(dtype)
    assert len(inputs) >= 100
    for module_input in inputs:
        args, kwargs = module_input.constructor_input.args, module_input.constructor_input.kwargs
        ours_module = pt.CrossEntropyLoss(*args, **kwargs)
        torch_module = torch.nn.CrossEntropyLoss(*args, **kwargs)
        input, target = module_input.forward_input.args
        for t in _variants(target):
            ours = _loss_and_grads(ours_module, input, t)
            theirs = _loss_and_grads(torch_module, input, t)
            kernel = _on_kernel(input, t, kwargs)
            exact = _exact(input, t, kwargs) if dtype in HALF and kernel else None
            _compare(ours, theirs, dtype, exact)
        # ModuleInfo's own reference implementation agrees as well (float32/float64).
        if dtype not in HALF and module_input.reference_fn is not None:
            expected = module_input.reference_fn(torch_module, input.detach(), target.detach())
            torch.testing.assert_close(
                ours_module(input.detach(), target.detach()), expected, check_dtype=False
            )


@pytest.mark.parametrize("dtype", MODULEINFO.dtypes, ids=_ids(MODULEINFO.dtypes))
def test_moduleinfo_error_inputs(dtype):
    errors = list(
        MODULEINFO.module_error_inputs_func(
            MODULEINFO, device="cpu", dtype=dtype, requires_grad=False, training=True
        )
    )
    assert errors
    for error in errors:
        module_input = error.module_error_input
        args = module_input.constructor_input.args
        kwargs = module_input.constructor_input.kwargs
        with pytest.raises(error.error_type, match=error.error_regex):
            pt.CrossEntropyLoss(*args, **kwargs)(*module_input.forward_input.args)
