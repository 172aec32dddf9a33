"""Checkpoints of a training run with Orbax, so that a run can stop and resume (issue 12).

Used in chapters: none directly; imported by ``lmcourse.models.detector``, ``lmcourse.multitask``,
``lmcourse.recsys``, ``lmcourse.training``.

Used by :func:`lmcourse.training.train_loop` (and so by ``fit``, the detector, the multi-task
encoder and NeuMF). A checkpoint is one numbered folder per saved step under ``directory``,
written by ``orbax.checkpoint.CheckpointManager`` (https://orbax.readthedocs.io) with two items:

* ``state``: the ``nnx.state`` of each object named when the :class:`Checkpoint` was made
  (typically ``model`` and ``optimizer``: parameters, batch statistics, dropout keys, the
  optimizer's moments and step count), saved with ``ocp.args.StandardSave``;
* ``meta`` (JSON, ``ocp.args.JsonSave``): the step, the :class:`~lmcourse.training.History` so
  far, the batch source's position (the NumPy generator state and the place in the current
  epoch, see :class:`~lmcourse.training.EpochBatches`), the run's settings (``config``) and the
  shape and dtype of every saved array (to refuse a checkpoint of another model with a clear
  message instead of Orbax's tree diff).

Resuming restores all of these in place, so the resumed run draws the same batches and
computes the same losses as an uninterrupted one (``tests/test_checkpoint.py``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx

from lmcourse.validation import check_int


def signature(states: dict[str, Any]) -> dict[str, list]:
    """``{"model['conv1']['kernel'].value": [[3, 3, 1, 32], "float32"], ...}`` for a tree of states."""
    return {jax.tree_util.keystr(path): [list(np.shape(leaf)), str(leaf.dtype)]
            for path, leaf in jax.tree_util.tree_leaves_with_path(states)}


class Checkpoint:
    """Where a training run saves itself, how often, and what it saves.

    Args:
        directory: a folder (created if missing); one sub-folder per saved step.
        objects: the NNX objects whose ``nnx.state`` is saved and restored in place, e.g.
            ``{"model": model, "optimizer": optimizer}``.
        every: save every ``every`` steps (≥ 1), or only at the end of the run (0).
        keep: how many of the latest checkpoints to keep (≥ 1).
        resume: continue from the latest checkpoint in ``directory`` when there is one
            ("train, or load the checkpoint if it exists"); False refuses a folder that
            already holds checkpoints (nothing is deleted).
        config: the run's settings (JSON-able: batch size, seed, number of steps, …); resuming
            with different settings is refused, since the saved data position would not mean
            the same thing.

    Raises:
        ValueError: ``every`` < 0, ``keep`` < 1, no objects, or ``config`` not JSON-able.
    """

    def __init__(self, directory: str | Path, objects: dict[str, Any], *, every: int = 0,
                 keep: int = 2, resume: bool = True, config: dict[str, Any] | None = None):
        self.every = check_int("every", every, 0)
        self.keep = check_int("keep", keep, 1)
        if not objects:
            raise ValueError("objects must name at least one NNX object to save, "
                             "e.g. {'model': model, 'optimizer': optimizer}")
        self.objects = dict(objects)
        self.resume = bool(resume)
        self.config = _json_ready(dict(config or {}), "config")
        self.directory = Path(directory).absolute()
        self._manager: ocp.CheckpointManager | None = None

    # ------------------------------------------------------------------ orbax
    @property
    def manager(self) -> ocp.CheckpointManager:
        """The ``ocp.CheckpointManager`` (made on first use; synchronous saves)."""
        if self._manager is None:
            options = ocp.CheckpointManagerOptions(max_to_keep=self.keep, create=True,
                                                   enable_async_checkpointing=False)
            self._manager = ocp.CheckpointManager(self.directory, options=options,
                                                  item_names=("state", "meta"))
        return self._manager

    def latest_step(self) -> int | None:
        """The step of the newest checkpoint in ``directory``, or None."""
        return self.manager.latest_step()

    def _states(self) -> dict[str, Any]:
        return {name: nnx.state(obj) for name, obj in self.objects.items()}

    def save(self, step: int, history: Any, source: Any) -> None:
        """Save the objects' states, ``history`` (a dataclass), ``source.state()`` and ``step``."""
        states = self._states()
        meta = {"step": int(step), "history": dataclasses.asdict(history),
                "data": source.state() if source is not None else None,
                "config": self.config, "signature": signature(states)}
        self.manager.save(int(step), args=ocp.args.Composite(
            state=ocp.args.StandardSave(states), meta=ocp.args.JsonSave(meta)), force=True)
        self.manager.wait_until_finished()

    def restore(self, history: Any, source: Any) -> int:
        """Load the latest checkpoint in place: objects, ``history``'s fields, ``source``'s position.

        Returns:
            the step restored, or 0 when the folder holds no checkpoint.

        Raises:
            ValueError: ``resume`` is False but the folder holds checkpoints; the checkpoint was
                saved with other settings (``config``) or from objects of other shapes or dtypes
                (the message names the first difference).
        """
        step = self.latest_step()
        if step is None:
            return 0
        if not self.resume:
            raise ValueError(f"{self.directory} already holds checkpoints (latest: step {step}); "
                             "pass resume=True to continue from it, or choose an empty folder")
        meta = self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
        meta = meta["meta"]
        self._check(meta, step)
        states = self._states()
        restored = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(states)))["state"]
        for name, obj in self.objects.items():
            nnx.update(obj, restored[name])
        for f in dataclasses.fields(history):
            if f.name in meta["history"]:
                setattr(history, f.name, meta["history"][f.name])
        if source is not None and meta["data"] is not None:
            source.restore(meta["data"])
        return int(meta["step"])

    def _check(self, meta: dict[str, Any], step: int) -> None:
        where = f"the checkpoint of step {step} in {self.directory}"
        saved_config = meta.get("config", {})
        for key in sorted(set(saved_config) | set(self.config)):
            if saved_config.get(key) != self.config.get(key):
                raise ValueError(f"{where} was saved with {key}={saved_config.get(key)!r}, this "
                                 f"run has {key}={self.config.get(key)!r}: resume with the same "
                                 "settings, or use another folder to start afresh")
        mine = signature(self._states())
        saved = meta.get("signature", {})
        for key in list(saved) + [k for k in mine if k not in saved]:
            if saved.get(key) != mine.get(key):
                raise ValueError(
                    f"{where} does not fit this model: {key} is "
                    f"{_describe(saved.get(key))} there but {_describe(mine.get(key))} here. "
                    "It was saved from another model shape; build the same model, or use another "
                    "folder to start afresh")

    def close(self) -> None:
        """Release Orbax's manager (files stay)."""
        if self._manager is not None:
            self._manager.close()
            self._manager = None


def _describe(entry: list | None) -> str:
    return "absent" if entry is None else f"{entry[1]} {tuple(entry[0])}"


def _json_ready(value: dict[str, Any], name: str) -> dict[str, Any]:
    import json

    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must hold JSON values (numbers, strings, lists): {err}") from None
