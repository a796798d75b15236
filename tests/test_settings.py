"""alexnet.settings.TrainConfig: every setting of a run declared once, its rules checked once."""

import dataclasses

import pytest

from alexnet import train
from alexnet.cli import UserError
from alexnet.configs import PRESETS, get_config
from alexnet.settings import COMMAND, ConfigError, TrainConfig, flag, names


def test_the_command_line_has_one_flag_per_setting_and_no_other():
    parser = train.build_parser()
    flags = {opt for action in parser._actions for opt in action.option_strings} - {"-h", "--help"}
    assert flags == {flag(f.name) for f in dataclasses.fields(TrainConfig)}
    defaults = vars(parser.parse_args([]))
    assert TrainConfig(**defaults) == TrainConfig()          # the parser's defaults are the dataclass's


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_each_preset_carries_its_recipe_and_resolving_fills_only_what_is_unset(preset):
    recipe = get_config(preset).recipe
    c = TrainConfig(preset=preset).resolved()
    assert (c.epochs, c.batch_size, c.lr, c.lr_schedule) == (recipe.epochs, recipe.batch_size, recipe.lr,
                                                             recipe.lr_schedule)
    given = TrainConfig(preset=preset, epochs=3, batch_size=8, lr=0.5, lr_schedule="step").resolved()
    assert (given.epochs, given.batch_size, given.lr, given.lr_step) == (3, 8, 0.5, recipe.lr_step or 1)
    assert given.resolved() == given


@pytest.mark.parametrize("settings,words", [
    (dict(epochs=0), "--epochs: must be >= 1, got 0"),
    (dict(lr=float("nan")), "--lr: must be a positive number"),
    (dict(momentum=1.0), "--momentum: must be in [0, 1)"),
    (dict(lr="big"), "--lr: expected a number, got 'big'"),
    (dict(seed=True), "--seed: expected a number, got True"),
    (dict(ten_crop="yes"), "--ten-crop must be true or false"),
    (dict(preset="vgg"), "--preset: invalid choice: 'vgg'"),
    (dict(lr_schedule="plateau", lr_step=2), "--lr-step applies to --lr-schedule step, not plateau"),
    (dict(preset="torchvision", variant="one-tower"), "--variant one-tower:"),
    (dict(preset="paper", val_size=0), "--val-size 0 leaves no validation split"),
])
def test_each_rule_refuses_in_one_line(settings, words):
    with pytest.raises(ConfigError) as info:
        TrainConfig(**settings).resolved().check()
    assert words in str(info.value) and "\n" not in str(info.value)
    assert issubclass(ConfigError, UserError)                 # the command line says it in one line


def test_a_batch_must_divide_among_the_processes():
    TrainConfig(batch_size=32).check(processes=4)
    with pytest.raises(ConfigError, match="--batch-size 32 does not divide among 3 processes"):
        TrainConfig(batch_size=32).check(processes=3)


def test_saved_settings_are_read_as_the_command_line_reads_them():
    saved = TrainConfig(epochs=3, out="r").resolved().saved()
    assert TrainConfig.from_saved(saved) == TrainConfig(epochs=3, out="r").resolved()
    assert TrainConfig.from_saved({"batch_size": "32"}).batch_size == 32          # as the flag's text would be
    for value in ("lots", 0, 2.5, [32]):
        with pytest.raises(ConfigError, match=r"run/config.json is damaged: its settings do not parse \(--batch"):
            TrainConfig.from_saved({"batch_size": value}, "run/config.json")
    # a setting of one command is not carried to the next, unknown keys are not settings, and a run from
    # before the validation split held no images out
    assert TrainConfig.from_saved({"max_minutes": 1.0, "resume": True, "colour": "red"}) == TrainConfig(val_size=0)
    assert TrainConfig.from_saved({"val_size": None}).val_size is None
    assert set(names(COMMAND)) == {"resume", "max_minutes"}


def test_the_training_api_runs_a_config(tmp_path, capsys):
    config = TrainConfig(train_subset=256, val_size=100, batch_size=32, test_subset=100, max_steps=2,
                         no_progress=True, out=str(tmp_path / "run"))
    assert train.run(config) == 0
    assert "done: 2 steps" in capsys.readouterr().out
    # resuming through the API: settings left at their defaults are the run's, changed ones are changes
    assert train.run(dataclasses.replace(config, resume=True, max_steps=3, train_subset=None)) == 0
    assert "resume: --max-steps 3 from step 2 on (was 2)" in capsys.readouterr().out
    with pytest.raises(UserError, match="--batch-size 32 \\(given: 64\\)"):
        train.run(dataclasses.replace(config, resume=True, batch_size=64))
