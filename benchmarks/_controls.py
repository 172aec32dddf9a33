"""Controls of the GPT benchmarks: the course's model with one of its speed changes undone.

``gpt_train_speed.py`` (variant ``jax-nnx-linear``) and ``profile_gpt_step.py`` (part 1b) call
:func:`use_plain_linear` to measure the course's ``flat_dot_general`` against plain ``nnx.Linear``.
"""

from __future__ import annotations

from typing import Any


def use_plain_linear(model: Any) -> int:
    """Give every ``nnx.Linear`` of ``model`` plain ``jax.lax.dot_general``, in place.

    Undoes ``lmcourse.models.common.flat_dot_general``: the products then run on ``(B, T, d)``
    arrays, as the course's GPT did before that change. Same parameters, same values.

    Returns:
        The number of ``nnx.Linear`` layers changed.

    Raises:
        ValueError: ``model`` has no ``nnx.Linear`` (nothing would be controlled).
    """
    import jax
    from flax import nnx

    linears = [m for _, m in nnx.iter_modules(model) if isinstance(m, nnx.Linear)]
    if not linears:
        raise ValueError(f"{type(model).__name__} has no nnx.Linear layer to change")
    for layer in linears:
        layer.dot_general = jax.lax.dot_general
    return len(linears)
