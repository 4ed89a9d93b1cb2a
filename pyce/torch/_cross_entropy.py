"""pyce.torch.cross_entropy and CrossEntropyLoss: PyTorch's cross-entropy on pyce's kernel.

A call goes to pyce's fused kernel when it is one PyTorch accepts and the
kernel computes (``kernel_call`` below checks that with a few attribute
tests); every other call -- another device or dtype, a target or weight that
needs a gradient, an input PyTorch rejects, a torch.func transform -- is
PyTorch's own ``F.cross_entropy`` (``_composite``), so its result or its
error is exactly PyTorch's.

On the kernel's path the forward pass of a reduced loss computes the loss and
the gradient in one read of the logits, and backward only scales that gradient
by grad_output; an unreduced loss's gradient is computed in backward, with its
per-row grad_output, in one pass.
Second derivatives (``create_graph=True``) differentiate PyTorch's own
formula at the saved input, and forward-mode AD uses the saved gradient.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.autograd import forward_ad

from .. import _core
from .. import _cross_entropy as numpy_api
from .._cache import CACHE_MIN_BYTES, empty_output
from .._validation import REDUCTIONS, check_softcap, check_z_loss
from ._composite import torch_cross_entropy
from ._tensors import HALF_DTYPES, KERNEL_DTYPES, as_numpy, from_numpy

__all__ = ["CrossEntropyLoss", "cross_entropy"]

_TENSOR_TYPES = (torch.Tensor, torch.nn.Parameter)  # not subclasses that override torch functions
_INDEX_DTYPES = (torch.int64, torch.uint8)  # PyTorch's "Long or Byte" class-index targets
_REDUCTIONS = ("none", "mean", "sum")
_INT64 = (-(2**63), 2**63 - 1)
_GRAD_OUTPUT_ONE = np.ones(1)  # the kernel's grad_output for a reduced loss's fused pass
_GRAD_OUTPUT_ONE.flags.writeable = False


class KernelCall:
    """A cross-entropy call that PyTorch accepts and pyce's kernel computes.

    Holds the tensors and their NumPy views (``arrays``) until the forward pass is
    done (``release``: nothing logits-sized outlives it through this object), and
    the options.
    """

    __slots__ = (
        "arrays",
        "axis",
        "dtype",
        "ignore_index",
        "label_smoothing",
        "plain_rows",
        "reduced",
        "reduction",
        "softcap",
        "target",
        "weight",
        "z_loss",
    )

    def __init__(
        self,
        arrays,
        target,
        weight,
        dtype,
        axis,
        ignore_index,
        reduction,
        label_smoothing,
        z_loss,
        softcap,
        plain_rows,
    ):
        self.arrays = arrays
        self.target = target
        self.weight = weight
        self.dtype = dtype
        self.axis = axis
        self.ignore_index = ignore_index
        self.reduction = reduction
        self.reduced = reduction != "none"
        self.label_smoothing = label_smoothing
        self.z_loss = z_loss
        self.softcap = softcap
        # (rows, C) logits, int64 class indices and no option but ignore_index and the
        # reduction: kernel_call has checked all the NumPy API would, so the call goes
        # straight to the kernel (at 64 x 10 a loss step is all Python).
        self.plain_rows = plain_rows

    def arrays_of(self, input, target, weight):
        return _arrays_of(input, target, weight, self.dtype)

    def release(self):
        """Drop the tensors and their views once the forward pass is done (backward
        gets them from saved_tensors, which autograd frees after it)."""
        self.arrays = self.target = self.weight = None

    def options(self):
        """The options as the NumPy API's keyword arguments."""
        return {
            "axis": self.axis,
            "ignore_index": self.ignore_index,
            "reduction": self.reduction,
            "label_smoothing": self.label_smoothing,
            "z_loss": self.z_loss,
            "softcap": self.softcap,
            "weight": self.arrays[2],
        }

    def loss_tensor(self, loss):
        """The kernel's loss (a number or an array, float32 for 16-bit input) as PyTorch
        returns it: a tensor of the input's dtype."""
        if type(loss) is float:  # a reduced loss from the kernel, computed in float64
            loss = np.array(loss, dtype=np.float64 if self.dtype is torch.float64 else np.float32)
        out = torch.from_numpy(np.asarray(loss))  # a 0-d array for a scalar: the cheapest tensor
        return out if out.dtype is self.dtype else out.to(self.dtype)

    def loss(self):
        x, t, _ = self.arrays
        if self.plain_rows:
            return self.loss_tensor(
                _core.cross_entropy(
                    x,
                    t,
                    None,
                    None,
                    self.ignore_index,
                    0.0,
                    REDUCTIONS[self.reduction],
                    None,
                    None,
                    0.0,
                    False,
                    0.0,
                )
            )
        return self.loss_tensor(numpy_api.cross_entropy(x, t, **self.options()))

    def loss_and_grad(self, input):
        x, t, _ = self.arrays
        if self.plain_rows and self.reduced:
            grad_tensor, grad = self.gradient_buffer(input, x)
            loss = _core.cross_entropy(
                x,
                t,
                None,
                None,
                self.ignore_index,
                0.0,
                REDUCTIONS[self.reduction],
                _GRAD_OUTPUT_ONE,
                grad,
                0.0,
                False,
                0.0,
            )
            return self.loss_tensor(loss), grad_tensor
        loss, grad = numpy_api.cross_entropy_with_grad(x, t, **self.options())
        return self.loss_tensor(loss), from_numpy(grad, self.dtype)

    def gradient_buffer(self, input, x):
        """(tensor, its NumPy view) for the kernel to write the gradient of ``input``
        (whose view is ``x``) into.

        A small gradient is a tensor of PyTorch's own allocator: autograd hands a
        tensor over NumPy memory to ``.grad`` more slowly (its memory is freed
        through Python), a few us of a 64 x 10 loss step's 40. A large one comes
        from pyce's buffer cache, whose memory is already mapped (see _cache)."""
        if x.nbytes >= CACHE_MIN_BYTES:
            grad = empty_output(x.shape, x.dtype)
            return from_numpy(grad, self.dtype), grad
        # (empty_like keeps a transposed input's strides; the kernel writes rows)
        tensor = torch.empty_like(input) if input.is_contiguous() else torch.empty(x.shape, dtype=self.dtype)
        return tensor, as_numpy(tensor) if self.dtype is torch.bfloat16 else tensor.numpy()

    def scaled(self, grad, grad_output):
        """The saved gradient of a reduced loss (taken with grad_output = 1) times
        grad_output, in place."""
        if float(grad_output) == 1.0:  # loss.backward(): nothing to scale
            return grad
        return grad.mul_(grad_output)

    def kernel_grad(self, input, target, weight, grad_output):
        """The gradient from the kernel, given grad_output (an unreduced loss, or a
        second backward through a retained graph)."""
        self.arrays = self.arrays_of(input, target, weight)
        x, t, _ = self.arrays
        g_out = float(grad_output) if self.reduced else as_numpy(grad_output.double())
        grad = numpy_api.cross_entropy_backward(x, t, g_out, **self.options())
        self.arrays = None
        return from_numpy(grad, self.dtype)

    def differentiable_grad(self, input, target, weight, grad_output):
        """The gradient as a function of input and grad_output that autograd can differentiate
        again: PyTorch's own formula, differentiated at the saved input."""
        with torch.enable_grad():
            loss = torch_cross_entropy(
                input,
                target,
                weight,
                self.ignore_index,
                self.reduction,
                self.label_smoothing,
                self.z_loss,
                self.softcap,
            )
            (grad,) = torch.autograd.grad(loss, input, grad_output, create_graph=True)
        return grad

    def directional_derivative(self, grad, tangent):
        """d loss along ``tangent`` (forward-mode AD): the gradient's inner product with it."""
        if self.dtype in HALF_DTYPES:
            grad, tangent = grad.float(), tangent.float()
        product = grad * tangent
        out = product.sum() if self.reduced else product.sum(dim=self.axis)
        return out.to(self.dtype)


def _arrays_of(input, target, weight, dtype):
    """NumPy views of the tensors (a 16-bit weight read in float32, which is exact)."""
    if input.is_contiguous() and dtype is not torch.bfloat16:
        x = input.detach().numpy()  # the common case, without as_numpy's calls
    else:
        x = as_numpy(input)
    if target.dtype is torch.int64 and target.is_contiguous():
        t = target.numpy()  # class indices need no detach: they never require grad
    else:
        t = as_numpy(target)
    w = None
    if weight is not None:
        w = as_numpy(weight.float() if dtype in HALF_DTYPES else weight)
    return x, t, w


def plain_rows_call(input, target, weight, ignore_index, reduction, label_smoothing, z_loss, softcap):
    """The call of a (N, C) float32 or float64 input with (N,) int64 class indices, no
    option but ignore_index and a reduction, as kernel_call would make it, or None for
    any other call (kernel_call decides those).

    At 64 x 10 a training step's loss is all Python: the general checks cost as much as
    a fifth of PyTorch's whole step, so the commonest call is recognised with the fewest
    attribute reads (each costs). z_loss and softcap come checked (0.0 and None here)."""
    if not (
        weight is None
        and softcap is None
        and z_loss == 0.0
        and type(input) in _TENSOR_TYPES
        and type(target) in _TENSOR_TYPES
        and (reduction == "mean" or reduction == "sum")
        and type(reduction) is str
        and type(ignore_index) is int
        and _INT64[0] <= ignore_index <= _INT64[1]
        and type(label_smoothing) in (float, int)
        and label_smoothing == 0
        and target.dtype is torch.int64
        and input.dim() == 2
        and target.dim() == 1
    ):
        return None
    dtype = input.dtype
    shape = input.shape
    if not (
        (dtype is torch.float32 or dtype is torch.float64)
        and shape[1] > 0
        and target.shape[0] == shape[0]
        and input.is_cpu
        and target.is_cpu
        and input.is_contiguous()
        and target.is_contiguous()
    ):
        return None
    arrays = (input.detach().numpy(), target.numpy(), None)
    return KernelCall(arrays, target, None, dtype, 1, ignore_index, reduction, 0.0, 0.0, None, True)


def kernel_call(input, target, weight, ignore_index, reduction, label_smoothing, z_loss, softcap):
    """The call for pyce's kernel, or None when PyTorch's own implementation must take it:
    whatever the kernel does not compute and whatever PyTorch rejects (it raises there).
    (Every tensor attribute read here costs: each is read once.)"""
    if type(input) not in _TENSOR_TYPES or type(target) not in _TENSOR_TYPES:
        return None
    dtype = input.dtype
    if not (input.is_cpu and target.is_cpu and dtype in KERNEL_DTYPES):
        return None
    if (
        type(ignore_index) is not int
        or not _INT64[0] <= ignore_index <= _INT64[1]
        or type(reduction) is not str
        or reduction not in _REDUCTIONS
        or type(label_smoothing) not in (float, int)
        or not 0.0 <= label_smoothing <= 1.0
    ):
        return None  # PyTorch raises, or (label_smoothing < 0) computes without smoothing
    shape = input.shape
    ndim = len(shape)
    if ndim == 0:
        return None
    axis = 1 if ndim > 1 else 0
    n_classes = shape[axis]
    if n_classes == 0:
        return None  # PyTorch's answers for no classes (nan, or its IndexError)
    target_dtype = target.dtype
    if target_dtype in _INDEX_DTYPES:
        if ndim == 2:  # (N, C) and (N,): integers compared, no shapes built
            if target.dim() != 1 or target.shape[0] != shape[0]:
                return None
        elif target.shape != shape[:axis] + shape[axis + 1 :]:
            return None
    elif target_dtype is dtype:  # class probabilities
        if target.shape != shape or ignore_index != -100 or target.requires_grad:
            return None
    else:
        return None  # int32 targets, probabilities of another dtype (PyTorch promotes), ...
    if weight is not None and (
        type(weight) not in _TENSOR_TYPES
        or not weight.is_cpu
        or weight.dtype is not dtype
        or weight.shape != (n_classes,)
        or weight.requires_grad
    ):
        return None
    plain_rows = (
        ndim == 2
        and target_dtype is torch.int64
        and weight is None
        and softcap is None
        and not label_smoothing
        and not z_loss
    )
    return KernelCall(
        _arrays_of(input, target, weight, dtype),
        target,
        weight,
        dtype,
        axis,
        ignore_index,
        reduction,
        label_smoothing,
        z_loss,
        softcap,
        plain_rows,
    )


class _FusedCrossEntropy(torch.autograd.Function):
    """Forward: the kernel's loss and gradient; backward: that gradient times grad_output."""

    @staticmethod
    def forward(ctx, input, call):
        # Called only when a gradient is wanted (input.requires_grad) or forward-mode AD
        # is on (see cross_entropy).
        ctx.call = call
        if call.reduced or forward_ad._current_level >= 0:
            loss, ctx.grad = call.loss_and_grad(input)
        else:
            # An unreduced loss's grad_output scales each row: backward computes the
            # gradient with it in one pass (one rounding, nothing saved in between).
            loss, ctx.grad = call.loss(), None
        # Unpacked only when the gradient is computed in backward, so that an in-place
        # change of the logits after the forward pass does not fail a reduced loss.
        ctx.save_for_backward(input, call.target, call.weight)
        call.release()
        return loss

    @staticmethod
    def backward(ctx, grad_output):
        call = ctx.call
        if torch.is_grad_enabled():  # create_graph=True
            return call.differentiable_grad(*ctx.saved_tensors, grad_output), None
        # The saved gradient is handed to autograd, so no logits-sized buffer outlives
        # the first backward; a graph that is retained recomputes it, as does an
        # unreduced loss.
        grad, ctx.grad = ctx.grad, None
        if grad is None or not call.reduced:  # (forward-mode AD saves one for 'none' too)
            return call.kernel_grad(*ctx.saved_tensors, grad_output), None
        return call.scaled(grad, grad_output), None

    @staticmethod
    def jvp(ctx, input_tangent, _call_tangent):
        return ctx.call.directional_derivative(ctx.grad, input_tangent)


# Function.apply without its Python wrapper, whose work (setup_context's argument
# binding, torch.func's checks) this path does not need: torch.func transforms
# never reach it (see cross_entropy), and the Function has no setup_context.
_apply_fused = torch._C._FunctionBase.__dict__["apply"].__get__(None, _FusedCrossEntropy)


def cross_entropy(
    input,
    target,
    weight=None,
    ignore_index=-100,
    reduction="mean",
    label_smoothing=0.0,
    *,
    z_loss=0.0,
    softcap=None,
):
    """``torch.nn.functional.cross_entropy`` computed by pyce's fused CPU kernel.

    Parameters
    ----------
    input : torch.Tensor
        Logits of shape ``(N, C)``, ``(N, C, d1, ...)`` or ``(C,)`` (unbatched),
        as in PyTorch (class dimension 1).
    target : torch.Tensor
        Class indices (an int64 or uint8 tensor of the input's shape without the
        class dimension) or class probabilities (a float tensor of the input's shape).
    weight : torch.Tensor of shape (C,), optional
        A rescaling weight for each class, of the input's dtype.
    ignore_index : int, optional
        Targets equal to it contribute neither loss nor gradient (default -100;
        class-index targets only).
    reduction : {'mean', 'sum', 'none'}, optional
        As PyTorch: the weighted mean divides by the sum of ``weight[target]``
        over the rows that are not ignored.
    label_smoothing : float in [0, 1], optional
        Mixes the target with the uniform distribution.
    z_loss : float, optional
        Adds ``z_loss * logsumexp(z)**2`` per row that is not ignored (PaLM's
        auxiliary loss, which keeps the softmax normaliser near 1); included in
        the gradient. Default 0.
    softcap : float, optional
        If given, the logits pass through ``softcap * tanh(z / softcap)`` first
        (Gemma 2's logit soft-capping); the gradient flows through the cap.

    Returns
    -------
    torch.Tensor
        The loss in the input's dtype: a 0-d tensor for 'mean'/'sum', the
        target's shape for 'none'.

    Raises
    ------
    What ``torch.nn.functional.cross_entropy`` raises for the same arguments
    (for a class index out of range, an IndexError that names it); TypeError or
    ValueError for a bad ``z_loss`` or ``softcap``, pyce's own options.

    Notes
    -----
    For a CPU tensor of float32, float64, bfloat16 or float16 the loss and its
    gradient come from one pass of pyce's kernel over zero-copy views of the
    tensors; the gradient is kept until backward (one logits-sized buffer,
    as PyTorch keeps its log-softmax) and scaled by ``grad_output`` there. The
    kernels compute 16-bit logits in float32. Every other call -- other devices
    or dtypes, a target or weight that requires grad, arguments PyTorch
    rejects, torch.func transforms -- is ``torch.nn.functional.cross_entropy``
    (with ``z_loss`` and ``softcap`` composed from torch operations). Second
    derivatives (``create_graph=True``) are PyTorch's formula differentiated at
    the saved input; forward-mode AD (``torch.autograd.forward_ad``) is the
    saved gradient's inner product with the tangent.

    Examples
    --------
    >>> import torch, pyce.torch
    >>> x = torch.tensor([[2.0, 1.0, 3.0]], requires_grad=True)
    >>> loss = pyce.torch.cross_entropy(x, torch.tensor([2]))
    >>> loss.backward()
    >>> round(loss.item(), 4), x.grad.round(decimals=4)
    (0.4076, tensor([[ 0.2447,  0.0900, -0.3348]]))
    """
    if type(z_loss) is not float or z_loss != 0.0:  # the default costs no call
        z_loss = check_z_loss(z_loss)
    if softcap is not None:
        softcap = check_softcap(softcap)
    call = None
    if not torch._C._are_functorch_transforms_active():  # torch.func wraps tensors: PyTorch's ops
        call = plain_rows_call(
            input, target, weight, ignore_index, reduction, label_smoothing, z_loss, softcap
        ) or kernel_call(input, target, weight, ignore_index, reduction, label_smoothing, z_loss, softcap)
    if call is None:
        return torch_cross_entropy(
            input, target, weight, ignore_index, reduction, label_smoothing, z_loss, softcap
        )
    if (input.requires_grad and torch.is_grad_enabled()) or forward_ad._current_level >= 0:
        return _apply_fused(input, call)
    loss = call.loss()
    call.release()
    return loss


class CrossEntropyLoss(torch.nn.Module):
    """``torch.nn.CrossEntropyLoss`` computed by :func:`pyce.torch.cross_entropy`.

    Parameters
    ----------
    weight : torch.Tensor of shape (C,), optional
        Class weights (kept as a buffer, so ``.to()`` moves it with the module).
    ignore_index, reduction, label_smoothing, z_loss, softcap
        As for :func:`cross_entropy`.

    Examples
    --------
    >>> import torch, pyce.torch
    >>> criterion = pyce.torch.CrossEntropyLoss(label_smoothing=0.1, z_loss=1e-4)
    >>> loss = criterion(torch.randn(8, 100, requires_grad=True), torch.randint(0, 100, (8,)))
    """

    def __init__(
        self,
        weight=None,
        ignore_index=-100,
        reduction="mean",
        label_smoothing=0.0,
        *,
        z_loss=0.0,
        softcap=None,
    ):
        super().__init__()
        if reduction not in _REDUCTIONS:  # PyTorch's ValueError, at construction already
            raise ValueError(f"{reduction} is not a valid value for reduction")
        check_z_loss(z_loss)
        if softcap is not None:
            check_softcap(softcap)
        self.register_buffer("weight", weight)
        self.ignore_index = ignore_index
        self.reduction = reduction
        self.label_smoothing = label_smoothing
        self.z_loss = z_loss
        self.softcap = softcap

    def forward(self, input, target):
        return cross_entropy(
            input,
            target,
            weight=self.weight,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
            label_smoothing=self.label_smoothing,
            z_loss=self.z_loss,
            softcap=self.softcap,
        )

    def extra_repr(self) -> str:
        parts = [f"ignore_index={self.ignore_index}", f"reduction={self.reduction!r}"]
        if self.label_smoothing:
            parts.append(f"label_smoothing={self.label_smoothing}")
        if self.z_loss:
            parts.append(f"z_loss={self.z_loss}")
        if self.softcap is not None:
            parts.append(f"softcap={self.softcap}")
        return ", ".join(parts)
