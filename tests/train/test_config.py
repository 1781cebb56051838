"""TrainConfig: its checks, its dict form and the retired fields of saved configs, config files
over presets (the shipped recipe resolves to the configs it was trained with), and how
``handvox train``'s arguments become one."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pytest

from handvox.cli.main import build_parser
from handvox.cli.train import config_from_args
from handvox.errors import HandvoxError
from handvox.estimator.presets import paper_estimator
from handvox.estimator.weights import EstimatorConfig, build_networks
from handvox.io.datasets import DatasetSpec
from handvox.train.augment import AugmentConfig
from handvox.train.config import (
    PRESETS,
    RETIRED_FIELDS,
    TrainConfig,
    load_config,
    read_config,
    resolve_estimator,
)
from tests.tiny import tiny_config

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs"
RECIPE = ("default_model", "default_finetune", "default_swa")
# The randomised mix's six sources (docs/model-card.md, stage 4), as the shipped model names them.
MIX_SOURCES = ["base", "mesh", "tof", "stereo", "ego", "desk"]


def test_checks_refuse_what_cannot_run():
    with pytest.raises(ValueError, match="test split"):
        TrainConfig(data=(DatasetSpec.parse("icvl:/data/icvl?split=test"),))
    with pytest.raises(ValueError, match="init"):
        TrainConfig(mode="finetune")
    with pytest.raises(ValueError, match="mode"):
        TrainConfig(mode="pretrain")
    with pytest.raises(ValueError, match="val_fraction"):
        TrainConfig(val_fraction=0.0)
    with pytest.raises(ValueError, match="lr_schedule"):
        TrainConfig(lr_schedule="step")
    assert TrainConfig(mode="joint").tsdf_weight == 1.0
    assert TrainConfig(mode="finetune", init="m", refine_weight=0.1).tsdf_weight == 0.1
    assert not TrainConfig(mode="finetune", init="m").needs_clean


def test_dict_round_trip_and_retired_fields():
    cfg = TrainConfig(data=(DatasetSpec.parse("nyu:/data/nyu?kinect=2@0.5"),), mode="joint",
                      estimator=tiny_config("canonical21", refine=True),
                      augment=AugmentConfig(scale=(0.8, 1.2)))  # fmt: skip
    d = cfg.to_dict()
    assert json.loads(json.dumps(d)) == d and TrainConfig.from_dict(d) == cfg
    assert d["data"] == ["nyu:/data/nyu?kinect=2@0.5"] and not set(d) & set(RETIRED_FIELDS)
    # Saved configs hold optimizer "adam" and loss "l2": read as ever; any other value is refused.
    assert TrainConfig.from_dict({**d, "optimizer": "adam", "loss": "l2"}) == cfg
    for key, value in (("optimizer", "sgd"), ("loss", "l1")):
        with pytest.raises(ValueError, match=f"run.json: {key} '{value}'"):
            TrainConfig.from_dict({**d, key: value}, where="run.json")
    with pytest.raises(ValueError, match="momentum"):
        TrainConfig.from_dict({**d, "momentum": 0.9})


def test_the_shipped_models_train_config_loads():
    """The shipped model (the dense head, issue 14, trained on four times by issue 12) was
    trained with exactly configs/dense_mix_ego3.toml, but for where its data lay and the run's
    worker and progress flags; it starts from the model shipped before it (which the config
    restores from git), is the run's last checkpoint, runs one view, as trained, with the
    re-centring pass and the upright pass chosen on validation, its locator read at four grid
    phases and a second candidate weighed by handedness (read settings gated on validation
    frames after training), and its per-joint
    confidence calibrated on validation frames."""
    model = json.loads((ROOT / "src/handvox/data/default_model/config.json").read_text())
    cfg = TrainConfig.from_dict(model["meta"]["train_config"])
    shipped = EstimatorConfig.from_dict(model["estimator"])
    assert (shipped.recentre, shipped.upright_beyond_deg) == (1, 60.0)
    assert shipped.segment.locator_phases == 4 and cfg.estimator.segment.locator_phases == 1
    assert shipped.segment.other_min_heat == 0.001 and cfg.estimator.segment.other_min_heat == 0
    assert shipped.segment.other_margin == 0.2 and cfg.estimator.segment.other_margin is None
    untouched = dataclasses.replace(shipped.segment, locator_phases=1, other_min_heat=0.0,
                                    other_margin=None)  # fmt: skip
    trained = dataclasses.replace(shipped, recentre=0, upright_beyond_deg=None, joint_spread_mm=(),
                                  segment=untouched)  # fmt: skip
    assert cfg.estimator == trained
    recipe = load_config(CONFIGS / "dense_mix_ego3.toml")
    local = ("data", "num_workers", "progress")
    assert dataclasses.replace(cfg, **{k: getattr(recipe, k) for k in local}) == recipe
    assert cfg.init == recipe.init == "runs/dense-ego2-avg3"
    assert [s.root.rsplit("/", 1)[-1] for s in cfg.data] == [*MIX_SOURCES, "ego2", "ego3", "ego4"]
    assert "averaged_from" not in model["meta"] and model["meta"]["step"] == 4779  # the last
    chosen = model["meta"]["inference_settings"]
    assert chosen["test_rotations_deg"] == [] == list(shipped.test_rotations_deg)
    assert chosen["upright_beyond_deg"] == shipped.upright_beyond_deg == 60.0
    assert chosen["segment"]["locator_phases"] == 4
    assert chosen["segment"]["other_min_heat"] == 0.001
    assert chosen["segment"]["other_margin"] == 0.2
    for setting in ("locator_phases", "other_min_heat", "other_margin"):
        assert (ROOT / chosen[setting]["rule"].split(" ")[0]).is_file()
    assert len(shipped.joint_spread_mm) == 21
    assert model["meta"]["joint_spread_from"]["frames"] == 600
    assert all("mixval" in s for s in model["meta"]["joint_spread_from"]["sets"])  # validation


@pytest.mark.parametrize("name", RECIPE)
def test_recipe_files_resolve_to_the_configs_the_model_was_trained_with(name):
    """configs/*.toml resolve to exactly the TrainConfig of the full JSON dumps they replaced
    (tests/train/data/*.json, from git), so the shipped model's recipe is unchanged."""
    trained = json.loads((Path(__file__).parent / "data" / f"{name}.json").read_text())
    assert load_config(CONFIGS / f"{name}.toml") == TrainConfig.from_dict(trained)


@pytest.mark.parametrize(
    "name",
    [
        *RECIPE,
        "loo_finetune",
        "loo_occluders",
        "mix_finetune",
        "mix_continue",
        "heads",
        "dense_mix",
        "dense_mix_continue",
        "dense_mix_ego",
        "dense_mix_ego2",
        "dense_mix_ego3",
    ],  # fmt: skip
)
def test_recipe_files_hold_only_what_differs_from_their_base(name):
    own = tomllib.loads((CONFIGS / f"{name}.toml").read_text())
    base = own.pop("base")
    under = PRESETS[base]() if base in PRESETS else read_config(CONFIGS / base)

    def leaves(d: dict, prefix: str = "") -> dict:
        out = {}
        for k, v in d.items():
            out.update(leaves(v, f"{prefix}{k}.") if isinstance(v, dict) else {prefix + k: v})
        return out

    flat = leaves(under)
    for key, value in leaves(own).items():
        assert key in flat and value != flat[key], key


def test_the_recipe_chains():
    """Stage 2 starts from stage 1's best with the same networks and data (only the schedule,
    augmentation and inference settings move); stage 3 continues stage 2 at a constant rate,
    keeping a model at each validation."""
    base, ft, swa = (load_config(CONFIGS / f"{n}.toml") for n in RECIPE)
    assert ft.init == "runs/default/best" and ft.mode == base.mode == "pose"
    assert ft.estimator.pose == base.estimator.pose and ft.estimator.volume == base.estimator.volume
    assert ft.data == base.data and ft.lr < base.lr
    assert ft.augment.label_centre_prob == 0 and ft.estimator.recentre == 0
    assert swa.init == "runs/default-ft/last" and swa.keep_checkpoints
    assert swa.lr_schedule == "constant" and swa.lr < ft.lr
    assert (swa.estimator, swa.augment, swa.data) == (ft.estimator, ft.augment, ft.data)


def test_the_mix_recipe_chains():
    """Stage 4 and the leave-one-out runs start from the capsule-hand model (stages 1-3, which
    saw none of the mix's factors), never from today's shipped weights, which saw them all;
    both find the hand with the locator. Stage 5 continues stage 4 on the same networks, data
    and augmentation at a lower rate, keeping a model at each validation for averaging."""
    names = ("default_finetune", "loo_finetune", "mix_finetune", "mix_continue")
    ft, loo, mix, cont = (load_config(CONFIGS / f"{n}.toml") for n in names)
    assert mix.init == loo.init == "runs/capsule-model"
    assert "runs/capsule-model" in (ROOT / "benchmarks/capsule_model.sh").read_text()
    assert mix.estimator.segment.method == loo.estimator.segment.method == "learned"
    assert mix.estimator.pose == ft.estimator.pose and mix.estimator.volume == ft.estimator.volume
    assert cont.init == "runs/mix/best" and cont.keep_checkpoints and cont.lr < mix.lr
    assert (cont.estimator, cont.augment, cont.data) == (mix.estimator, mix.augment, mix.data)


def test_presets_as_bases(tmp_path):
    f = tmp_path / "paper.toml"
    f.write_text('base = "paper"\nepochs = 2\n[estimator.pose]\ndropout = 0.4\n')
    cfg = load_config(f)
    paper = paper_estimator("canonical21", refine=False)
    assert cfg.epochs == 2 and cfg.lr == TrainConfig().lr
    assert cfg.estimator == dataclasses.replace(
        paper, pose=dataclasses.replace(paper.pose, dropout=0.4)
    )
    compact = load_config(CONFIGS / "default_model.toml").estimator
    pose, _ = build_networks(compact)
    assert sum(p.numel() for p in pose.parameters()) == 2_593_423  # docs/model-card.md
    # A refinement mode on the paper's base gets the paper's refinement net.
    assert resolve_estimator(dataclasses.replace(cfg, mode="joint")).refine is not None
    f.write_text('base = "dense"\n')
    dense, _ = build_networks(load_config(f).estimator)
    assert sum(p.numel() for p in dense.parameters()) == 579_109 and dense.cfg.head == "dense"
    f.write_text('base = "tiny"\n')
    with pytest.raises(ValueError, match="compact, dense, paper"):
        load_config(f)


def parse(*argv: str):
    return build_parser().parse_args(["train", *argv])


def test_cli_arguments_config_files_and_resumption(tmp_path):
    args = parse("--data", "synthetic:/data/toy", "--out", str(tmp_path), "--small",
                 "--epochs", "2", "--mode", "joint")  # fmt: skip
    cfg, resume = config_from_args(args)
    assert resume is None and cfg.epochs == 2 and cfg.batch_size == 6 and cfg.lr == 1e-4
    assert cfg.estimator.volume.size == 32 and cfg.estimator.refine is not None
    assert cfg.tsdf_weight == 1.0 and TrainConfig.from_dict(cfg.to_dict()) == cfg
    cfg, _ = config_from_args(parse("--data", "synthetic:/d", "--out", "x", "--volume-size", "40"))
    assert cfg.estimator.volume.voxel_mm == 7.5 and cfg.estimator.pose.fc == (2048, 2048)

    # --config: a recipe file; flags override it.
    toml = CONFIGS / "default_finetune.toml"
    args = parse("--config", str(toml), "--out", str(tmp_path / "run"), "--lr", "5e-4",
                 "--keep-checkpoints", "--quiet")  # fmt: skip
    cfg, _ = config_from_args(args)
    assert cfg == dataclasses.replace(load_config(toml), lr=5e-4, keep_checkpoints=True,
                                      progress=False)  # fmt: skip

    # Resuming: the config comes from the run's train_config.json (one written before the
    # retired fields went, here), with flags on top.
    run = tmp_path / "run"
    run.mkdir()
    (run / "train_config.json").write_text(
        json.dumps({**cfg.to_dict(), "optimizer": "adam", "loss": "l2"})
    )
    again, resume = config_from_args(parse("--out", str(run), "--resume", "--epochs", "12"))
    assert resume is True and again == dataclasses.replace(cfg, epochs=12)

    with pytest.raises(HandvoxError, match="no training data"):
        config_from_args(parse("--out", str(tmp_path / "x")))
    bad = tmp_path / "bad.toml"
    bad.write_text('base = "default.toml"\n')
    with pytest.raises(HandvoxError, match="neither a preset"):
        config_from_args(parse("--config", str(bad), "--out", str(tmp_path / "y")))
    bad.write_text('base = "compact"\ndata = ["synthetic:/d"]\nlearning_rate = 0.1\n')
    with pytest.raises(HandvoxError, match="learning_rate"):
        config_from_args(parse("--config", str(bad), "--out", str(tmp_path / "y")))


def test_the_heads_configs_differ_where_they_say():
    """The heads' comparison trains today's compact net as the shipped model's stage 1 does
    (batch, rate, schedule, bf16) with the locator's centres; the dense mix run is the same but
    for its head and its run length."""
    heads, dense = (load_config(CONFIGS / f"{n}.toml") for n in ("heads", "dense_mix"))
    stage1 = load_config(CONFIGS / "default_model.toml")
    assert heads.estimator.pose == stage1.estimator.pose and heads.estimator.segment.method == (
        "learned"
    )
    assert (heads.batch_size, heads.lr, heads.lr_schedule, heads.amp) == (
        stage1.batch_size, stage1.lr, stage1.lr_schedule, stage1.amp)  # fmt: skip
    assert dense.estimator.pose.head == "dense" and dense.estimator.pose.fc == ()
    assert dense.estimator.pose.levels == heads.estimator.pose.levels
    assert dense.estimator.volume == heads.estimator.volume and dense.keep_checkpoints
