"""Chapter 07's GPT on the contiguous 90/10 split of the Shakespeare corpus, for comparison.

Chapter 07 holds out whole works (new plays) for validation and test. Published character-level
results (nanoGPT's ``shakespeare_char``) instead cut one text into its first 90% for training and
its last 10% for validation. This script trains the chapter's GPT with the chapter's recipe on
the first 90% of our corpus (``lmcourse.data.shakespeare.contiguous_split``) and reports bits per
character on the last 10%, with the unigram and bigram baselines on the same cut, so the two
protocols can be set side by side. The notebook reads the JSON this writes.

Usage::

    python tools/gpt_contiguous.py --scale quick     # about a minute of CPU training
    python tools/gpt_contiguous.py --scale full      # nanoGPT's shakespeare_char size; a GPU

Writes ``results/extra/07_gpt_contiguous.<scale>.json`` (the notebooks' run-log layout; kept out of
``results/*.json``, which holds one log per notebook for the README's table).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

from lmcourse.models.gpt import SHAKESPEARE_CHAR  # noqa: E402  (the recipes notebooks/07_gpt.ipynb uses)


def run(scale: str) -> dict:
    """Train on the first 90%, score the last 10%; return ``{name: {"value", "unit"}}``."""
    from flax import nnx

    from lmcourse.baselines import ngram_bits_per_token, ngram_log_probs
    from lmcourse.bpe import CharTokenizer
    from lmcourse.data.shakespeare import contiguous_split, load_shakespeare
    from lmcourse.models.gpt import (
        GPT,
        GPTConfig,
        evaluate_lm,
        make_lm_optimizer,
        random_windows,
        train_step,
    )
    from lmcourse.training import train_loop

    s = SHAKESPEARE_CHAR[scale]
    head, tail = contiguous_split(load_shakespeare().text(), 0.9)
    tokenizer = CharTokenizer.from_text(head + tail)    # tail characters unseen in head stay scorable
    train_ids, val_ids = tokenizer.encode(head), tokenizer.encode(tail)
    vocab = tokenizer.vocab_size
    results = {"train characters": {"value": len(head), "unit": ""},
               "held-out characters (last 10%)": {"value": len(tail), "unit": ""}}
    # The smoothing k is chosen on the last 10% of the training part (never on the scored tail),
    # then the counts are refitted on all of it.
    fit_ids, tune_ids = train_ids[: int(0.9 * len(train_ids))], train_ids[int(0.9 * len(train_ids)):]
    for order, name in ((1, "unigram"), (2, "bigram")):
        k_best = min((0.01, 0.1, 1.0), key=lambda k: ngram_bits_per_token(
            ngram_log_probs(fit_ids, vocab, order, k), tune_ids))
        bits = ngram_bits_per_token(ngram_log_probs(train_ids, vocab, order, k_best), val_ids)
        results[f"{name} bits/char (last 10%)"] = {"value": round(bits, 3), "unit": "bits/char"}
        results[f"{name} smoothing k"] = {"value": k_best, "unit": ""}
    config = GPTConfig("char GPT", vocab_size=vocab, **s["model"])
    model = GPT(config, rngs=nnx.Rngs(0), dropout_rate=s["dropout"])
    optimizer = make_lm_optimizer(model, steps=s["steps"], peak_lr=s["peak_lr"],
                                  warmup_steps=s["warmup"])
    model.train()
    history = train_loop(lambda b: train_step(model, optimizer, b.x, b.y),
                         random_windows(train_ids, s["batch"], config.n_ctx, rng=0),
                         steps=s["steps"], desc="pretrain (90%)", unit="tokens",
                         batch_size=s["batch"] * config.n_ctx)
    model.eval()
    nats = evaluate_lm(model, val_ids)
    results["gpt parameters"] = {"value": config.param_count(), "unit": ""}
    results["gpt steps"] = {"value": s["steps"], "unit": ""}
    results["gpt bits/char (last 10%)"] = {"value": round(nats / math.log(2), 3), "unit": "bits/char"}
    results["gpt nats/char (last 10%)"] = {"value": round(nats, 3), "unit": "nats/char"}
    results["gpt train seconds"] = {"value": round(history.wall_seconds, 1), "unit": "s"}
    return results


def main(argv: list[str] | None = None) -> int:
    """Parse ``--scale``, run, write the JSON; return the exit code."""
    import jax
    from run_course import cpu_model, git_state, load_average

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", choices=sorted(SHAKESPEARE_CHAR), default="quick")
    args = parser.parse_args(argv)
    commit, load_start, start = git_state(), load_average(), time.perf_counter()
    results = run(args.scale)
    import importlib.metadata as md
    payload = {
        "notebook": "tools/gpt_contiguous.py",
        "scale": args.scale,
        "command": f"python tools/gpt_contiguous.py --scale {args.scale}",
        "seconds": round(time.perf_counter() - start, 1),
        "device": f"{jax.devices()[0]} ({jax.default_backend()})",
        "machine": f"{platform.machine()} {cpu_model('')}, {os.cpu_count()} CPU cores, "
                   f"{platform.system()}",
        "versions": {n: md.version(n) for n in ("jax", "jaxlib", "flax", "optax", "numpy")},
        "git_commit": commit,
        "load_average_start_end": [load_start, load_average()],
        "results": results,
    }
    out = ROOT / "results" / "extra" / f"07_gpt_contiguous.{args.scale}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(payload, indent=1, ensure_ascii=False) + "\n")
    print(json.dumps(results, indent=1))
    print(f"wrote {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
