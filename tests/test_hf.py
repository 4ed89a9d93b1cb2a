"""pyce.torch.causal_lm_loss against transformers' own causal-LM loss.

First the function itself against ``ForCausalLMLoss`` (values and gradients),
then tiny randomly initialised Llama and GPT-2 models (built from configs, no
downloads) trained for a few steps with the one-line assignment
``model.loss_function = pyce.torch.causal_lm_loss`` and with
``Trainer(compute_loss_func=pyce.torch.causal_lm_loss)``: their loss curves and
weights equal the models' own to float32 rounding. Skipped without transformers.
"""

from __future__ import annotations

import copy

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
torch.set_num_threads(1)

from transformers.loss.loss_utils import ForCausalLMLoss  # noqa: E402

import pyce.torch  # noqa: E402
from pyce import _core  # noqa: E402

VOCAB = 211  # not a multiple of any SIMD width
# Losses of the same model agree to a few float32 ulps (measured: at most 1 ulp).
LOSS_TOLERANCE = dict(rtol=1e-6, atol=0.0)


@pytest.fixture
def pyce_calls(monkeypatch):
    """Counts the calls that reach pyce's fused kernel (not PyTorch's fallback)."""
    calls = []
    original = _core.cross_entropy

    def counting(*args, **kwargs):
        calls.append(args[0].shape)  # the kernel's (rows, classes) logits
        return original(*args, **kwargs)

    monkeypatch.setattr(_core, "cross_entropy", counting)
    return calls


def _batch(seed, batch=3, time=13, pad_from=(None, 9, 4)):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, VOCAB, (batch, time), generator=g)
    mask = torch.ones_like(ids)
    for row, start in enumerate(pad_from[:batch]):
        if start is not None:
            mask[row, start:] = 0
    return ids, mask, ids.masked_fill(mask == 0, -100)


def _loss_and_grad(loss_fn, logits, *args, **kwargs):
    x = logits.detach().clone().requires_grad_(True)
    loss = loss_fn(x, *args, **kwargs)
    loss.backward()
    return loss.detach(), x.grad


@pytest.mark.parametrize("num_items", [None, 37, "tensor"])
def test_loss_and_gradient_match_transformers(num_items, pyce_calls):
    ids, _, labels = _batch(0)
    logits = torch.randn(3, 13, VOCAB, generator=torch.Generator().manual_seed(1)) * 3
    if num_items == "tensor":
        num_items = (labels[:, 1:] != -100).sum()
    kwargs = {} if num_items is None else {"num_items_in_batch": num_items}
    want = _loss_and_grad(ForCausalLMLoss, logits, labels, VOCAB, **kwargs)
    got = _loss_and_grad(pyce.torch.causal_lm_loss, logits, labels, VOCAB, **kwargs)
    assert got[0].dtype == want[0].dtype == torch.float32
    torch.testing.assert_close(got[0], want[0], **LOSS_TOLERANCE)
    torch.testing.assert_close(got[1], want[1])
    assert pyce_calls == [(3 * 13, VOCAB)]  # the (B, T, V) logits, one kernel call


def test_shift_labels_are_used_as_given():
    _, _, labels = _batch(2)
    shift_labels = torch.roll(labels, 3, dims=1)  # anything aligned with the logits
    logits = torch.randn(3, 13, VOCAB, generator=torch.Generator().manual_seed(3))
    want = _loss_and_grad(ForCausalLMLoss, logits, None, VOCAB, shift_labels=shift_labels)
    got = _loss_and_grad(pyce.torch.causal_lm_loss, logits, None, VOCAB, shift_labels=shift_labels)
    torch.testing.assert_close(got[0], want[0], **LOSS_TOLERANCE)
    torch.testing.assert_close(got[1], want[1])


def test_bfloat16_logits_are_upcast_as_transformers_does():
    _, _, labels = _batch(4)
    logits = (torch.randn(3, 13, VOCAB, generator=torch.Generator().manual_seed(5)) * 4).bfloat16()
    want = _loss_and_grad(ForCausalLMLoss, logits, labels, VOCAB)
    got = _loss_and_grad(pyce.torch.causal_lm_loss, logits, labels, VOCAB)
    assert got[0].dtype == torch.float32 and got[1].dtype == torch.bfloat16
    torch.testing.assert_close(got[0], want[0], **LOSS_TOLERANCE)
    torch.testing.assert_close(got[1], want[1])


def test_a_model_output_and_no_vocab_size_are_accepted():
    # Trainer calls compute_loss_func(outputs, labels, num_items_in_batch=...).
    _, _, labels = _batch(6)
    logits = torch.randn(3, 13, VOCAB, generator=torch.Generator().manual_seed(7))
    output = transformers.modeling_outputs.CausalLMOutputWithPast(logits=logits)
    got = pyce.torch.causal_lm_loss(output, labels, num_items_in_batch=20)
    torch.testing.assert_close(
        got, ForCausalLMLoss(logits, labels, VOCAB, num_items_in_batch=20), **LOSS_TOLERANCE
    )


def test_no_scored_token_gives_nan_as_transformers():
    labels = torch.full((2, 5), -100)
    logits = torch.randn(2, 5, VOCAB)
    assert torch.isnan(pyce.torch.causal_lm_loss(logits, labels, VOCAB))
    assert torch.isnan(ForCausalLMLoss(logits, labels, VOCAB))


def test_something_without_logits_is_a_type_error():
    with pytest.raises(TypeError, match="'logits' tensor, got list"):
        pyce.torch.causal_lm_loss([1, 2], torch.zeros(1, 2, dtype=torch.long), VOCAB)


def _llama():
    config = transformers.LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    return transformers.LlamaForCausalLM(config)


def _gpt2():
    # No dropout: both copies of the model must see the same function.
    config = transformers.GPT2Config(
        vocab_size=VOCAB,
        n_embd=32,
        n_layer=2,
        n_head=4,
        n_positions=64,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=0,
        eos_token_id=0,
    )
    return transformers.GPT2LMHeadModel(config)


def _assert_same_weights(ours, theirs):
    for (name, p), q in zip(ours.named_parameters(), theirs.parameters()):
        torch.testing.assert_close(p, q, msg=name)


@pytest.mark.parametrize("make_model", [_llama, _gpt2], ids=["llama", "gpt2"])
def test_model_loss_function_assignment_trains_as_the_models_own_loss(make_model, pyce_calls):
    torch.manual_seed(0)
    theirs = make_model()
    ours = copy.deepcopy(theirs)
    ours.loss_function = pyce.torch.causal_lm_loss  # the one line
    optimisers = [torch.optim.SGD(m.parameters(), lr=2.0) for m in (theirs, ours)]
    ids, mask, labels = _batch(8, batch=4, time=24, pad_from=(None, 18, None, 10))
    curves = ([], [])
    for step in range(6):
        # Every other step as one half of an accumulated batch twice as large.
        scored = int((labels[:, 1:] != -100).sum())
        kwargs = {} if step % 2 == 0 else {"num_items_in_batch": torch.tensor(2 * scored)}
        for model, optimiser, curve in zip((theirs, ours), optimisers, curves):
            loss = model(input_ids=ids, attention_mask=mask, labels=labels, **kwargs).loss
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            curve.append(loss.item())
    assert len(pyce_calls) == 6
    assert curves[0][4] < curves[0][0] - 0.1  # it learns: the curve is not flat
    torch.testing.assert_close(torch.tensor(curves[1]), torch.tensor(curves[0]), **LOSS_TOLERANCE)
    _assert_same_weights(ours, theirs)


def test_trainer_compute_loss_func_trains_as_the_models_own_loss(tmp_path, pyce_calls):
    pytest.importorskip("accelerate")  # transformers' Trainer needs it
    torch.manual_seed(0)
    base = _llama()
    g = torch.Generator().manual_seed(9)
    rows = []
    for i in range(8):
        ids = torch.randint(0, VOCAB, (24,), generator=g)
        mask = torch.ones_like(ids)
        if i % 3 == 1:
            mask[15:] = 0
        rows.append({"input_ids": ids, "attention_mask": mask, "labels": ids.masked_fill(mask == 0, -100)})

    def train(**trainer_kwargs):
        args = transformers.TrainingArguments(
            output_dir=str(tmp_path),
            max_steps=4,
            per_device_train_batch_size=2,
            gradient_accumulation_steps=2,
            learning_rate=1.0,
            optim="sgd",
            lr_scheduler_type="constant",
            weight_decay=0.0,
            logging_steps=1,
            report_to=[],
            use_cpu=True,
            save_strategy="no",
            disable_tqdm=True,
            seed=0,
            dataloader_num_workers=0,
        )
        model = copy.deepcopy(base)
        trainer = transformers.Trainer(model=model, args=args, train_dataset=rows, **trainer_kwargs)
        trainer.train()
        return model, [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]

    theirs, their_curve = train()
    assert pyce_calls == []
    ours, our_curve = train(compute_loss_func=pyce.torch.causal_lm_loss)  # the one line
    assert len(pyce_calls) == 4 * 2  # 4 steps of 2 accumulated micro-batches
    assert len(their_curve) == 4 and their_curve[3] < their_curve[0] - 0.2
    torch.testing.assert_close(torch.tensor(our_curve), torch.tensor(their_curve), **LOSS_TOLERANCE)
    _assert_same_weights(ours, theirs)
