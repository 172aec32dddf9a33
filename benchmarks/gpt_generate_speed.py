"""CPU generation speed of the chapter-07 GPT: the course's key–value cache against a PyTorch peer.

What is timed: greedy decoding (``temperature=0``) of ``T - P`` new tokens after a ``P``-token
prompt, for a batch of ``B`` prompts, as tokens per second (``B (T - P)`` / seconds of one
generation call, prefill included). Four variants, each in its own subprocess:

* ``jax-cache``: ``lmcourse.generation.generate(model, prompt, T - P, temperature=0.0,
  use_cache=True)``: one jitted prefill over the prompt, then one jitted decode step per token
  (``GPT.extend`` writing into preallocated ``(B, h, n_ctx, d_k)`` buffers, one per layer for
  the keys and one for the values, donated to the step so that XLA writes in place; attention
  over all ``n_ctx`` positions with the unfilled ones masked).
* ``jax-no-cache``: the same call with ``use_cache=False``: every step reruns the model on the
  whole sequence, padded to the next power of two (few shapes, few compilations).
* ``torch-cache``: the PyTorch peer (``gpt_train_speed.build_torch_gpt``, eager,
  ``torch.set_num_threads(2)``, ``torch.inference_mode()``) with its cache: preallocated
  ``(layers, B, h, n_ctx, d_k)`` buffers written in place (not ``torch.cat``); each step's
  attention reads only the filled positions (eager PyTorch has no fixed shapes to keep).
* ``torch-no-cache``: the peer rerun on the exact sequence so far (no padding) every step.

All four start from the same weights: the JAX model ``GPT(config, rngs=nnx.Rngs(seed))``,
copied into the peer (``gpt_train_speed.jax_weights``). The model is *untrained*: greedy
decoding of random weights costs exactly what decoding a trained model of the same size costs
(the same operations on the same shapes), though the text is gibberish. The prompts are real:
``B`` windows of the validation works of the character-tokenised Shakespeare corpus
(``split_by_work``, ``CharTokenizer`` built on the whole corpus, as ``gpt_train_speed.py``).
Every variant's tokens are compared with ``torch-cache``'s (they agree when the four compute
the same model; float32 rounding can flip a near-tie of an untrained model's logits).

Per process and setting: the first call (JAX: tracing + compilation) is timed and reported
apart; then ``--reps`` calls are timed and their median kept. Over ``--rounds`` processes per
variant (frameworks alternating, the start rotated each round, ``_env.run_rounds``) the table
shows the median (and min-max) tokens/s, the ratio to ``torch-cache``, the median first-call
time, and the peak RSS of the process (all settings of a variant run in one process). Below it,
each framework's cache speed-up (cached / uncached tokens/s).

Usage::

    pip install -r benchmarks/requirements.txt     # torch 2.13.0 (CPU)
    python benchmarks/gpt_generate_speed.py                    # 4x128, context 64
    python benchmarks/gpt_generate_speed.py --full --batches 1,8 --json gen.json   # 6x384, 256
    python benchmarks/gpt_generate_speed.py --lengths 16:64,64:256 --context 256
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

if str(Path(__file__).resolve().parent) not in sys.path:  # _env.py, also when loaded by path
    sys.path.insert(0, str(Path(__file__).resolve().parent))
import _env  # noqa: E402
import gpt_train_speed as train_bench  # noqa: E402

ALL_VARIANTS = ["jax-cache", "jax-no-cache", "torch-cache", "torch-no-cache"]
BASELINE = "torch-cache"
TORCH_THREADS = 2
PACKAGES = ("jax", "jaxlib", "flax", "torch", "numpy")
QUICK = {"layers": 4, "heads": 4, "d_model": 128, "context": 64}     # gpt_train_speed's defaults
FULL = {"layers": 6, "heads": 6, "d_model": 384, "context": 256}     # chapter 07's full size


# --------------------------------------------------------------------------------------------
# Shared pieces (no JAX, no torch at import time: the test imports this file)
# --------------------------------------------------------------------------------------------

def default_lengths(n_ctx: int) -> list[tuple[int, int]]:
    """The two ``(prompt P, total T)`` settings: ``(16, 64), (64, n_ctx)`` for ``n_ctx >= 128``,
    else ``(n_ctx/8, n_ctx/2), (n_ctx/4, n_ctx)`` (8→32 and 16→64 at n_ctx = 64).

    Raises:
        ValueError: ``n_ctx < 8``.
    """
    if n_ctx < 8:
        raise ValueError(f"the context must be at least 8 tokens, got {n_ctx}")
    if n_ctx >= 128:
        return [(16, 64), (64, n_ctx)]
    return [(n_ctx // 8, n_ctx // 2), (n_ctx // 4, n_ctx)]


def parse_lengths(text: str, n_ctx: int) -> list[tuple[int, int]]:
    """``"8:32,16:64"`` → ``[(8, 32), (16, 64)]``; each ``1 <= P < T <= n_ctx``.

    Raises:
        ValueError: a malformed pair, or a pair outside ``1 <= P < T <= n_ctx``.
    """
    pairs = []
    for item in text.split(","):
        try:
            p, t = (int(x) for x in item.split(":"))
        except ValueError:
            raise ValueError(f"--lengths wants PROMPT:TOTAL pairs like 16:64, got {item!r}") from None
        if not 1 <= p < t <= n_ctx:
            raise ValueError(f"--lengths {item}: need 1 <= prompt < total <= context {n_ctx}")
        pairs.append((p, t))
    return pairs


def setting_name(batch: int, prompt: int, total: int) -> str:
    """``"b1 16->64"``: the key of one (batch, prompt, total) setting in the results."""
    return f"b{batch} {prompt}->{total}"


def torch_generate(model, prompt, max_new_tokens: int, *, use_cache: bool = True):
    """Greedy continuation of ``prompt`` by the PyTorch peer (``build_torch_gpt``).

    With the cache: ``model.extend`` on the prompt (prefill), then on one new token per step;
    the last step only takes the argmax (as ``lmcourse.generation.generate``). Without: the
    model reruns on the whole sequence so far every step. Runs under ``torch.inference_mode()``.

    Args:
        model: the peer (``init_cache``/``extend`` as documented in ``build_torch_gpt``).
        prompt: int ``(B, P)`` tensor of token ids in ``[0, V)``, ``P >= 1``.
        max_new_tokens: ``>= 0``, with ``P + max_new_tokens <= n_ctx`` (no sliding window here).
        use_cache: use the key–value cache.

    Returns:
        int64 tensor ``(B, P + max_new_tokens)``: the prompt, then the new tokens.

    Raises:
        ValueError: ``prompt`` not 2-D or empty, an id outside the vocabulary, a negative
            ``max_new_tokens``, or ``P + max_new_tokens > n_ctx``.
    """
    import torch

    vocab, n_ctx = model.wte.num_embeddings, model.wpe.num_embeddings
    if prompt.ndim != 2 or prompt.shape[1] == 0 or prompt.shape[0] == 0:
        raise ValueError(f"prompt must be a non-empty (B, P) tensor of ids, got shape "
                         f"{tuple(prompt.shape)}")
    if int(prompt.min()) < 0 or int(prompt.max()) >= vocab:
        raise ValueError(f"prompt ids must lie in [0, {vocab}); encode it with the model's "
                         "tokenizer")
    if not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be an integer >= 0, got {max_new_tokens!r}")
    if prompt.shape[1] + max_new_tokens > n_ctx:
        raise ValueError(f"prompt ({prompt.shape[1]}) + max_new_tokens ({max_new_tokens}) exceeds "
                         f"the context n_ctx={n_ctx}; generate fewer tokens")
    prompt = prompt.long()
    out = [prompt]
    with torch.inference_mode():
        if use_cache and max_new_tokens:
            logits, cache = model.extend(prompt, model.init_cache(prompt.shape[0]))
            logits = logits[:, -1]
        for i in range(max_new_tokens):
            if not use_cache:
                logits = model(torch.cat(out, dim=1))[:, -1]
            tok = logits.argmax(dim=-1, keepdim=True)
            out.append(tok)
            if use_cache and i + 1 < max_new_tokens:
                logits, cache = model.extend(tok, cache)
                logits = logits[:, -1]
    return torch.cat(out, dim=1)


def shakespeare_prompts(batch: int, length: int):
    """``batch`` real prompts of ``length`` characters: windows spread evenly over the
    validation works (``split_by_work``), tokenised with the corpus's ``CharTokenizer``.

    Returns:
        ``(ids int32 (batch, length), tokenizer)``.
    """
    from lmcourse.bpe import CharTokenizer
    from lmcourse.data.shakespeare import load_shakespeare, split_by_work

    corpus = load_shakespeare()
    tok = CharTokenizer.from_text(corpus.text())
    ids = tok.encode(corpus.text(split_by_work(corpus)["val"]))
    starts = [(k + 1) * (ids.size - length) // (batch + 1) for k in range(batch)]
    return np.stack([ids[s:s + length] for s in starts]).astype(np.int32), tok


# --------------------------------------------------------------------------------------------
# Preparation (one JAX process): the weights and the prompts
# --------------------------------------------------------------------------------------------

def _config(args, vocab_size: int):
    from lmcourse.param_count import GPTConfig

    return GPTConfig("bench char GPT", vocab_size=vocab_size, d_model=args.d_model,
                     layers=args.layers, heads=args.heads, n_ctx=args.context)


def prepare(args: argparse.Namespace, path: Path) -> dict:
    """Write ``path`` (npz: the weights under the peer's names, the prompts, the vocabulary size)."""
    from flax import nnx

    import lmcourse  # noqa: F401
    from lmcourse.models.gpt import GPT

    prompts, tok = shakespeare_prompts(max(args.batch_list), max(p for p, _ in args.length_list))
    cfg = _config(args, tok.vocab_size)
    model = GPT(cfg, rngs=nnx.Rngs(args.seed))
    np.savez(path, prompts=prompts, vocab_size=tok.vocab_size,
             **train_bench.jax_weights(model))
    return {"vocab_size": tok.vocab_size, "params": cfg.param_count(),
            "prompt_text": tok.decode(prompts[0])}


# --------------------------------------------------------------------------------------------
# Workers (one variant per process)
# --------------------------------------------------------------------------------------------

def _time_settings(generate_fn, args: argparse.Namespace, prompts: np.ndarray) -> dict:
    """Per setting: the first call's seconds, the median of ``--reps`` timed calls, tokens/s,
    and the first sequence's new tokens."""
    out = {}
    for b in args.batch_list:
        for p, t in args.length_list:
            name = setting_name(b, p, t)
            x = prompts[:b, :p]
            t0 = time.perf_counter()
            tokens = generate_fn(x, t - p)
            first = time.perf_counter() - t0
            times = []
            for _ in range(args.reps):
                t0 = time.perf_counter()
                generate_fn(x, t - p)
                times.append(time.perf_counter() - t0)
            sec = statistics.median(times)
            out[f"tok_s[{name}]"] = b * (t - p) / sec
            out[f"first_call_s[{name}]"] = first
            out[f"tokens[{name}]"] = np.asarray(tokens)[0, p:].tolist()
    return out


def _run_jax(variant: str, args: argparse.Namespace, data) -> dict:
    from flax import nnx

    import lmcourse  # noqa: F401  (the course's CPU flag, as the notebooks run)
    from lmcourse.generation import generate
    from lmcourse.models.gpt import GPT

    model = GPT(_config(args, int(data["vocab_size"])), rngs=nnx.Rngs(args.seed))
    weights = train_bench.jax_weights(model)
    if any(not np.array_equal(weights[k], data[k]) for k in weights):
        raise RuntimeError("the JAX model's weights differ from the prepared ones")
    use_cache = variant == "jax-cache"

    def gen(x, n):
        return generate(model, x, n, temperature=0.0, use_cache=use_cache)

    return _time_settings(gen, args, data["prompts"])


def _run_torch(variant: str, args: argparse.Namespace, data) -> dict:
    import torch

    torch.set_num_threads(TORCH_THREADS)
    model = train_bench.build_torch_gpt(int(data["vocab_size"]), args.d_model, args.layers,
                                        args.heads, args.context)
    model.load_state_dict({k: torch.from_numpy(data[k])
                           for k in train_bench.torch_names(args.layers)})
    model.eval()
    use_cache = variant == "torch-cache"

    def gen(x, n):
        return torch_generate(model, torch.from_numpy(x), n, use_cache=use_cache)

    result = _time_settings(gen, args, data["prompts"])
    result["threads"] = torch.get_num_threads()
    return result


def worker(variant: str, args: argparse.Namespace) -> None:
    """Run one variant and write its measurements (or its error) as JSON to ``args.result``."""
    try:
        with np.load(args.data) as f:
            data = {k: f[k] for k in f.files}
        run = _run_jax if variant.startswith("jax") else _run_torch
        result = run(variant, args, data)
    except Exception as exc:
        result = _env.error_record(exc)
    result["peak_rss_mb"] = _env.peak_rss_mb()
    Path(args.result).write_text(json.dumps(result))


# --------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------

def _spawn(variant: str, args: argparse.Namespace, data: Path, result: Path) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", variant,
           "--data", str(data), "--result", str(result), "--seed", str(args.seed),
           "--reps", str(args.reps), "--layers", str(args.layers), "--heads", str(args.heads),
           "--d-model", str(args.d_model), "--context", str(args.context),
           "--batches", args.batches, "--lengths", args.lengths]
    return _env.spawn_worker(cmd, dict(os.environ, PYTHONUNBUFFERED="1"), result, args.timeout)


def summarize(variants: list[str], runs: dict[str, list[dict]], settings: list[str]
              ) -> dict[str, dict]:
    """Medians over the successful rounds, ratios to ``torch-cache``, cache speed-ups, and
    whether each variant's tokens equal ``torch-cache``'s (first round)."""
    fields = [(f"tok_s[{s}]", "spread") for s in settings]
    fields += [(f"first_call_s[{s}]", "median") for s in settings]
    fields += [("peak_rss_mb", "max")] + [(f"tokens[{s}]", "first") for s in settings]
    summary = _env.summarize_rounds(
        variants, runs, fields, baseline=BASELINE,
        ratios=[(f"tok_s[{s}]", f"vs_{BASELINE}[{s}]") for s in settings])
    base = summary.get(BASELINE, {})
    for s in summary.values():
        for name in settings:
            key = f"tokens[{name}]"
            if key in s and key in base:
                s[f"same_tokens_as_{BASELINE}[{name}]"] = s[key] == base[key]
    for fw in ("jax", "torch"):
        cached, plain = summary.get(f"{fw}-cache", {}), summary.get(f"{fw}-no-cache", {})
        for name in settings:
            key = f"tok_s[{name}]"
            if key in cached and key in plain:
                cached[f"cache_speedup[{name}]"] = cached[key] / plain[key]
    return summary


def print_table(variants: list[str], summary: dict[str, dict], settings: list[str]) -> None:
    head = (f"{'setting':<12} {'variant':<15} {'tokens/s':>9} {'(min-max)':>17} "
            f"{'x ' + BASELINE:>13} {'1st call s':>10} {'same tokens':>11}")
    print(head)
    print("-" * len(head))
    for name in settings:
        for v in variants:
            s = summary[v]
            key = f"tok_s[{name}]"
            if key not in s:
                print(f"{name:<12} {v:<15} FAILED: {s.get('error')}")
                continue
            spread = f"{s[key + '_min']:,.0f}-{s[key + '_max']:,.0f}"
            ratio = s.get(f"vs_{BASELINE}[{name}]")
            same = s.get(f"same_tokens_as_{BASELINE}[{name}]")
            print(f"{name:<12} {v:<15} {s[key]:>9,.0f} {spread:>17} "
                  f"{'-' if ratio is None else format(ratio, '.2f'):>13} "
                  f"{s[f'first_call_s[{name}]']:>10.2f} {'-' if same is None else str(same):>11}")
    print("\ncache speed-up (cached / uncached tokens/s, same framework):")
    for name in settings:
        ups = [f"{fw} {summary[f'{fw}-cache'][f'cache_speedup[{name}]']:.2f}x"
               for fw in ("jax", "torch")
               if f"cache_speedup[{name}]" in summary.get(f"{fw}-cache", {})]
        print(f"  {name:<12} " + ("  ".join(ups) if ups else "-"))
    print("\npeak RSS per process (all settings): " + ", ".join(
        f"{v} {summary[v]['peak_rss_mb']:,.0f} MB" for v in variants
        if "peak_rss_mb" in summary[v]))
    for v in variants:
        if "error" in summary[v] and "rounds_ok" in summary[v]:
            print(f"{v}: {summary[v]['rounds_failed']} round(s) failed: {summary[v]['error']}")


def _positive_ints(text: str, what: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",")]
    except ValueError:
        raise ValueError(f"{what} wants comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise ValueError(f"{what} must be integers >= 1, got {text!r}")
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="processes per variant (default 3)")
    parser.add_argument("--reps", type=int, default=5,
                        help="timed calls per setting in a process, median kept (default 5)")
    parser.add_argument("--full", action="store_true",
                        help="chapter 07's full size: 6 layers x 6 heads x 384 wide, context 256")
    parser.add_argument("--layers", type=int, help=f"default {QUICK['layers']} ({FULL['layers']} "
                        "with --full)")
    parser.add_argument("--heads", type=int, help=f"default {QUICK['heads']} ({FULL['heads']})")
    parser.add_argument("--d-model", type=int, help=f"default {QUICK['d_model']} "
                        f"({FULL['d_model']})")
    parser.add_argument("--context", type=int, help=f"n_ctx, default {QUICK['context']} "
                        f"({FULL['context']})")
    parser.add_argument("--batches", default="1", help="comma-separated batch sizes (default 1)")
    parser.add_argument("--lengths", help="PROMPT:TOTAL pairs, e.g. 16:64,64:256 (default: "
                        "8:32,16:64 at context 64; 16:64,64:n_ctx at context >= 128)")
    parser.add_argument("--variants", default=",".join(ALL_VARIANTS),
                        help="comma-separated subset of: " + ",".join(ALL_VARIANTS))
    parser.add_argument("--seed", type=int, default=0, help="the weights' seed (default 0)")
    parser.add_argument("--timeout", type=float, default=1800,
                        help="seconds before a variant's process is killed (default 1800)")
    parser.add_argument("--json", metavar="PATH", help="also write all results to this JSON file")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for key, value in (FULL if args.full else QUICK).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    for name in ("rounds", "reps", "layers", "heads", "d_model", "context"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.d_model % args.heads:
        parser.error(f"--d-model {args.d_model} must be divisible by --heads {args.heads}")
    try:
        args.batch_list = _positive_ints(args.batches, "--batches")
        if args.lengths is None:
            args.lengths = ",".join(f"{p}:{t}" for p, t in default_lengths(args.context))
        args.length_list = parse_lengths(args.lengths, args.context)
    except ValueError as exc:
        parser.error(str(exc))

    if args.worker:
        worker(args.worker, args)
        return 0

    variants = _env.variants_or_exit(parser, args.variants, ALL_VARIANTS)
    order = _env.by_framework(variants, ("jax", "torch"))
    settings = [setting_name(b, p, t) for b in args.batch_list for p, t in args.length_list]

    versions, machine = _env.versions(PACKAGES), _env.machine()
    load_start = _env.print_environment(versions, machine)

    def run_one(v: str, rnd: int) -> dict:
        r = _spawn(v, args, Path(tmp) / "data.npz", Path(tmp) / f"{v}-{rnd}.json")
        r["round"] = rnd
        msg = r["error"] if "error" in r else ", ".join(
            f"{s} {r[f'tok_s[{s}]']:,.0f} tok/s" for s in settings)
        print(f"  round {rnd + 1}/{args.rounds} {v:<15} {msg} [{r['process_wall_s']:.0f} s]",
              flush=True)
        return r

    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        info = prepare(args, Path(tmp) / "data.npz")
        print(f"GPT {args.layers} layers x {args.heads} heads x {args.d_model} wide, context "
              f"{args.context}, {info['params']:,} parameters (untrained, seed {args.seed}), "
              f"vocabulary {info['vocab_size']} characters; greedy; batches {args.batch_list}, "
              f"prompt->total {args.length_list}; first prompt {info['prompt_text'][:40]!r}...; "
              f"{args.reps} timed call(s) per setting, {args.rounds} round(s) x "
              f"{len(order)} variant(s)\n")
        by_variant = _env.run_rounds(order, args.rounds, run_one)
    runs = {v: by_variant[v] for v in variants}
    total_s = time.perf_counter() - t_all
    load_end = _env.load_average()

    summary = summarize(variants, runs, settings)
    print(f"\nmedians over {args.rounds} round(s); tokens/s = batch x new tokens / seconds of "
          f"one generation call (prefill included); ratios to {BASELINE} (same run)\n")
    print_table(variants, summary, settings)
    print(f"\ntotal {total_s:.0f} s; load average at end: {_env.format_load(load_end)}")

    if args.json:
        settings_json = {k: v for k, v in vars(args).items()
                         if k not in ("worker", "result", "data", "json")}
        settings_json.update(order=order, torch_threads=TORCH_THREADS, **info)
        _env.write_results(args.json, versions=versions, machine=machine, settings=settings_json,
                           load_start=load_start, load_end=load_end, total_s=total_s,
                           summary=summary, runs=runs, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
