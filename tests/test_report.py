"""The README's figures of the default run come from the stored run, by code (alexnet.report)."""

import re
from pathlib import Path

import pytest

from alexnet import build_model
from alexnet.cli import UserError
from alexnet.configs import get_config
from alexnet.dataspec import VAL_FASHION
from alexnet.report import main, run_report

REPO = Path(__file__).resolve().parents[1]
STORED = REPO / "notebooks" / "data" / "mini-fashion-mnist"


def readme_block():
    text = (REPO / "README.md").read_text()
    found = re.search(r"<!-- the default run: .*? -->\n(.*?)<!-- end of the default run -->", text, re.S)
    assert found, "the README's default-run block is missing"
    return found.group(1)


def test_the_readme_shows_the_stored_default_run_as_the_report_makes_it():
    assert readme_block().strip() == run_report(STORED).strip()


def test_the_readme_states_the_default_recipe_and_network_as_the_code_has_them():
    text = " ".join((REPO / "README.md").read_text().split())
    recipe = get_config("mini").recipe
    params = build_model("mini", num_classes=10, in_channels=1).num_parameters()
    assert f"trains the `mini` preset ({params:,} parameters, two towers)" in text
    assert (f"{recipe.epochs} epochs at batch {recipe.batch_size}, learning rate {recipe.lr:g} divided by 10 "
            f"after epoch {recipe.lr_step}, {VAL_FASHION:,} training images held out") in text


def test_a_run_with_a_validation_split_is_reported_with_it(mini_run, capsys):
    report = run_report(mini_run)
    assert "500 training images held out for validation, which made every decision" in report
    assert "| val top-1 |" in report
    assert main(["--run", str(mini_run)]) == 0 and capsys.readouterr().out == report


def test_a_folder_that_is_not_a_finished_run_is_one_line(tmp_path, capsys):
    with pytest.raises(UserError, match="not a training run"):
        run_report(tmp_path)
    assert main(["--run", str(tmp_path)]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
