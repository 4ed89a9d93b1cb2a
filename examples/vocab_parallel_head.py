"""Train a language model's vocabulary head split across processes (pyce.torch.distributed).

The model is a bigram language model over a large vocabulary: each token is
embedded (E, V x D) and projected back to logits over the vocabulary by the
head (W, V x D) -- the layer that dominates an LLM's memory at large V. Here
the head is split by rows over the ranks: rank r holds
``W[vocab_start_r : vocab_start_r + V_r]`` (uneven widths are fine) and only
ever computes its own columns of the logits, in chunks of rows
(``vocab_parallel_linear_cross_entropy``: no N x V array anywhere). The
embedding is replicated; its gradient is the sum of every rank's share,
all-reduced inside the loss. The text is drawn from a fixed random Markov
chain, so the loss has a known floor: the chain's entropy rate.

Every run starts from the same seeded weights and sees the same batches, so
one process and any number of processes print the same loss curve.

    python examples/vocab_parallel_head.py                        # one process
    torchrun --nproc_per_node=2 examples/vocab_parallel_head.py   # the head split in two
    torchrun --nproc_per_node=4 examples/vocab_parallel_head.py --vocab 50000 --steps 50

On several machines, start the same command on each with torchrun's
rendezvous options (``--nnodes 2 --node_rank 0|1 --master_addr HOST
--master_port PORT``); the ranks of all machines then share the vocabulary.
"""

from __future__ import annotations

import argparse
import datetime
import os
import socket

import numpy as np
import torch
import torch.distributed as dist

import pyce
from pyce.torch.distributed import vocab_parallel_evaluate, vocab_parallel_linear_cross_entropy


def markov_text(vocab: int, length: int, branching: int, seed: int) -> tuple[np.ndarray, float]:
    """A token sequence from a random Markov chain where each token has `branching`
    likely successors; also the chain's entropy rate (the best loss possible)."""
    rng = np.random.default_rng(seed)
    successors = rng.integers(0, vocab, size=(vocab, branching))
    probs = rng.dirichlet(np.ones(branching), size=vocab)
    cumulative = probs.cumsum(axis=1)
    draws = rng.random(length)
    tokens = np.empty(length, dtype=np.int64)
    tokens[0] = 0
    for i in range(1, length):
        row = tokens[i - 1]
        k = int(np.searchsorted(cumulative[row], draws[i]))
        tokens[i] = successors[row, min(k, branching - 1)]
    entropy_rate = float(-np.mean(np.sum(probs * np.log(probs), axis=1)))
    return tokens, entropy_rate


def my_columns(vocab: int, world: int, rank: int) -> tuple[int, int]:
    """(vocab_start, width) of this rank: the vocabulary split as evenly as possible."""
    base, extra = divmod(vocab, world)
    width = base + (rank < extra)
    start = rank * base + min(rank, extra)
    return start, width


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab", type=int, default=4096)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--batch", type=int, default=512, help="tokens per step")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--lr", type=float, default=0.03, help="Adam's learning rate")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    if "RANK" not in os.environ:  # plain `python`: a process group of one, on loopback
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        os.environ.update(RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=60))
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    pyce.set_num_threads(max(1, (os.cpu_count() or 1) // world))

    tokens, floor = markov_text(args.vocab, args.steps * args.batch + 1, branching=4, seed=args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    embedding = (torch.randn(args.vocab, args.dim, generator=gen) * 0.1).requires_grad_()
    head = torch.randn(args.vocab, args.dim, generator=gen) * 0.1
    start, width = my_columns(args.vocab, world, rank)
    head_shard = head[start : start + width].clone().requires_grad_()  # this rank's rows only
    del head
    # Adam works element by element: each rank updates its own rows of the
    # head, and every rank the same replicated embedding.
    optimizer = torch.optim.Adam([embedding, head_shard], lr=args.lr)
    if rank == 0:
        print(
            f"{world} process(es): vocabulary {args.vocab} split as "
            f"{[my_columns(args.vocab, world, r)[1] for r in range(world)]}, D = {args.dim}, "
            f"entropy rate of the text {floor:.4f} nats"
        )

    for step in range(args.steps):
        batch = torch.from_numpy(tokens[step * args.batch : (step + 1) * args.batch + 1])
        hidden = embedding[batch[:-1]]
        loss = vocab_parallel_linear_cross_entropy(hidden, head_shard, batch[1:], vocab_start=start)
        optimizer.zero_grad()
        loss.backward()  # embedding.grad: the same on every rank (all-reduced inside the loss)
        optimizer.step()
        if rank == 0:
            print(f"step {step:3d}  loss {loss.item():.6f}")

    with torch.no_grad():
        batch = torch.from_numpy(tokens[-args.batch - 1 :])
        logits_shard = embedding[batch[:-1]] @ head_shard.T
        result = vocab_parallel_evaluate(logits_shard, batch[1:], vocab_start=start)
    if rank == 0:
        print(f"last batch, after training: {result}")
    # Every rank reaches the end before any tears the group down: a gloo rank
    # destroyed while a peer still has a pending exchange can abort at exit.
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
