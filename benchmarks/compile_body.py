"""``torch.compile`` of the model body against eager, forward and backward (issue 12, target 3).

The built-in model's body (SmolLM2-135M, float32) on 8 rows of 190 random tokens in training mode: the
eager forward and backward (a mean-square of the final hidden states as the loss), timed 3 times;
then ``torch.compile`` (static shapes: its best case), the first call timed apart (the compile), then 3
calls; then eager again. Prints each time and the ratio of the medians.

    python benchmarks/compile_body.py
"""

from __future__ import annotations

import statistics
import time


def main() -> int:
    import torch

    from tdpo.models import load_causal_lm
    from tdpo.threads import configure_threads

    threads = configure_threads()
    torch.manual_seed(0)
    model = load_causal_lm("builtin")
    model.train()
    ids = torch.randint(0, model.config.vocab_size, (8, 190))

    def step(body) -> float:
        start = time.perf_counter()
        hidden = body(input_ids=ids, use_cache=False).last_hidden_state
        hidden.float().pow(2).mean().backward()
        model.zero_grad(set_to_none=True)
        return time.perf_counter() - start

    step(model.model)  # warm-up
    eager = [step(model.model) for _ in range(3)]
    compiled_body = torch.compile(model.model, dynamic=False)
    first = step(compiled_body)
    compiled = [step(compiled_body) for _ in range(3)]
    eager += [step(model.model) for _ in range(3)]
    print(f"body forward + backward, 8 x 190 tokens, {threads} thread(s), torch {torch.__version__}")
    print(f"  eager           : {', '.join(f'{t:.2f}' for t in eager)} s (median {statistics.median(eager):.2f})")
    print(f"  compile (1st)   : {first:.1f} s")
    print(f"  compiled        : {', '.join(f'{t:.2f}' for t in compiled)} s (median {statistics.median(compiled):.2f})")
    print(f"  eager / compiled: {statistics.median(eager) / statistics.median(compiled):.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
