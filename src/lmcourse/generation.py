"""Text generation with a language model: greedy, temperature, top-k and top-p sampling.

Used in chapters: 07.

Autoregressive decoding: the model gives a distribution over the next token, one token is
chosen, appended, and the model is asked again. Choices (all seeded with explicit JAX keys):

* **greedy**: the most probable token (``temperature=0``);
* **temperature** ``τ > 0``: sample from ``softmax(logits / τ)``; ``τ < 1`` sharpens the
  distribution, ``τ > 1`` flattens it;
* **top-k** (Fan et al. 2018, *Hierarchical Neural Story Generation*, §5.4): sample only among the
  ``k`` most probable tokens (renormalised);
* **top-p**, nucleus sampling (Holtzman et al. 2020, *The Curious Case of Neural Text
  Degeneration*, ICLR, §3.1 eq. 2-3): sample among the smallest set of most probable tokens whose
  total probability reaches ``p``.

Order (as Hugging Face ``generate``): logits / τ, then top-k, then top-p, then sample. Ties at the
cut (two tokens with the same logit) are all kept, so top-k may keep more than ``k`` tokens when
the ``k``-th value is tied; the result is then still a valid distribution.

:func:`generate` uses the model's key–value cache by default (:meth:`lmcourse.models.gpt.GPT.
extend`: a prefill on the prompt, then one token per step); ``use_cache=False`` reruns the
model on the whole sequence every step (the reference the cache is tested against). The model
has learned positions for ``n_ctx`` tokens only: once the sequence is longer, each step
conditions on the last ``n_ctx`` tokens (a sliding window, without the cache), in both modes.

Bad input (each a ``ValueError`` saying what to do, never a silent NaN): an empty prompt, a
prompt longer than ``n_ctx`` (choice: an error, not a silent cut; keep the last ``n_ctx`` tokens
yourself with ``prompt[-n_ctx:]`` if that is what you want), a token id outside the vocabulary,
``temperature < 0`` or not finite, ``top_k < 1``, ``top_p`` outside ``(0, 1]``, no ``key`` when
sampling.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from lmcourse.validation import check_float, check_ids, check_int

__all__ = ["check_sampling", "generate", "sample_logits", "top_k_filter", "top_p_filter"]


def check_sampling(temperature: float, top_k: int | None, top_p: float | None,
                   vocab_size: int | None = None) -> tuple[float, int | None, float | None]:
    """Check sampling options; return them as ``(float, int | None, float | None)``.

    ``top_k`` larger than ``vocab_size`` is reduced to it (nothing to cut).

    Raises:
        ValueError: ``temperature`` negative, NaN or infinite (0 means greedy); ``top_k`` not an
            integer >= 1; ``top_p`` not in ``(0, 1]``.
    """
    t = check_float("temperature", temperature, 0.0)
    if top_k is not None:
        top_k = check_int("top_k", top_k, 1)
        if vocab_size is not None:
            top_k = min(top_k, vocab_size)
    if top_p is not None:
        top_p = check_float("top_p", top_p, 0.0, 1.0, low_open=True)
    return t, top_k, top_p


def top_k_filter(logits: jax.Array, k: int) -> jax.Array:
    """Keep the ``k`` largest logits of each row, set the others to ``-inf``.

    Args:
        logits: float ``(..., V)``; k: integer in ``[1, V]`` (static).

    Returns:
        float ``(..., V)``; entries tied with the ``k``-th largest are kept too.

    Raises:
        ValueError: ``k`` not an integer in ``[1, V]``.
    """
    k = check_int("top_k", k, 1)
    if k > logits.shape[-1]:
        raise ValueError(f"top_k={k} is larger than the vocabulary ({logits.shape[-1]})")
    kth = jax.lax.top_k(logits, k)[0][..., -1:]
    return jnp.where(logits >= kth, logits, -jnp.inf)


def top_p_filter(logits: jax.Array, p: float | jax.Array) -> jax.Array:
    """Nucleus filter (Holtzman et al. 2020, §3.1): keep the smallest set of most probable tokens
    whose probability sum reaches ``p``; set the others to ``-inf``.

    A token is kept when the probability of the tokens ranked before it is ``< p``; the most
    probable token is therefore always kept, and ``p = 1`` keeps every token. Tokens tied with
    the last kept one are kept too.

    Args:
        logits: float ``(..., V)``; p: in ``(0, 1]`` (may be a traced scalar).

    Returns:
        float ``(..., V)``.

    Raises:
        ValueError: a concrete ``p`` outside ``(0, 1]``.
    """
    if not isinstance(p, jax.core.Tracer):
        check_float("top_p", p, 0.0, 1.0, low_open=True)
    probs = jax.nn.softmax(logits, axis=-1)
    sorted_probs = -jnp.sort(-probs, axis=-1)                          # descending
    before = jnp.cumsum(sorted_probs, axis=-1) - sorted_probs          # mass ranked before
    kept = before < p
    threshold = jnp.min(jnp.where(kept, sorted_probs, jnp.inf), axis=-1, keepdims=True)
    return jnp.where(probs >= threshold, logits, -jnp.inf)


def _sample_impl(logits, key, temperature, top_p, top_k, greedy, nucleus):
    if greedy:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    logits = logits.astype(jnp.float32) / temperature
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    if nucleus:
        logits = top_p_filter(logits, top_p)
    return jax.random.categorical(key, logits, axis=-1).astype(jnp.int32)


@functools.partial(jax.jit, static_argnames=("top_k", "greedy", "nucleus"))
def _sample(logits, key, temperature, top_p, *, top_k, greedy, nucleus):
    return _sample_impl(logits, key, temperature, top_p, top_k, greedy, nucleus)


def sample_logits(logits: jax.Array, key: jax.Array | None = None, *, temperature: float = 1.0,
                  top_k: int | None = None, top_p: float | None = None) -> jax.Array:
    """Choose one token per row of ``logits``.

    Args:
        logits: float ``(..., V)`` next-token scores.
        key: a JAX PRNG key (``jax.random.key(seed)``); not needed for greedy.
        temperature: ``0`` → greedy (argmax; ``top_k``/``top_p`` then change nothing), ``> 0``
            → sample from ``softmax(logits / temperature)`` after the filters.
        top_k: keep only the ``k`` most probable tokens (``None``: no cut).
        top_p: keep only the nucleus of mass ``p`` in ``(0, 1]`` (``None``: no cut).

    Returns:
        int32 ``(...)`` token ids.

    Raises:
        ValueError: as :func:`check_sampling`; ``key`` missing when sampling.
    """
    t, top_k, top_p = check_sampling(temperature, top_k, top_p, logits.shape[-1])
    greedy = t == 0.0
    if not greedy and key is None:
        raise ValueError("sampling needs a PRNG key: pass key=jax.random.key(0) (or "
                         "temperature=0 for greedy decoding)")
    return _sample(logits, key if key is not None else jax.random.key(0),
                   jnp.float32(t if t > 0 else 1.0), jnp.float32(top_p or 1.0),
                   top_k=top_k, greedy=greedy, nucleus=top_p is not None and top_p < 1.0)


@functools.lru_cache(maxsize=16)
def _prefill_function(graphdef, treedef):
    """The jitted prefill for one model structure (it does not depend on the sampling options,
    so changing them does not compile it again). The empty cache passed in is donated: XLA
    writes the prompt's keys and values into its buffers instead of copying them."""
    def prefill(leaves, ids, cache):
        model = nnx.merge(graphdef, jax.tree.unflatten(treedef, leaves))
        logits, cache = model.extend(ids, cache)
        return logits[:, -1], cache

    return jax.jit(prefill, donate_argnums=2)


@functools.lru_cache(maxsize=16)
def _step_functions(graphdef, treedef, opts: tuple) -> dict:
    """Jitted prefill / decode / window steps for one model structure and sampling options.

    The model's parameters travel as a flat list of arrays (cheap to pass every step); each step
    splits the key once (``key, sub = split(key)``) and samples with ``sub``, in every path, so
    cached and uncached generation draw the same random numbers. The decode step donates the
    cache (argument 2): the new token's key and value are written into the same buffers in
    place, where an undonated cache would be copied whole every step. Together with the
    per-layer buffers of ``GPT.init_cache`` this gave 3.5x the tokens/s at batch 8 on chapter
    07's full-size model, against the former stacked, undonated cache (``benchmarks/README.md``;
    the two parts were not measured apart in a committed run).
    """
    def model_of(leaves):
        return nnx.merge(graphdef, jax.tree.unflatten(treedef, leaves))

    def sample(logits, key, temperature, top_p):
        key, sub = jax.random.split(key)
        return _sample_impl(logits, sub, temperature, top_p, *opts), key

    def cached_step(leaves, logits, cache, key, temperature, top_p):
        tok, key = sample(logits, key, temperature, top_p)
        new_logits, cache = model_of(leaves).extend(tok[:, None], cache)
        return tok, new_logits[:, -1], cache, key

    def window_step(leaves, ids, last, key, temperature, top_p):
        logits = jnp.take(model_of(leaves)(ids), last, axis=1)
        return sample(logits, key, temperature, top_p)

    return {"prefill": _prefill_function(graphdef, treedef), "cached_step": jax.jit(cached_step, donate_argnums=2),
            "sample": jax.jit(sample), "window_step": jax.jit(window_step)}


def _bucket(n: int, n_ctx: int) -> int:
    """The padded length for an uncached step: the next power of two >= n, at most n_ctx (few
    distinct shapes, so few compilations)."""
    return min(n_ctx, 1 << max(0, math.ceil(math.log2(n))))


def generate(model, prompt_ids, max_new_tokens: int, *, temperature: float = 1.0,
             top_k: int | None = None, top_p: float | None = None, key: jax.Array | None = None,
             use_cache: bool = True) -> np.ndarray:
    """Continue ``prompt_ids`` by ``max_new_tokens`` tokens, autoregressively.

    Args:
        model: a :class:`lmcourse.models.gpt.GPT` (any module with ``config``, ``__call__``,
            ``init_cache`` and ``extend`` as there). Dropout is off during the call; the model's
            modes are restored afterwards.
        prompt_ids: int ``(T,)`` or ``(B, T)``, ``1 <= T <= n_ctx``, ids in ``[0, V)``.
        max_new_tokens: integer >= 0.
        temperature, top_k, top_p: as :func:`sample_logits` (``temperature=0``: greedy).
        key: a JAX PRNG key; split once per step, so the same key gives the same text.
        use_cache: use the key–value cache (prefill, then one token per step); ``False``
            recomputes the whole sequence each step (same result, slower).

    Returns:
        int32 NumPy array ``(T + max_new_tokens,)`` or ``(B, T + max_new_tokens)``: the prompt
        followed by the new tokens. Beyond ``n_ctx`` tokens each step sees the last ``n_ctx``.

    Raises:
        ValueError: an empty prompt, a prompt longer than ``n_ctx``, a bad id, a bad sampling
            option or a missing key (see the module docstring).
    """
    from lmcourse.compat import get_modes, set_modes

    config = model.config
    prompt = np.asarray(prompt_ids)
    one = prompt.ndim == 1
    prompt = prompt[None, :] if one else prompt
    if prompt.ndim != 2:
        raise ValueError(f"prompt_ids must have shape (T,) or (B, T), got {np.shape(prompt_ids)}")
    if prompt.shape[1] == 0 or prompt.shape[0] == 0:
        raise ValueError("the prompt is empty: give at least one token (e.g. the id of '\\n' to "
                         "start a text from scratch)")
    if prompt.shape[1] > config.n_ctx:
        raise ValueError(f"the prompt has {prompt.shape[1]} tokens, more than the context "
                         f"n_ctx={config.n_ctx}; keep its last tokens: prompt[-{config.n_ctx}:]")
    prompt = check_ids("prompt_ids", prompt, config.vocab_size, size_name="vocab_size",
                       fix="encode the prompt with the model's tokenizer").astype(np.int32)
    steps = check_int("max_new_tokens", max_new_tokens, 0)
    t, top_k, top_p = check_sampling(temperature, top_k, top_p, config.vocab_size)
    if t > 0 and key is None:
        raise ValueError("sampling needs a PRNG key: pass key=jax.random.key(0) (or "
                         "temperature=0 for greedy decoding)")
    if not isinstance(use_cache, bool):
        raise ValueError(f"use_cache must be True or False, got {use_cache!r}")
    key = jax.random.key(0) if key is None else key
    modes = get_modes(model)
    model.eval()
    try:
        graphdef, state = nnx.split(model)
        return _generate(graphdef, state, model, prompt, steps, t, top_k, top_p, key,
                         use_cache)[0 if one else slice(None)]
    finally:
        set_modes(modes)


def _generate(graphdef, state, model, prompt, steps, t, top_k, top_p, key, use_cache):
    n_ctx, (b, n) = model.config.n_ctx, prompt.shape
    if steps == 0:
        return prompt
    leaves, treedef = jax.tree.flatten(state)
    fns = _step_functions(graphdef, treedef, (top_k, t == 0.0, top_p is not None and top_p < 1.0))
    temperature, nucleus_p = jnp.float32(t or 1.0), jnp.float32(top_p or 1.0)
    tokens = [jnp.asarray(prompt)]
    if use_cache:
        logits, cache = fns["prefill"](leaves, tokens[0], model.init_cache(b))
    for i in range(steps):
        if use_cache and n < n_ctx and i + 1 < steps:     # sample, then run the new token
            tok, logits, cache, key = fns["cached_step"](leaves, logits, cache, key, temperature,
                                                         nucleus_p)
        elif use_cache and n <= n_ctx:                    # last step, or the cache is full
            tok, key = fns["sample"](logits, key, temperature, nucleus_p)
        else:                                             # no cache, or past n_ctx: a window
            seq = jnp.concatenate(tokens, axis=1)[:, -n_ctx:]
            width = seq.shape[1]
            padded = jnp.pad(seq, ((0, 0), (0, _bucket(width, n_ctx) - width)))
            tok, key = fns["window_step"](leaves, padded, jnp.int32(width - 1), key, temperature,
                                          nucleus_p)
        tokens.append(tok[:, None])
        n += 1
    return np.asarray(jnp.concatenate(tokens, axis=1), dtype=np.int32)
