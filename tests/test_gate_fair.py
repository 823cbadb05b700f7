"""The fair gate: versions are judged only on labelled weeks neither was trained on.

The winners here are known by construction, not read from the gate: a version trained on HH
multiplied by three forecasts about three times the realised HH, so any version trained on the
true HH beats it on any weeks it did not learn from.
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy.stats import ttest_rel

from hhforecast.config import load_settings
from hhforecast.datasets.weekly import sample_dataset_path
from hhforecast.gate.promote import NotEnoughFairWeeksError, PromotionRefusedError, promote
from hhforecast.gate.significance import diebold_mariano
from hhforecast.modeling.training import train_version
from hhforecast.registry.store import Registry

from .conftest import SCORED_IS_SERVED, Project, copy_project, shared_template, write_config


@pytest.fixture(scope="session")
def _fair_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    def build(root: Path) -> None:
        settings = load_settings(write_config(root, training=SCORED_IS_SERVED))
        sample = pd.read_csv(sample_dataset_path())
        data = root / "data"
        data.mkdir()
        sample.iloc[:40].to_csv(data / "tiny40.csv", index=False)
        sample.assign(HH=sample["HH"] * 3).to_csv(data / "tripled.csv", index=False)
        sample.iloc[-65:].to_csv(data / "recent.csv", index=False)
        train_version(settings, version="1.0.0")  # true HH, the whole sample
        train_version(settings, data / "tripled.csv", "broken")  # same weeks, HH x 3
        train_version(settings.with_training(epochs=2), data / "tiny40.csv", "0.1.0-bad")

    return shared_template(tmp_path_factory, "fair", build)


@pytest.fixture
def fair(tmp_path: Path, _fair_template: Path) -> Project:
    return copy_project(_fair_template, tmp_path)


def set_mlops(project: Project, **values: object) -> None:
    data = yaml.safe_load(project.config.read_text())
    data.setdefault("mlops", {}).update(values)
    project.config.write_text(yaml.safe_dump(data, sort_keys=False))


def test_a_version_tested_on_weeks_production_learnt_from_is_refused(fair: Project, cli) -> None:
    # Reproduces the unfair promotion: 0.1.0-bad's 10 test weeks are all weeks 1.0.0 trained on.
    promote(fair.settings, "1.0.0")
    config, registry = fair.config.read_bytes(), fair.registry_file.read_bytes()
    result = cli("promote", "0.1.0-bad", "--require-better-rmse", "--config", fair.config)
    assert result.exit_code == 1
    message = " ".join(result.stderr.split())
    assert message == (
        "Error: refused to promote 0.1.0-bad: only 0 of the 10 held-out test weeks of 0.1.0-bad "
        "come after 2022-09-26, the last week either version was trained on (0.1.0-bad up to "
        "2019-07-29, 1.0.0 up to 2022-09-26); at least 13 are needed to compare it fairly with "
        "production 1.0.0 (mlops.min_fair_weeks). Pass newer labelled weeks, after 2022-09-26, "
        "with --data FILE. Production and the config file were left unchanged."
    )
    assert fair.config.read_bytes() == config and fair.registry_file.read_bytes() == registry
    as_json = cli(
        "promote", "0.1.0-bad", "--require-better-rmse", "--json", "--config", fair.config
    )
    assert as_json.exit_code == 1
    assert json.loads(as_json.stdout)["promoted"] is False
    assert json.loads(as_json.stdout)["fair_weeks"] == 0


def test_newer_weeks_passed_with_data_are_the_only_ones_judged(fair: Project) -> None:
    promote(fair.settings, "1.0.0")
    # The whole sample is offered: only its 65 weeks after both trainings are scored.
    with pytest.raises(PromotionRefusedError) as info:
        promote(fair.settings, "broken", require_better_rmse=True, data=sample_dataset_path())
    report = info.value.report
    assert report.weeks is not None
    assert (report.weeks.weeks, report.weeks.start, report.weeks.end) == (
        65,
        "2022-10-03",
        "2023-12-25",
    )
    assert "the fair weeks, which neither version trained on" in report.weeks.source
    assert report.overlaps and all(o.weeks == 0 for o in report.overlaps)
    # A model forecasting three times the realised HH loses, and by far.
    assert report.candidate_rmse > 3 * report.production_rmse
    assert report.significance is not None and report.significance.statistic < 0
    assert "Diebold–Mariano" in str(info.value)
    assert Registry(fair.settings).production_version().version == "1.0.0"


def test_the_known_better_version_is_promoted_with_its_evidence(fair: Project, cli) -> None:
    promote(fair.settings, "broken")  # no gate: the broken version serves
    # The two versions' datasets disagree on HH, so the gate asks for weeks one trusts.
    recent = fair.root / "data" / "recent.csv"
    unsure = cli("promote", "1.0.0", "--require-better-rmse", "--config", fair.config)
    assert unsure.exit_code == 2 and "pass --data FILE" in " ".join(unsure.stderr.split())
    result = cli(
        "promote", "1.0.0", "--require-better-rmse", "--data", recent, "--json",
        "--config", fair.config,
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    outcome = json.loads(result.stdout)
    validation = outcome["validation"]
    assert validation["evaluation_weeks"]["weeks"] == 65
    assert outcome["rmse_to"] * 3 < outcome["rmse_from"]
    assert validation["significance"]["statistic"] > 0
    assert validation["significance"]["p_value"] < 0.05
    assert "65 weeks" in outcome["rmse_basis"] and "Diebold–Mariano" in outcome["rmse_basis"]
    assert Registry(fair.settings).production_version().version == "1.0.0"


def test_fewer_fair_weeks_than_the_minimum_are_refused(fair: Project, tmp_path: Path) -> None:
    promote(fair.settings, "broken")
    recent = pd.read_csv(fair.root / "data" / "recent.csv")
    twelve, thirteen = tmp_path / "twelve.csv", tmp_path / "thirteen.csv"
    recent.iloc[:12].to_csv(twelve, index=False)
    recent.iloc[:13].to_csv(thirteen, index=False)
    with pytest.raises(NotEnoughFairWeeksError, match=r"only 12 of the 12 labelled weeks of "):
        promote(fair.settings, "1.0.0", require_better_rmse=True, data=twelve)
    result = promote(fair.settings, "1.0.0", require_better_rmse=True, data=thirteen)
    assert result.report is not None and result.report.weeks.weeks == 13
    # The minimum is a setting.
    promote(load_settings(fair.config), "broken")
    set_mlops(fair, min_fair_weeks=20)
    with pytest.raises(NotEnoughFairWeeksError, match=r"at least 20 are needed"):
        promote(load_settings(fair.config), "1.0.0", require_better_rmse=True, data=thirteen)


def test_require_significant_demands_a_test_at_the_configured_level(fair: Project, cli) -> None:
    promote(fair.settings, "broken")
    # No real difference reaches a level this small, even a threefold error.
    set_mlops(fair, significance_level=1e-300)
    before = fair.config.read_bytes()
    recent = ("--data", fair.root / "data" / "recent.csv")
    refused = cli("promote", "1.0.0", "--require-significant", *recent, "--config", fair.config)
    assert refused.exit_code == 1
    message = " ".join(refused.stderr.split())
    assert "is lower, but not significantly so: Diebold–Mariano" in message
    assert "above the level 1e-300" in message
    assert fair.config.read_bytes() == before
    set_mlops(fair, significance_level=0.05)
    accepted = cli("promote", "1.0.0", "--require-significant", *recent, "--config", fair.config)
    assert accepted.exit_code == 0, accepted.stderr
    assert "Diebold–Mariano" in " ".join(accepted.stdout.split())


# -- the Diebold–Mariano statistic --------------------------------------------------------


def test_without_lags_diebold_mariano_is_the_paired_t_test_on_squared_errors() -> None:
    rng = np.random.default_rng(3)
    production = rng.normal(0, 120, 40)
    candidate = rng.normal(0, 100, 40)
    test = diebold_mariano(candidate, production, lags=0)
    expected = ttest_rel(production**2, candidate**2, alternative="greater")
    assert test.statistic == pytest.approx(expected.statistic, rel=1e-9)
    assert test.p_value == pytest.approx(expected.pvalue, rel=1e-9)


def test_streaks_of_errors_make_the_test_more_cautious() -> None:
    rng = np.random.default_rng(5)
    # Loss differentials that run in streaks (AR(1), rho 0.8) with a small positive mean.
    d = np.zeros(200)
    for t in range(1, 200):
        d[t] = 0.8 * d[t - 1] + rng.normal()
    d += 0.3
    candidate = np.ones(200) * 10.0
    production = np.sqrt(100.0 + d + 10.0)  # e_p^2 - e_c^2 = d + 10
    naive = diebold_mariano(candidate, production, lags=0)
    robust = diebold_mariano(candidate, production)
    assert robust.lags == 5
    assert 0 < robust.statistic < naive.statistic
    assert robust.p_value > naive.p_value


def test_identical_errors_have_no_statistic() -> None:
    errors = np.array([10.0, -20.0, 5.0])
    test = diebold_mariano(errors, errors.copy())
    assert (test.statistic, test.p_value) == (None, None)
    assert "undefined" in test.describe()


# -- comparable numbers -------------------------------------------------------------------


def test_registry_list_shows_each_test_window_and_warns_they_differ(fair: Project, cli) -> None:
    result = cli("registry", "list", "--config", fair.config)
    assert result.exit_code == 0
    text = " ".join(result.stdout.split())
    assert "65 from 2022-10-03" in text and "10 from 2019-08-05" in text
    assert "Versions tested on different weeks are not comparable by these numbers" in text
    assert "hhforecast registry compare A B" in text
    listed = json.loads(cli("registry", "list", "--json", "--config", fair.config).stdout)
    windows = {v["version"]: v["test_period"]["start"] for v in listed["versions"]}
    assert windows == {"1.0.0": "2022-10-03", "broken": "2022-10-03", "0.1.0-bad": "2019-08-05"}


def test_rollback_never_puts_rmses_of_different_weeks_side_by_side(fair: Project, cli) -> None:
    promote(fair.settings, "1.0.0")
    promote(load_settings(fair.config), "0.1.0-bad")
    result = cli("rollback", "--config", fair.config)
    assert result.exit_code == 0, result.stderr
    text = " ".join(result.stdout.split())
    # Each RMSE as training recorded it in registry.json, on its own test weeks.
    registry = Registry(fair.settings)
    good = f"{registry.get('1.0.0').metric('5features', 'RMSE'):,.1f}"
    bad = f"{registry.get('0.1.0-bad').metric('5features', 'RMSE'):,.1f}"
    assert f"RMSE 5features of 1.0.0: {good} on its own test weeks (65 from 2022-10-03)" in text
    assert f"of 0.1.0-bad: {bad} on its own test weeks (10 from 2019-08-05)" in text
    assert "measured on different weeks and are not comparable" in text
    assert f"{good} vs {bad}" not in text and f"{bad} vs {good}" not in text


def test_compare_scores_both_on_their_common_fair_weeks(fair: Project, cli) -> None:
    # The two versions' datasets disagree on HH (one is tripled): neither is taken on trust.
    unsure = cli("registry", "compare", "broken", "1.0.0", "--config", fair.config)
    assert unsure.exit_code == 2
    assert (
        "disagree on the weeks they share (different HH for 65 of the 65 weeks); pass --data FILE"
        in " ".join(unsure.stderr.split())
    )
    recent = fair.root / "data" / "recent.csv"
    result = cli(
        "registry",
        "compare",
        "broken",
        "1.0.0",
        "--data",
        recent,
        "--json",
        "--config",
        fair.config,
    )
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["weeks"]["weeks"] == 65 and data["weeks"]["start"] == "2022-10-03"
    assert data["better"] == "1.0.0"  # the version trained on the true HH
    assert data["metrics"]["broken"]["RMSE"] > 3 * data["metrics"]["1.0.0"]["RMSE"]
    assert data["significance"]["statistic"] > 0  # the second version erred less
    # 0.1.0-bad's registry RMSE (186.8, on its 10 weeks of 2019) looks better than 1.0.0's;
    # on the same 65 unseen weeks it is not.
    table = cli("registry", "compare", "1.0.0", "0.1.0-bad", "--config", fair.config)
    assert table.exit_code == 0
    text = " ".join(table.stdout.split())
    assert "1.0.0 has the lower RMSE on these weeks" in text
    assert "on 65 weeks 2022-10-03 to 2023-12-25" in text


def test_compare_refuses_weeks_one_of_them_learnt_from(fair: Project, cli) -> None:
    tiny = fair.root / "data" / "tiny40.csv"
    result = cli(
        "registry", "compare", "1.0.0", "0.1.0-bad", "--data", tiny, "--config", fair.config
    )
    assert result.exit_code == 1
    assert "cannot be compared fairly: only 0 of the 40 labelled weeks" in " ".join(
        result.stderr.split()
    )
    same = cli("registry", "compare", "1.0.0", "1.0.0", "--config", fair.config)
    assert same.exit_code == 2


def test_a_candidate_is_not_judged_by_its_own_wrong_labels(fair: Project, cli) -> None:
    # "broken" learnt HH x 3; its own test weeks carry those labels, by which it would win.
    promote(fair.settings, "1.0.0")
    before = fair.config.read_bytes(), fair.registry_file.read_bytes()
    result = cli("promote", "broken", "--require-better-rmse", "--config", fair.config)
    assert result.exit_code == 2
    assert " ".join(result.stderr.split()) == (
        "Error: the candidate's dataset data/tripled.csv and production 1.0.0's dataset "
        "sample:sample_weekly.csv disagree on the weeks both hold (different HH for 65 of the 65 "
        "weeks), so the candidate cannot be judged on its own data; check the export and its "
        "column mapping, or pass --data FILE with labelled weeks you trust"
    )
    assert (fair.config.read_bytes(), fair.registry_file.read_bytes()) == before
