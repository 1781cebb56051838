"""Where a run stands (:class:`RunState`), and ``train_state.pt``: everything a run needs to go
on from there, written atomically, read back on resumption, with the checks that a resumed run is
the one in the folder.

Exact resumption: the frame order of epoch ``e`` is a function of ``(seed, e)``, the
augmentation of the sample at position ``p`` of epoch ``e`` of ``(seed, e, p)``, the dropout
masks of step ``s`` of ``(seed, s, rank)`` (:func:`step_seed`) and the learning rate of step
``s`` of ``s``; so a resumed run needs only the step it stopped at (with the weights and Adam's
moments) and repeats the uninterrupted run bit for bit (CPU, ``deterministic=True``).
"""

from __future__ import annotations

import dataclasses
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from handvox.atomic import atomic_path
from handvox.errors import HandvoxError
from handvox.train.config import RUN_FIELDS, TrainConfig
from handvox.train.distributed import Dist
from handvox.train.logs import RunningMeans

STATE_NAME = "train_state.pt"
# 2: the running means by name ("meters"), the latest step's learning rate; 1: "acc", a list.
STATE_VERSION = 2


@dataclass
class RunState:
    """Where a run stands: the epoch and the step within it, the optimiser steps done in all,
    the best validation so far (with its epoch and step), the log rows, the training time of
    earlier processes (``time_s``), the training losses since the last row and the learning
    rate of the latest step (``lr``; the configured one before the first)."""

    epoch: int = 0
    step_in_epoch: int = 0
    step: int = 0
    best: dict[str, float] = field(default_factory=dict)
    log: list[dict[str, Any]] = field(default_factory=list)
    time_s: float = 0.0
    meters: RunningMeans = field(default_factory=RunningMeans)
    lr: float = 0.0
    started: float = field(default_factory=time.perf_counter, repr=False)

    def start_clock(self) -> None:
        """Training time counts from now (on top of ``time_s``)."""
        self.started = time.perf_counter()

    def elapsed(self) -> float:
        """Training seconds, earlier processes' included."""
        return self.time_s + time.perf_counter() - self.started

    @classmethod
    def from_saved(cls, state: dict[str, Any]) -> RunState:
        """The run state of a loaded ``train_state.pt`` (version 1 or 2)."""
        meters = state.get("meters")
        if meters is None:  # version 1
            meters = dict(zip(("loss", "mm", "tsdf", "samples"), state["acc"], strict=True))
        return cls(
            epoch=state["epoch"],
            step_in_epoch=state["step_in_epoch"],
            step=state["step"],
            best=state["best"],
            log=state["log"],
            time_s=state["time_s"],
            meters=RunningMeans(**meters),
            # version 1: the optimizer's learning rate, which was set to each step's
            lr=state["lr"] if "lr" in state else state["optimizer"]["param_groups"][0]["lr"],
        )


def read_state(out: str | Path) -> RunState:
    """The run state saved in the run folder ``out`` (for scripts that follow runs)."""
    return RunState.from_saved(torch.load(Path(out) / STATE_NAME, map_location="cpu",
                                          weights_only=True))  # fmt: skip


def save_state(out: Path, st: RunState, **saved: Any) -> None:
    """Write ``out/train_state.pt`` atomically: ``st``, this process's RNG states and ``saved``
    (config, estimator, weights, optimizer, ...: what :func:`load_state`'s caller reads)."""
    state = {
        "version": STATE_VERSION,
        **saved,
        "epoch": st.epoch,
        "step_in_epoch": st.step_in_epoch,
        "step": st.step,
        "best": st.best,
        "log": st.log,
        "meters": dataclasses.asdict(st.meters),
        "lr": st.lr,
        "time_s": st.elapsed(),
        "rng": _rng_state(),
    }
    with atomic_path(out / STATE_NAME) as tmp:
        torch.save(state, tmp)


def load_state(out: Path, resume: bool | None, ctx: Dist) -> dict[str, Any] | None:
    """``out/train_state.pt`` (in every process), or None for a fresh run.

    Args:
        resume: True: the state must exist; False: it must not; None: either.
    Raises:
        HandvoxError: against ``resume``.
    """
    path = out / STATE_NAME
    state = None
    if ctx.main:
        exists = path.is_file()
        if resume and not exists:
            state = {"error": f"{path}: no training state to resume from"}
        elif resume is False and exists:
            state = {"error": f"{path} exists; use another --out or resume"}
        elif exists:
            state = torch.load(path, map_location="cpu", weights_only=True)
    state = ctx.broadcast(state)
    if state is not None and "error" in state:
        raise HandvoxError(state["error"])
    return state


def resumed_config(state: dict[str, Any], cfg: TrainConfig, world: int) -> TrainConfig:
    """The config a resumed run goes on with: the saved one, with ``cfg``'s :data:`RUN_FIELDS`.

    Raises:
        HandvoxError: ``cfg`` differs from the saved config in another field, or the run was
            started with another number of processes.
    """
    saved = TrainConfig.from_dict(state["config"], where=STATE_NAME)
    a, b = saved.to_dict(), cfg.to_dict()
    diff = [k for k in a if k not in RUN_FIELDS and a[k] != b[k]]
    if diff:
        raise HandvoxError(
            f"the output folder holds a run with another config (differs in {', '.join(diff)}); "
            "use another --out, or resume with the same settings"
        )
    if state["world_size"] != world:
        raise HandvoxError(f"the run was started with {state['world_size']} processes, not {world}")
    return dataclasses.replace(saved, **{k: getattr(cfg, k) for k in RUN_FIELDS})


def step_seed(seed: int, step: int, rank: int) -> int:
    """The torch seed of optimiser step ``step`` in process ``rank`` (its dropout masks)."""
    return int(np.random.SeedSequence([seed, step, rank]).generate_state(1)[0])


def _rng_state() -> dict[str, Any]:
    npst = np.random.get_state(legacy=False)  # noqa: NPY002 (saved for completeness)
    return {
        "torch": torch.get_rng_state(),
        "numpy": {
            **npst,
            "state": {
                k: (v.tolist() if isinstance(v, np.ndarray) else v)
                for k, v in npst["state"].items()
            },
        },
        "python": random.getstate(),
    }


def restore_rng(saved: dict[str, Any]) -> None:
    """Set torch's, NumPy's and Python's global RNGs to the states of a loaded
    ``train_state.pt``."""
    state = saved["rng"]
    torch.set_rng_state(state["torch"])
    npst = dict(state["numpy"])
    npst["state"] = {
        k: (np.asarray(v, np.uint32) if isinstance(v, list) else v)
        for k, v in npst["state"].items()
    }
    np.random.set_state(npst)  # noqa: NPY002
    random.setstate(tuple(tuple(x) if isinstance(x, list) else x for x in state["python"]))
