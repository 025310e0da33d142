"""Time and peak memory of TDPO2 loss + backward: full-logits path against the chunked path.

Each measurement runs in its own process (peak resident memory is per process) under an address-space
limit, so a configuration too large for the machine reports "out of memory" instead of waking the
kernel's OOM killer. Inputs are random final hidden states and head weights in float32, as a model
would hand them over; the full path projects them to logits itself, as a model's head does.

    python benchmarks/token_stats.py                      # the issue's grid
    python benchmarks/token_stats.py --vocab 49152 --seq 512 --repeats 3

"Extra memory" is the peak resident memory of the process during loss + backward minus its resident
memory just before (inputs already allocated): what the statistics themselves cost.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

WORKER_FLAG = "--worker"


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def worker(args: argparse.Namespace) -> None:
    import torch

    from tdpo.loss import loss_from_hidden, loss_from_logits

    torch.manual_seed(0)
    s, t, h, v = 2 * args.pairs, args.seq, args.hidden, args.vocab
    policy_hidden = torch.randn(s, t, h)
    reference_hidden = torch.randn(s, t, h)
    policy_weight = (torch.randn(v, h) / h**0.5).requires_grad_()
    reference_weight = torch.randn(v, h) / h**0.5
    labels = torch.randint(0, v, (s, t))
    labels[:, : args.prompt] = -100

    def step():
        hidden = policy_hidden.clone().requires_grad_()
        policy_weight.grad = None
        if args.path == "full":
            policy_logits = hidden @ policy_weight.t()
            with torch.no_grad():
                reference_logits = reference_hidden @ reference_weight.t()
            loss, _ = loss_from_logits(policy_logits, reference_logits, labels, loss="tdpo2")
        else:
            loss, _ = loss_from_hidden(hidden, policy_weight, reference_hidden, reference_weight, labels,
                                       loss="tdpo2", chunk_size=args.chunk_size)
        loss.backward()
        return loss.item()

    base = rss_bytes()
    times = []
    try:
        for _ in range(args.repeats):
            start = time.perf_counter()
            loss = step()
            times.append(time.perf_counter() - start)
    except RuntimeError as err:  # allocation refused under the address-space limit
        if "memory" not in str(err).lower() and "alloc" not in str(err).lower():
            raise
        print(json.dumps({"oom": True}))
        return
    print(json.dumps({"oom": False, "seconds": min(times), "extra_bytes": peak_rss_bytes() - base, "loss": loss}))


def run(path: str, vocab: int, seq: int, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, WORKER_FLAG, "--path", path, "--vocab", str(vocab), "--seq", str(seq),
           "--pairs", str(args.pairs), "--hidden", str(args.hidden), "--prompt", str(args.prompt),
           "--chunk-size", str(args.chunk_size), "--repeats", str(args.repeats),
           "--threads", str(args.threads), "--memory-limit-gb", str(args.memory_limit_gb)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        if proc.returncode < 0 or "memory" in proc.stderr.lower():
            return {"oom": True}
        raise RuntimeError(f"worker failed ({path}, V={vocab}, T={seq}):\n{proc.stderr[-2000:]}")
    return json.loads(lines[-1])


def fmt_mem(result: dict) -> str:
    return "out of memory" if result["oom"] else f"{result['extra_bytes'] / 2**20:,.0f} MiB"


def fmt_time(result: dict) -> str:
    return "-" if result["oom"] else f"{result['seconds']:.2f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(WORKER_FLAG, action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--path", choices=["full", "chunked"], help=argparse.SUPPRESS)
    parser.add_argument("--vocab", type=int, nargs="+", default=[49152, 262144])
    parser.add_argument("--seq", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=576)
    parser.add_argument("--prompt", type=int, default=64, help="prompt tokens per row (labelled -100)")
    parser.add_argument("--chunk-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=2, help="timed repeats; the fastest is reported")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--memory-limit-gb", type=float, default=20.0,
                        help="address-space limit per measurement; larger runs report out of memory")
    args = parser.parse_args()

    if args.worker:
        if args.memory_limit_gb > 0:
            limit = int(args.memory_limit_gb * 2**30)
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        args.vocab, args.seq = args.vocab[0], args.seq[0]
        worker(args)
        return

    print(f"TDPO2 loss + backward, {args.pairs} pairs, hidden {args.hidden}, prompt {args.prompt} tokens, "
          f"chunk {args.chunk_size}, float32, fastest of {args.repeats}; limit {args.memory_limit_gb:g} GB")
    header = (f"{'vocab':>7} {'tokens':>6} | {'full time':>10} {'chunked time':>12} {'ratio':>6} | "
              f"{'full extra mem':>15} {'chunked extra mem':>17} {'ratio':>6}")
    print(header)
    print("-" * len(header))
    for vocab in args.vocab:
        for seq in args.seq:
            full = run("full", vocab, seq, args)
            chunked = run("chunked", vocab, seq, args)
            if not full["oom"] and not chunked["oom"]:
                assert abs(full["loss"] - chunked["loss"]) < 1e-3 * max(1.0, abs(full["loss"])), (full, chunked)
                t_ratio = f"{chunked['seconds'] / full['seconds']:.2f}x"
                m_ratio = f"1/{full['extra_bytes'] / max(chunked['extra_bytes'], 1):.1f}"
            else:
                t_ratio = m_ratio = "-"
            print(f"{vocab:>7} {seq:>6} | {fmt_time(full):>10} {fmt_time(chunked):>12} {t_ratio:>6} | "
                  f"{fmt_mem(full):>15} {fmt_mem(chunked):>17} {m_ratio:>6}", flush=True)


if __name__ == "__main__":
    main()
