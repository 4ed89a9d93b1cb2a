"""Train a small character-level language model with pyce.torch.cross_entropy.

The model is the classic "neural n-gram" (Bengio et al., 2003): the previous
`context` characters are embedded, concatenated, passed through one tanh
hidden layer and projected to logits over the character vocabulary. Training
it by minimising the cross-entropy of the next character *is* maximum
likelihood: the loss is the average negative log-probability the model gives
to the text, and exp(loss) -- the perplexity -- is the number of characters
it is still choosing between.

The text is the source code of a module of Python's standard library (no
download). The script trains the same model from the same initialisation on
the same batches twice -- once with `pyce.torch.cross_entropy`, once with
`torch.nn.functional.cross_entropy` -- and reports that the two loss curves
agree, how much faster pyce's loss step (forward + backward of the loss) is,
and the validation perplexity, top-k accuracy and calibration measured in one
pass by `pyce.evaluate`.

    python examples/char_lm.py                 # well under a minute on a laptop
    python examples/char_lm.py --steps 3000 --batch 512 --hidden 512 --module typing
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import time

import numpy as np
import torch
import torch.nn.functional as F

import pyce
import pyce.torch


def load_text(module_name: str) -> str:
    """The source code of a standard-library module: a text every Python has."""
    return inspect.getsource(importlib.import_module(module_name))


class NeuralNgram(torch.nn.Module):
    """Embedding -> concatenate the context -> tanh MLP -> vocabulary logits."""

    def __init__(self, vocab: int, context: int, embed: int, hidden: int):
        super().__init__()
        self.embed = torch.nn.Embedding(vocab, embed)
        self.hidden = torch.nn.Linear(context * embed, hidden)
        self.out = torch.nn.Linear(hidden, vocab)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:  # (B, context) -> (B, vocab)
        h = torch.tanh(self.hidden(self.embed(idx).flatten(1)))
        return self.out(h)


def make_windows(ids: np.ndarray, context: int):
    """Every (context characters -> next character) pair of the text."""
    x = np.lib.stride_tricks.sliding_window_view(ids[:-1], context)
    y = ids[context:]
    return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y)


def train(loss_fn, data, args, vocab: int):
    """Train from a fixed initialisation on a fixed batch order; returns the model,
    the loss of every step and the seconds spent in the loss step."""
    x_train, y_train = data
    torch.manual_seed(args.seed)
    model = NeuralNgram(vocab, args.context, args.embed, args.hidden)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    batches = torch.Generator().manual_seed(args.seed + 1)
    losses, loss_seconds = [], 0.0
    for _ in range(args.steps):
        idx = torch.randint(0, len(y_train), (args.batch,), generator=batches)
        logits = model(x_train[idx])
        logits.retain_grad()
        t0 = time.perf_counter()
        loss = loss_fn(logits, y_train[idx], label_smoothing=args.label_smoothing)
        # The loss step: the loss's forward and its backward to the logits
        # (autograd.grad stops there; the model's backward follows separately).
        (grad_logits,) = torch.autograd.grad(loss, logits, retain_graph=True)
        loss_seconds += time.perf_counter() - t0
        opt.zero_grad(set_to_none=True)
        logits.backward(grad_logits)
        opt.step()
        losses.append(loss.item())
    return model, np.array(losses), loss_seconds


def time_loss_steps(loss_fns, logits: torch.Tensor, target: torch.Tensor, repeats: int):
    """Best-of-`repeats` seconds of loss forward + backward on fixed logits, for
    each function; the functions take turns, so a busy machine slows them alike."""
    best = [float("inf")] * len(loss_fns)
    for _ in range(repeats):
        for i, loss_fn in enumerate(loss_fns):
            x = logits.detach().requires_grad_(True)
            t0 = time.perf_counter()
            loss_fn(x, target).backward()
            best[i] = min(best[i], time.perf_counter() - t0)
    return best


@torch.no_grad()
def validation_logits(model, data, context: int, limit: int):
    x_val, y_val = data
    return model(x_val[:limit]).numpy(), y_val[:limit].numpy()


def sample(model, stoi, itos, context: int, prompt: str, n: int, seed: int) -> str:
    g = torch.Generator().manual_seed(seed)
    ids = [stoi.get(c, 0) for c in prompt][-context:]
    ids = [0] * (context - len(ids)) + ids
    out = []
    with torch.no_grad():
        for _ in range(n):
            p = torch.softmax(model(torch.tensor([ids[-context:]])), dim=-1)
            nxt = int(torch.multinomial(p[0], 1, generator=g))
            ids.append(nxt)
            out.append(itos[nxt])
    return prompt + "".join(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--module", default="argparse", help="stdlib module whose source is the text")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--context", type=int, default=8)
    ap.add_argument("--embed", type=int, default=24)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--label-smoothing", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--timing-batch",
        type=int,
        default=8192,
        help="rows of the separate loss-step timing (a larger batch than training)",
    )
    ap.add_argument(
        "--token-vocab",
        type=int,
        default=32000,
        help="also time the loss step at this vocabulary size on random logits (0: skip)",
    )
    ap.add_argument("--token-rows", type=int, default=512)
    ap.add_argument("--sample", type=int, default=200, help="characters to generate at the end (0: none)")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    say = (lambda *a: None) if args.quiet else print

    text = load_text(args.module)
    chars = sorted(set(text))
    stoi = {c: i for i, c in enumerate(chars)}
    ids = np.array([stoi[c] for c in text], dtype=np.int64)
    split = int(0.9 * len(ids))
    train_data = make_windows(ids[:split], args.context)
    val_data = make_windows(ids[split:], args.context)
    V = len(chars)
    say(
        f"text: source of `{args.module}` ({len(text):,} characters, vocabulary {V}); "
        f"pyce {pyce.__version__} on {pyce.cpu_info()['isa']} with {pyce.get_num_threads()} threads, "
        f"torch {torch.__version__} with {torch.get_num_threads()} threads"
    )
    say(f"uniform guess: loss log(V) = {np.log(V):.3f}, perplexity {V}")

    # Warm up both paths (thread pools, allocator, lazy initialisation) so that
    # neither run pays for it.
    warm = argparse.Namespace(**{**vars(args), "steps": min(args.steps, 20)})
    for fn in (pyce.torch.cross_entropy, F.cross_entropy):
        train(fn, train_data, warm, V)

    runs = {}
    for name, fn in (("pyce", pyce.torch.cross_entropy), ("torch", F.cross_entropy)):
        t0 = time.perf_counter()
        model, losses, loss_s = train(fn, train_data, args, V)
        runs[name] = dict(model=model, losses=losses, loss_seconds=loss_s, seconds=time.perf_counter() - t0)
        say(
            f"{name:>5}: {args.steps} steps in {runs[name]['seconds']:.1f} s "
            f"(loss step {1e3 * loss_s / args.steps:.3f} ms/step), final train loss {losses[-1]:.4f}"
        )

    a, b = runs["pyce"]["losses"], runs["torch"]["losses"]
    max_diff = float(np.max(np.abs(a - b)))
    say(
        f"loss curves: max |pyce - torch| over {args.steps} steps = {max_diff:.2e} "
        f"(start {a[0]:.4f}, end {a[-1]:.4f})"
    )
    for step in sorted({0, args.steps // 4, args.steps // 2, 3 * args.steps // 4, args.steps - 1}):
        say(f"   step {step:>6}: pyce {a[step]:.5f}   torch {b[step]:.5f}")

    # The loss step on its own, on a larger batch of this model's logits.
    x_t, y_t = train_data
    rows = min(args.timing_batch, len(y_t))
    with torch.no_grad():
        logits = runs["pyce"]["model"](x_t[:rows])
    repeats = 30
    t_pyce, t_torch = time_loss_steps(
        (pyce.torch.cross_entropy, F.cross_entropy), logits, y_t[:rows], repeats
    )
    speedup = t_torch / t_pyce
    say(
        f"loss step ({rows} x {V} float32, forward + backward, best of {repeats}): "
        f"pyce {1e3 * t_pyce:.3f} ms, torch {1e3 * t_torch:.3f} ms -> speed-up {speedup:.2f}x"
    )
    token_speedup = None
    if args.token_vocab:
        # What the same loss step costs at a token-level vocabulary (random
        # logits of an LLM-like shape): where the loss is a large memory stream.
        g = torch.Generator().manual_seed(args.seed)
        big = torch.randn(args.token_rows, args.token_vocab, generator=g)
        big_t = torch.randint(0, args.token_vocab, (args.token_rows,), generator=g)
        tb_pyce, tb_torch = time_loss_steps((pyce.torch.cross_entropy, F.cross_entropy), big, big_t, 5)
        token_speedup = tb_torch / tb_pyce
        say(
            f"same loss step at a token vocabulary ({args.token_rows} x {args.token_vocab} random float32 "
            f"logits, best of 5): pyce {1e3 * tb_pyce:.1f} ms, torch {1e3 * tb_torch:.1f} ms "
            f"-> speed-up {token_speedup:.1f}x"
        )

    val_logits, val_target = validation_logits(runs["pyce"]["model"], val_data, args.context, 200_000)
    result = pyce.evaluate(val_logits, val_target, topk=(1, 5))
    say(f"validation ({result.n_tokens} characters, one pass of pyce.evaluate): {result}")
    say(f"final perplexity {result.perplexity:.2f} (of {V} characters)")
    if args.sample:
        say(
            "sample:\n"
            + sample(runs["pyce"]["model"], stoi, chars, args.context, "def ", args.sample, args.seed)
        )
    return dict(
        vocab=V,
        losses_pyce=a,
        losses_torch=b,
        max_curve_diff=max_diff,
        loss_step_ms_pyce=1e3 * t_pyce,
        loss_step_ms_torch=1e3 * t_torch,
        speedup=speedup,
        token_vocab_speedup=token_speedup,
        evaluation=result,
    )


if __name__ == "__main__":
    main()
