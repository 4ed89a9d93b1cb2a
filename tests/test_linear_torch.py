"""pyce.torch.linear_cross_entropy, LinearCrossEntropyLoss and patch_causal_lm against
F.cross_entropy(F.linear(...)) in float64, gradcheck, 16-bit tensors and a Hugging Face model."""

from __future__ import annotations

import itertools
import zlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

import pyce.torch as pt  # noqa: E402


def seeded(*key):
    return torch.Generator().manual_seed(zlib.crc32(repr(key).encode()))


def composed(
    input,
    W,
    target,
    *,
    linear_bias=None,
    weight=None,
    reduction="mean",
    ignore_index=-100,
    label_smoothing=0.0,
    z_loss=0.0,
    softcap=None,
    shift=0,
):
    """F.cross_entropy(F.linear(...)) with z-loss and softcap written out in torch ops."""
    if shift:
        input, target = input[..., :-shift, :], target[..., shift:]
    z = F.linear(input, W, linear_bias)
    if softcap is not None:
        z = softcap * torch.tanh(z / softcap)
    z2, t = z.reshape(-1, z.shape[-1]), target.reshape(-1)
    rows = F.cross_entropy(
        z2, t, weight=weight, ignore_index=ignore_index, reduction="none", label_smoothing=label_smoothing
    )
    scored = t != ignore_index
    if z_loss:
        rows = rows + torch.where(scored, z_loss * torch.logsumexp(z2, -1) ** 2, 0.0)
    if reduction == "none":
        return rows.reshape(target.shape)
    if reduction == "sum":
        return rows.sum()
    w_t = torch.ones_like(rows) if weight is None else weight[torch.where(scored, t, 0)]
    return rows.sum() / (w_t * scored).sum()


def problem(key, lead=(3, 7), D=5, V=13, dtype=torch.float64, bias=False, weight=False, ignore=True):
    g = seeded(*key)
    h = (2 * torch.randn(lead + (D,), generator=g, dtype=torch.float64)).to(dtype).requires_grad_()
    W = torch.randn(V, D, generator=g, dtype=torch.float64).to(dtype).requires_grad_()
    b = torch.randn(V, generator=g, dtype=torch.float64).to(dtype).requires_grad_() if bias else None
    y = torch.randint(0, V, lead, generator=g)
    if ignore:
        y[torch.rand(lead, generator=g) < 0.3] = -100
        y.view(-1)[-1] = 1
    w = (torch.rand(V, generator=g, dtype=torch.float64) + 0.5) if weight else None
    return h, W, b, y, w


COMBOS = list(
    itertools.product([False, True], [False, True], [False, True], [0.0, 0.1], [0.0, 1e-3], [None, 4.0])
)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("lead,shift", [((11,), 0), ((3, 7), 0), ((3, 7), 1), ((2, 6), 2)])
@pytest.mark.parametrize("bias,weight,ignore,smoothing,z_loss,softcap", COMBOS)
def test_matches_composed_float64(bias, weight, ignore, smoothing, z_loss, softcap, lead, shift, reduction):
    key = (bias, weight, ignore, smoothing, z_loss, softcap, lead, shift, reduction)
    h, W, b, y, w = problem(key, lead=lead, bias=bias, weight=weight, ignore=ignore)
    opts = dict(
        linear_bias=b,
        weight=w,
        reduction=reduction,
        label_smoothing=smoothing,
        z_loss=z_loss,
        softcap=softcap,
        shift=shift,
    )
    got = pt.linear_cross_entropy(h, W, y, chunk_size=4, **opts)
    want = composed(h, W, y, **opts)
    assert got.shape == want.shape and got.dtype == torch.float64
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-13)
    params = [h, W] + ([b] if bias else [])
    g_out = torch.randn(want.shape, generator=seeded(key, "g"), dtype=torch.float64)
    for a, r in zip(torch.autograd.grad(got, params, g_out), torch.autograd.grad(want, params, g_out)):
        torch.testing.assert_close(a, r, rtol=1e-11, atol=1e-13)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_gradcheck(reduction):
    h, W, b, y, w = problem(("gradcheck", reduction), lead=(2, 5), D=4, V=9, bias=True, weight=True)

    def f(h_, W_, b_):
        return pt.linear_cross_entropy(
            h_,
            W_,
            y,
            linear_bias=b_,
            weight=w,
            reduction=reduction,
            label_smoothing=0.1,
            z_loss=0.01,
            softcap=3.0,
            shift=1,
            chunk_size=3,
        )

    assert torch.autograd.gradcheck(f, (h, W, b))


def test_only_some_inputs_need_grad():
    h, W, b, y, _ = problem(("some",), bias=True)
    W2 = W.detach()
    loss = pt.linear_cross_entropy(h, W2, y, linear_bias=b.detach(), chunk_size=5)
    (gh,) = torch.autograd.grad(loss, [h])
    (rh,) = torch.autograd.grad(composed(h, W2, y, linear_bias=b.detach()), [h])
    torch.testing.assert_close(gh, rh, rtol=1e-12, atol=1e-13)
    with torch.no_grad():
        torch.testing.assert_close(pt.linear_cross_entropy(h, W, y), composed(h, W, y))
    # A frozen head with reduction 'none' (backward recomputes the chunks).
    g_out = torch.rand(3, 6, dtype=torch.float64)
    loss = pt.linear_cross_entropy(h, W2, y, reduction="none", shift=1, chunk_size=4)
    (gh,) = torch.autograd.grad(loss, [h], g_out)
    (rh,) = torch.autograd.grad(composed(h, W2, y, reduction="none", shift=1), [h], g_out)
    torch.testing.assert_close(gh, rh, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_reduced_precision_tensors(dtype):
    pytest.importorskip("ml_dtypes") if dtype == torch.bfloat16 else None
    h, W, b, y, _ = problem(("half", str(dtype)), lead=(4, 40), D=32, V=1000, dtype=dtype, bias=True)
    loss = pt.linear_cross_entropy(h, W, y, linear_bias=b, shift=1, chunk_size=64)
    gh, gW, gb = torch.autograd.grad(loss, [h, W, b])
    assert loss.dtype == gh.dtype == gW.dtype == gb.dtype == dtype
    # The same computation in float64 from the same (rounded) inputs.
    h64, W64, b64 = (t.detach().double().requires_grad_() for t in (h, W, b))
    want = composed(h64, W64, y, linear_bias=b64, shift=1)
    rh, rW, rb = torch.autograd.grad(want, [h64, W64, b64])
    eps = {torch.float32: 2.0**-23, torch.bfloat16: 2.0**-8, torch.float16: 2.0**-11}[dtype]
    # The logits are rounded to the dtype (as PyTorch's own 16-bit path does),
    # |z| is about 10 here: errors of a few eps * |z| in loss and gradients.
    assert abs(loss.double() - want).item() < 40 * eps * max(1.0, abs(want.item()))
    for g, r in ((gh, rh), (gW, rW), (gb, rb)):
        assert (g.double() - r).abs().max().item() < 60 * eps * r.abs().max().item()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_16bit_products_in_row_blocks(monkeypatch, dtype):
    # grad_weight's 16-bit product goes into its float32 accumulator a block of
    # rows at a time: 333 rows here (blocks of 333, 333, 333 and 1 over V = 1000).
    pytest.importorskip("ml_dtypes") if dtype == torch.bfloat16 else None
    import pyce.torch.linear as linear_module

    h, W, b, y, _ = problem(("blocks", str(dtype)), lead=(4, 40), D=32, V=1000, dtype=dtype, bias=True)
    whole = torch.autograd.grad(pt.linear_cross_entropy(h, W, y, linear_bias=b, chunk_size=64), [h, W, b])
    monkeypatch.setattr(linear_module, "_PRODUCT_BLOCK_BYTES", 333 * 32 * 2)
    blocks = torch.autograd.grad(pt.linear_cross_entropy(h, W, y, linear_bias=b, chunk_size=64), [h, W, b])
    h64, W64, b64 = (t.detach().double().requires_grad_() for t in (h, W, b))
    rh, rW, rb = torch.autograd.grad(composed(h64, W64, y, linear_bias=b64), [h64, W64, b64])
    eps = {torch.bfloat16: 2.0**-8, torch.float16: 2.0**-11}[dtype]
    for g, w, r in zip(blocks, whole, (rh, rW, rb)):
        assert g.dtype == dtype
        # The same products, split by output rows: equal but for the BLAS's blocking.
        assert (g.double() - w.double()).abs().max().item() <= 2 * eps * r.abs().max().item()
        assert (g.double() - r).abs().max().item() < 60 * eps * r.abs().max().item()


def test_other_devices_fall_back_to_pytorch():
    h, W, b, y, w = problem(("fallback",), bias=True, weight=True)
    meta = [t.detach().to("meta") for t in (h, W, b, y, w)]
    loss = pt.linear_cross_entropy(
        meta[0], meta[1], meta[3], linear_bias=meta[2], weight=meta[4], shift=1, reduction="none"
    )
    assert loss.device.type == "meta" and loss.shape == (3, 6)


def test_all_rows_ignored():
    h, W, b, _, _ = problem(("ignored",), bias=True)
    y = torch.full((3, 7), -100)
    loss = pt.linear_cross_entropy(h, W, y, linear_bias=b)
    assert torch.isnan(loss)
    for g in torch.autograd.grad(loss, [h, W, b]):
        assert not g.any()


def test_loss_module():
    torch.manual_seed(0)
    head = pt.LinearCrossEntropyLoss(
        6, 50, bias=True, dtype=torch.float64, label_smoothing=0.1, shift=1, chunk_size=4
    )
    assert head.weight.shape == (50, 6) and head.bias.shape == (50,)
    assert "num_classes=50" in repr(head) and "shift=1" in repr(head)
    h = torch.randn(2, 9, 6, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 50, (2, 9))
    loss = head(h, y)
    loss.backward()
    want = composed(h, head.weight, y, linear_bias=head.bias, label_smoothing=0.1, shift=1)
    torch.testing.assert_close(loss, want)
    assert head.weight.grad is not None and head.bias.grad is not None
    # PyTorch's own module with the same parameters computes the same loss.
    theirs = torch.nn.LinearCrossEntropyLoss(6, 50, bias=True, dtype=torch.float64, label_smoothing=0.1)
    theirs.load_state_dict(head.state_dict())
    with torch.no_grad():
        theirs_loss = theirs(h[:, :-1].reshape(-1, 6), y[:, 1:].reshape(-1))
    torch.testing.assert_close(loss.detach(), theirs_loss)


def test_shape_errors_name_the_shapes():
    h, W, _, y, _ = problem(("errors",))
    with pytest.raises(ValueError, match=r"input's last dimension 5 .*\(3, 7, 5\).* D = 4"):
        pt.linear_cross_entropy(h, W[:, :4], y)
    with pytest.raises(
        ValueError, match=r"target must have input's shape .* expected \(3, 7\), got \(3, 6\)"
    ):
        pt.linear_cross_entropy(h, W, y[:, :6])
    with pytest.raises(ValueError, match=r"linear_bias must have shape \(13,\)"):
        pt.linear_cross_entropy(h, W, y, linear_bias=torch.zeros(12, dtype=torch.float64))
    with pytest.raises(TypeError, match="linear_weight has dtype float32 but input has float64"):
        pt.linear_cross_entropy(h, W.detach().float(), y)
    with pytest.raises(ValueError, match="reduction"):
        pt.linear_cross_entropy(h, W, y, reduction="avg")


# -- Hugging Face: a tiny random-init Llama trained with and without the patch -----------------


def tiny_llama(seed=0, vocab=500):
    transformers = pytest.importorskip("transformers")
    config = transformers.LlamaConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=vocab,
        max_position_embeddings=64,
    )
    torch.manual_seed(seed)
    return transformers.LlamaForCausalLM(config)


def test_patch_causal_lm_gives_the_models_loss_and_gradients():
    model = tiny_llama()
    ids = torch.randint(0, 500, (2, 12), generator=seeded("ids"))
    labels = ids.clone()
    labels[0, :3] = -100
    want = model(input_ids=ids, labels=labels)
    want_grads = torch.autograd.grad(want.loss, [model.lm_head.weight, model.model.embed_tokens.weight])
    pt.patch_causal_lm(model)
    got = model(input_ids=ids, labels=labels)
    assert got.logits is None
    torch.testing.assert_close(got.loss, want.loss, rtol=1e-6, atol=1e-6)
    got_grads = torch.autograd.grad(got.loss, [model.lm_head.weight, model.model.embed_tokens.weight])
    for g, r in zip(got_grads, want_grads):
        torch.testing.assert_close(g, r, rtol=1e-5, atol=1e-7)
    # num_items_in_batch: the sum over scored tokens divided by it.
    n = int((labels[:, 1:] != -100).sum()) + 5
    summed = model(input_ids=ids, labels=labels, num_items_in_batch=n).loss
    torch.testing.assert_close(summed, want.loss * (n - 5) / n, rtol=1e-6, atol=1e-6)
    # Without labels the original forward runs (logits returned).
    assert model(input_ids=ids).logits.shape == (2, 12, 500)
    model.pyce_unpatch()
    assert model(input_ids=ids, labels=labels).logits is not None


def test_patched_training_follows_the_same_curve():
    ids = torch.randint(0, 500, (4, 16), generator=seeded("train"))
    curves = []
    for patched in (False, True):
        model = tiny_llama(seed=1)
        if patched:
            pt.patch_causal_lm(model)
        opt = torch.optim.SGD(model.parameters(), lr=0.5)
        losses = []
        for _ in range(5):
            loss = model(input_ids=ids, labels=ids).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        curves.append(losses)
    np.testing.assert_allclose(curves[1], curves[0], rtol=2e-5)
    assert curves[0][-1] < curves[0][0]
