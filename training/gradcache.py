"""Gradient caching: a large contrastive batch on a small memory budget.

An in-batch contrastive loss couples every example of the batch, so the batch
cannot simply be split into independent micro-batches. Gradient caching (Gao et
al., 2021, "Scaling Deep Contrastive Learning Batch Size under Memory Limited
Setup") splits the *encoder* work instead:

1. encode every chunk without autograd and keep only the embeddings ([B, H]);
2. compute the loss on the full-batch embeddings and its gradient with respect
   to those embeddings (cheap: the graph is just the loss);
3. re-encode each chunk with autograd and back-propagate the cached embedding
   gradient of that chunk (``emb.backward(grad)``), accumulating parameter grads.

Parameter gradients equal those of one full-batch step (the chain rule splits
over rows), while peak activation memory is one chunk's. Step 3 must see the
same dropout masks as step 1, so the RNG state of every chunk is saved in step 1
and restored in step 3. Cost: one extra no-grad forward pass per chunk.

:func:`plain_backward` is the reference (every chunk encoded with autograd, one
loss, one backward); ``tests/unit/training/test_gradcache.py`` checks both give
the same gradients. :func:`gradcache_step` makes either a step of the one training
loop (``training.loop.fit``): it back-propagates itself and returns the detached loss.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple, TypeVar

import torch
from torch import Tensor, nn

BatchT = TypeVar("BatchT")


class Chunk(NamedTuple):
    """One forward pass worth of a view: model inputs and their attention mask."""

    inputs: Tensor  # [b, L] token ids, or [b, L, H] cached hidden states
    attention_mask: Tensor  # [b, L]


Encode = Callable[[Chunk], Tensor]  # chunk -> [b, H]
Loss = Callable[..., Tensor]  # one [B, H] tensor per view -> scalar


class _RngState:
    """The CPU (and, for a CUDA chunk, that device's) RNG state at one point."""

    def __init__(self, device: torch.device) -> None:
        self.cpu = torch.get_rng_state()
        self.cuda_device = device if device.type == "cuda" else None
        self.cuda = torch.cuda.get_rng_state(device) if self.cuda_device is not None else None

    def restore(self) -> None:
        torch.set_rng_state(self.cpu)
        if self.cuda_device is not None and self.cuda is not None:
            torch.cuda.set_rng_state(self.cuda, self.cuda_device)


def gradcache_backward(encode: Encode, views: Sequence[Sequence[Chunk]], loss_fn: Loss) -> Tensor:
    """Accumulate the parameter gradients of ``loss_fn(*[view embeddings])`` chunk by chunk.

    ``views``: for each view (e.g. queries, documents) its chunks, in row order;
    the view's embeddings are the chunks' outputs concatenated ([B, H]).
    Gradients are *added* to ``.grad`` (zero them before). Returns the detached loss.
    """
    if not views or any(len(v) == 0 for v in views):
        raise ValueError("every view needs at least one chunk")
    # 1. embeddings without autograd; remember each chunk's RNG state for the replay
    states: list[list[_RngState]] = []
    embeddings: list[Tensor] = []
    with torch.no_grad():
        for view in views:
            view_states: list[_RngState] = []
            parts: list[Tensor] = []
            for chunk in view:
                view_states.append(_RngState(chunk.inputs.device))
                parts.append(encode(chunk))  # [b, H]
            states.append(view_states)
            embeddings.append(torch.cat(parts))  # [B, H]
    # 2. loss on the full batch and d loss / d embedding
    leaves = [e.detach().requires_grad_(True) for e in embeddings]
    loss = loss_fn(*leaves)
    loss.backward()
    # 3. replay each chunk with autograd (same RNG) and push its cached gradient through
    rng_devices = [c.inputs.device for v in views for c in v if c.inputs.device.type == "cuda"]
    with torch.random.fork_rng(devices=sorted({d.index or 0 for d in rng_devices})):
        for view, leaf, view_states in zip(views, leaves, states, strict=True):
            assert leaf.grad is not None
            grads = leaf.grad.split([c.inputs.shape[0] for c in view])  # [b, H] each
            for chunk, grad, state in zip(view, grads, view_states, strict=True):
                state.restore()
                emb = encode(chunk)  # [b, H]
                emb.backward(grad)
    return loss.detach()


def plain_backward(encode: Encode, views: Sequence[Sequence[Chunk]], loss_fn: Loss) -> Tensor:
    """Reference: encode every chunk with autograd, one loss, one backward. Returns the detached loss."""
    if not views or any(len(v) == 0 for v in views):
        raise ValueError("every view needs at least one chunk")
    embeddings = [torch.cat([encode(c) for c in view]) for view in views]  # [B, H] per view
    loss = loss_fn(*embeddings)
    loss.backward()
    return loss.detach()


def gradcache_step(
    views: Callable[[BatchT], Sequence[Sequence[Chunk]]], encode: Encode, loss_fn: Loss, *, cache: bool = True
) -> Callable[[nn.Module, BatchT], Tensor]:
    """A step for ``training.loop.fit``: ``views(batch)`` cut into chunks, gradients accumulated by
    :func:`gradcache_backward` (``cache=False``: :func:`plain_backward`). ``encode`` runs the model
    being fitted. The step returns the detached loss, which tells ``fit`` not to back-propagate again."""
    backward = gradcache_backward if cache else plain_backward

    def step(model: nn.Module, batch: BatchT) -> Tensor:
        return backward(encode, views(batch), loss_fn)

    return step
