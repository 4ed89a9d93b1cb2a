"""Train a small Hugging Face Llama with its LM head and loss fused by pyce (no logits).

A causal LM's last layer turns every token's hidden state (D numbers) into
logits over the whole vocabulary (V numbers), and the loss reads them once:
for a batch of N tokens that is an N x V array -- 125 MiB for 1024 tokens of
a 32000-word vocabulary in float32, and PyTorch keeps about three of them
(the logits, their log-softmax, their gradient) for the backward pass.

``pyce.torch.patch_causal_lm(model)`` replaces the head + loss of a
``transformers`` causal LM by ``pyce.torch.linear_cross_entropy(hidden,
lm_head.weight, labels, shift=1)``: chunks of rows, the three matrix products
of each chunk on PyTorch's BLAS and pyce's fused kernel in between, so no
N x V tensor ever exists. The model, its labels (-100 ignored), its loss and
its gradients stay those of transformers' own ``ForCausalLMLoss``.

The script builds ``LlamaConfig(hidden_size=256, num_hidden_layers=2,
vocab_size=32000)`` from scratch (random init, nothing downloaded), trains
it for a few AdamW steps on random token batches twice from the same
initialisation -- once as transformers computes it, once patched -- each in a
fresh process, and prints the two loss curves, the median step time and the
peak memory (resident set, whole process) side by side.

    python examples/llama_fused_head.py                       # a minute or two on 2 cores
    python examples/llama_fused_head.py --batch 8 --seq 512 --steps 10
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time


def build_model(args):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        hidden_size=args.hidden,
        intermediate_size=2 * args.hidden,
        num_hidden_layers=args.layers,
        num_attention_heads=4,
        num_key_value_heads=4,
        vocab_size=args.vocab,
        max_position_embeddings=max(args.seq, 64),
    )
    torch.manual_seed(args.seed)
    return LlamaForCausalLM(config)


def peak_rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def train(args, patched: bool) -> dict:
    """One training run (in this process): losses, step times, peak memory."""
    import torch

    import pyce.torch

    torch.set_num_threads(args.threads) if args.threads else None
    model = build_model(args)
    if patched:
        pyce.torch.patch_causal_lm(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr)
    generator = torch.Generator().manual_seed(args.seed + 1)
    losses, times = [], []
    for _ in range(args.steps):
        ids = torch.randint(0, args.vocab, (args.batch, args.seq), generator=generator)
        labels = ids.clone()
        labels[:, : args.seq // 8] = -100  # a prompt that is not scored
        t0 = time.perf_counter()
        loss = model(input_ids=ids, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - t0)
        losses.append(loss.item())
    times.sort()
    return {"losses": losses, "median_step_s": times[len(times) // 2], "peak_rss_mib": peak_rss_mib()}


def run_fresh(args, patched: bool) -> dict:
    """``train`` in a fresh Python process, so that its peak memory is its own."""
    argv = [sys.executable, __file__, "--child", "patched" if patched else "plain"]
    for name in ("steps", "batch", "seq", "hidden", "layers", "vocab", "lr", "seed", "threads"):
        value = getattr(args, name)
        if value is not None:
            argv += [f"--{name}", str(value)]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--vocab", type=int, default=32000)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--child", choices=("plain", "patched"), help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse(argv)
    if args.child:
        print(json.dumps(train(args, args.child == "patched")))
        return {}
    tokens = args.batch * args.seq
    print(
        f"LlamaForCausalLM: hidden {args.hidden}, {args.layers} layers, vocab {args.vocab}; "
        f"{args.batch} x {args.seq} = {tokens} tokens a step "
        f"(logits {tokens * args.vocab * 4 / 2**20:,.0f} MiB in float32)"
    )
    plain = run_fresh(args, patched=False)
    fused = run_fresh(args, patched=True)
    print(f"{'step':>4}  {'transformers':>12}  {'pyce fused':>12}")
    for i, (a, b) in enumerate(zip(plain["losses"], fused["losses"])):
        print(f"{i:>4}  {a:>12.6f}  {b:>12.6f}")
    worst = max(abs(a - b) / abs(a) for a, b in zip(plain["losses"], fused["losses"]))
    print(f"loss curves: largest relative difference {worst:.1e} (float32 rounding)")
    print(
        f"median step: transformers {plain['median_step_s'] * 1e3:,.0f} ms, pyce fused "
        f"{fused['median_step_s'] * 1e3:,.0f} ms ({plain['median_step_s'] / fused['median_step_s']:.2f} x)"
    )
    print(
        f"peak memory (whole process): transformers {plain['peak_rss_mib']:,.0f} MiB, pyce fused "
        f"{fused['peak_rss_mib']:,.0f} MiB ({plain['peak_rss_mib'] - fused['peak_rss_mib']:,.0f} MiB less)"
    )
    return {"plain": plain, "fused": fused, "max_relative_difference": worst}


if __name__ == "__main__":
    main()
