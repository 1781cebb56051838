"""Where a run stands and how it resumes: train_state.pt written and read back (states of the
previous format too), the checks on resumption, and a resumed run repeating an uninterrupted
one bit for bit."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from handvox.errors import HandvoxError
from handvox.train import trainer
from handvox.train.config import RUN_FIELDS, TrainConfig
from handvox.train.distributed import Dist
from handvox.train.logs import RunningMeans
from handvox.train.state import (
    STATE_NAME,
    RunState,
    load_state,
    read_state,
    restore_rng,
    resumed_config,
    save_state,
)
from handvox.train.trainer import train
from tests.train.toy import read_log, toy_config, weights

pytestmark = pytest.mark.usefixtures("one_thread")


def test_state_file_round_trip(tmp_path):
    st = RunState(epoch=2, step_in_epoch=3, step=33, best={"val_mm": 20.0, "step": 30},
                  log=[{"epoch": 0, "step": 0, "val_mm": 60.0}], time_s=12.0,
                  meters=RunningMeans(1.5, 30.0, 0.0, 3), lr=5e-4)  # fmt: skip
    cfg = TrainConfig(epochs=4)
    with pytest.raises(HandvoxError, match="no training state"):
        load_state(tmp_path, True, Dist())
    assert load_state(tmp_path, None, Dist()) is None
    save_state(tmp_path, st, config=cfg.to_dict(), world_size=1, extra=[1, 2])
    assert [p.name for p in tmp_path.iterdir()] == [STATE_NAME]  # written atomically
    with pytest.raises(HandvoxError, match="exists"):
        load_state(tmp_path, False, Dist())
    saved = load_state(tmp_path, True, Dist())
    assert saved["extra"] == [1, 2] and saved["version"] == 2
    back = read_state(tmp_path)
    assert dataclasses.replace(back, started=0.0, time_s=0.0) == dataclasses.replace(
        st, started=0.0, time_s=0.0
    )
    assert back.time_s >= 12.0
    # The RNG states saved with it come back.
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    save_state(tmp_path, st)
    torch.rand(10)
    restore_rng(load_state(tmp_path, True, Dist()))
    assert torch.equal(torch.rand(3), expected)


def test_states_of_the_previous_format_load():
    """Version 1: the running sums as a list ("acc"), the step's learning rate in Adam's
    param groups, the config with the retired fields."""
    v1 = {"version": 1, "epoch": 1, "step_in_epoch": 0, "step": 15, "best": {}, "log": [],
          "time_s": 3.0, "acc": [1.0, 2.0, 0.0, 8.0],
          "optimizer": {"param_groups": [{"lr": 2.5e-4}]},
          "config": {**TrainConfig().to_dict(), "optimizer": "adam", "loss": "l2"},
          "world_size": 1}  # fmt: skip
    st = RunState.from_saved(v1)
    assert st.meters == RunningMeans(1.0, 2.0, 0.0, 8.0) and st.lr == 2.5e-4 and st.step == 15
    assert resumed_config(v1, TrainConfig(), 1) == TrainConfig()


def test_resumption_checks_the_config_and_processes():
    saved = TrainConfig(lr=1e-3, epochs=3, num_workers=0)
    state = {"config": saved.to_dict(), "world_size": 1}
    # Fields of how it runs (RUN_FIELDS) may change, and are taken from the new config.
    more = dataclasses.replace(saved, epochs=9, num_workers=2, progress=False, val_every=50,
                               keep_checkpoints=True)  # fmt: skip
    assert resumed_config(state, more, 1) == more
    assert {"epochs", "num_workers", "progress", "val_every", "keep_checkpoints"} <= set(RUN_FIELDS)
    with pytest.raises(HandvoxError, match="differs in lr"):
        resumed_config(state, dataclasses.replace(saved, lr=5e-4), 1)
    with pytest.raises(HandvoxError, match="1 processes, not 2"):
        resumed_config(state, saved, 2)


class Killed(Exception):
    pass


@pytest.mark.slow
def test_resume_continues_exactly(toy, tmp_path, monkeypatch):
    """Killed between checkpoints (steps after the last one are lost) and resumed, or stopped
    by max_steps and resumed: the same weights, bit for bit, and the same log."""
    cfg = toy_config(toy, epochs=2, batch_size=16, dropout=0.3, checkpoint_every=3,
                     deterministic=True, lr_schedule="cosine", warmup_steps=4)  # fmt: skip
    whole = train(cfg, tmp_path / "whole")
    assert whole.step == 16

    def kill_at_11(step: int) -> None:
        if step == 11:  # epoch 2, step 3 of 8; the last checkpoint is step 9
            raise Killed

    with pytest.raises(Killed):
        train(cfg, tmp_path / "killed", on_step=kill_at_11)
    state = torch.load(tmp_path / "killed" / STATE_NAME, weights_only=True)
    assert (state["step"], state["epoch"], state["step_in_epoch"]) == (9, 1, 1)
    resumed = train(cfg, tmp_path / "killed")

    part = train(cfg, tmp_path / "stopped", max_steps=5)
    assert not part.finished and part.step == 5
    resumed2 = train(cfg, tmp_path / "stopped", resume=True)

    def rows(run: str, drop: tuple[str, ...] = ("time_s",)) -> list[dict]:
        return [{k: v for k, v in r.items() if k not in drop} for r in read_log(tmp_path / run)]

    for run, res in (("killed", resumed), ("stopped", resumed2)):
        assert res.finished and res.step == whole.step
        a, b = weights(tmp_path / "whole" / "last"), weights(tmp_path / run / "last")
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), run
    # killed: nothing of the lost steps shows, the same best and the same log
    a, b = weights(tmp_path / "whole" / "best"), weights(tmp_path / "killed" / "best")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert rows("killed") == rows("whole")
    # stopped by max_steps: the run that ended there validated at step 5 (its best/ is a
    # validated model, not the untrained one); resumed, the same validations as the whole run
    # besides that one (its training-loss means restart there, so they are left out)
    stopped_rows = rows("stopped", ("time_s", "train_loss", "train_mm", "train_tsdf"))
    assert [r["step"] for r in stopped_rows] == sorted({"5"} | {r["step"] for r in rows("whole")},
                                                     key=int)  # fmt: skip
    assert [r for r in stopped_rows if r["step"] != "5"] == rows(
        "whole", ("time_s", "train_loss", "train_mm", "train_tsdf")
    )

    # Killed after the state of the run's last step was saved, before the validation after it
    # (benchmarks/faults.py found it: the resumed run ended without that validation, its best/
    # and last/ those of the epoch before).
    real = trainer._Run.validate_and_log

    def kill_at_the_end(run) -> None:
        if run.state.step == whole.step:
            raise Killed
        real(run)

    monkeypatch.setattr(trainer._Run, "validate_and_log", kill_at_the_end)
    cfg4 = dataclasses.replace(cfg, checkpoint_every=4)
    with pytest.raises(Killed):
        train(cfg4, tmp_path / "end")
    assert torch.load(tmp_path / "end" / STATE_NAME, weights_only=True)["step"] == whole.step
    monkeypatch.setattr(trainer._Run, "validate_and_log", real)
    end = train(cfg4, tmp_path / "end")
    assert end.finished and rows("end") == rows("whole")
    for m in ("best", "last"):
        a, b = weights(tmp_path / "whole" / m), weights(tmp_path / "end" / m)
        assert all(torch.equal(a[k], b[k]) for k in a), m

    # A folder holding another run's state is not silently mixed with a new config.
    with pytest.raises(HandvoxError, match="lr"):
        train(dataclasses.replace(cfg, lr=5e-4), tmp_path / "whole")
    with pytest.raises(HandvoxError, match="no training state"):
        train(cfg, tmp_path / "nothing", resume=True)
