"""One optimizer step over SmolLM2-135M-shaped parameters: RMSprop and AdamW, per-tensor loop,
``foreach`` and (AdamW) fused, side by side; the fastest of 5 steps each.

    python benchmarks/optimizer.py

The parameter shapes are those of SmolLM2-135M (tied 49,152 x 576 embedding, 30 layers of attention
and MLP projections and norms); values and gradients are random with a fixed seed. The last column
sums the parameters after the steps, so equal numbers show the variants compute the same update.
"""

from __future__ import annotations

import time

import torch

LAYER = [(576, 576), (192, 576), (192, 576), (576, 576), (1536, 576), (1536, 576), (576, 1536), (576,), (576,)]
SHAPES = [(49152, 576)] + LAYER * 30 + [(576,)]
VARIANTS = [
    ("rmsprop", "loop", torch.optim.RMSprop, {"foreach": False}),
    ("rmsprop", "foreach", torch.optim.RMSprop, {"foreach": True}),
    ("adamw", "loop", torch.optim.AdamW, {"foreach": False}),
    ("adamw", "foreach", torch.optim.AdamW, {"foreach": True}),
    ("adamw", "fused", torch.optim.AdamW, {"fused": True}),
]


def main() -> int:
    from tdpo.threads import physical_cores

    torch.set_num_threads(physical_cores())
    print(f"{'optimizer':>9}  {'variant':>7}  {'step ms':>7}  parameter sum after 6 steps")
    for name, variant, cls, options in VARIANTS:
        generator = torch.Generator().manual_seed(0)
        params = [torch.nn.Parameter(torch.randn(s, generator=generator)) for s in SHAPES]
        for p in params:
            p.grad = torch.randn(p.shape, generator=generator)
        optimizer = cls(params, lr=1e-3, **options)
        optimizer.step()
        fastest = float("inf")
        for _ in range(5):
            start = time.perf_counter()
            optimizer.step()
            fastest = min(fastest, time.perf_counter() - start)
        with torch.no_grad():
            total = sum(float(p.double().sum()) for p in params)
        print(f"{name:>9}  {variant:>7}  {fastest * 1000:7.0f}  {total:.6f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
