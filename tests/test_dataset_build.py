"""dataset build: raw logs to the weekly dataset, by the documented rules, whatever the dialect."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from hhforecast.config import DatasetConfig
from hhforecast.datasets.build import build_dataset
from hhforecast.datasets.fleet import raw_logs, simulate_fleet
from hhforecast.datasets.weekly import sample_dataset_path
from hhforecast.errors import DatasetError


@pytest.fixture(scope="module")
def small_fleet() -> tuple[pd.DataFrame, pd.DataFrame]:
    """The raw logs of a 9-week fleet (2019-01-07 to 2019-03-04, logs Jan 1 to Mar 31)."""
    return raw_logs(simulate_fleet(seed=3, weeks=9))


def write_logs(folder: Path, util: pd.DataFrame, events: pd.DataFrame) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    u, e = folder / "utilization.csv", folder / "events.csv"
    util.to_csv(u, index=False)
    events.to_csv(e, index=False)
    return u, e


def test_sample_raw_logs_build_the_bundled_sample_exactly(tmp_path: Path, cli) -> None:
    assert cli("sample", "--raw", "raw").exit_code == 0
    result = cli(
        "dataset",
        "build",
        "--utilization",
        "raw/utilization.csv",
        "--events",
        "raw/events.csv",
        "--out",
        "data/weekly.csv",
    )
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "data/weekly.csv").read_bytes() == sample_dataset_path().read_bytes()
    manifest = json.loads((tmp_path / "data/weekly.manifest.json").read_text())
    assert manifest["weeks"]["dropped_partial"] == ["2018-12-31"]
    assert [f["rows"] for f in manifest["inputs"]["utilization"]] == [
        len(pd.read_csv(tmp_path / "raw/utilization.csv"))
    ]
    assert set(manifest["events"]["excluded"]) == {"PILOT", "CABIN"}


def test_brazilian_excel_export_builds_the_same_weekly_file(
    tmp_path: Path, small_fleet: tuple[pd.DataFrame, pd.DataFrame], cli
) -> None:
    util, events = small_fleet
    iso_u, iso_e = write_logs(tmp_path / "iso", util, events)
    br_util = util.drop(columns=["TAC"]).rename(
        columns={"Dep. Date": "Data", "A/C": "Matrícula", "Hours": "Horas", "Cycles": "Ciclos"}
    )
    br_util["Data"] = pd.to_datetime(br_util["Data"]).dt.strftime("%d/%m/%Y")
    br_events = events.rename(
        columns={"date": "Data", "A/C": "Matrícula", "category": "Categoria", "HH": "Homem-hora"}
    )
    br_events["Data"] = pd.to_datetime(br_events["Data"]).dt.strftime("%d/%m/%Y")
    br_events["Categoria"] = br_events["Categoria"].str.lower().str.replace("pilot", " Pilot ")
    (tmp_path / "br").mkdir()
    for frame, name in ((br_util, "utilização.csv"), (br_events, "eventos.csv")):
        text = frame.to_csv(index=False, sep=";", decimal=",", lineterminator="\r\n")
        (tmp_path / "br" / name).write_bytes(text.encode("cp1252"))
    config = tmp_path / "pt.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "dataset": {
                    "utilization": {
                        "date": "Data",
                        "aircraft": "Matrícula",
                        "hours": "Horas",
                        "cycles": "Ciclos",
                    },
                    "events": {
                        "date": "Data",
                        "aircraft": "Matrícula",
                        "category": "Categoria",
                        "hh": "Homem-hora",
                    },
                }
            },
            allow_unicode=True,
        ),
        encoding="utf-8",
    )
    assert (
        cli(
            "dataset",
            "build",
            "--utilization",
            iso_u,
            "--events",
            iso_e,
            "--out",
            "iso.csv",
            "--config",
            config,
        ).exit_code
        == 2
    )  # the config maps Portuguese names: the English file is missing them
    br_args = ["--config", config, "--dayfirst"]
    for args, out in (
        ([], "iso.csv"),
        ([*br_args, "--csv-style", "intl"], "br.csv"),
        (br_args, "br-style.csv"),
    ):
        folder = "iso" if out == "iso.csv" else "br"
        files = ("utilização.csv", "eventos.csv") if folder == "br" else (iso_u, iso_e)
        result = cli(
            "dataset",
            "build",
            "--utilization",
            tmp_path / folder / files[0],
            "--events",
            tmp_path / folder / files[1],
            "--out",
            out,
            *args,
        )
        assert result.exit_code == 0, result.stderr
    assert (tmp_path / "br.csv").read_bytes() == (tmp_path / "iso.csv").read_bytes()
    assert len(pd.read_csv(tmp_path / "br.csv")) == 12  # the logs run to the end of March
    # By default the weekly CSV is written as the logs were: `;`, decimal comma, dd/mm/yyyy.
    styled = (tmp_path / "br-style.csv").read_bytes().decode("cp1252")
    assert styled.splitlines()[0] == "date;acft;sum_daily_hours;age_fleet;Cycles;sum_uti_mensal;HH"
    assert styled.splitlines()[1].startswith("07/01/2019;")
    same = pd.read_csv(tmp_path / "br-style.csv", sep=";", decimal=",", encoding="cp1252")
    iso = pd.read_csv(tmp_path / "iso.csv")
    same["date"] = pd.to_datetime(same["date"], format="%d/%m/%Y").dt.strftime("%Y-%m-%d")
    pd.testing.assert_frame_equal(same, iso)


def test_one_row_per_flight_and_overlapping_files_give_the_same_weeks(
    tmp_path: Path, small_fleet: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    util, events = small_fleet
    u, e = write_logs(tmp_path / "days", util, events)
    by_day = build_dataset([u], [e], DatasetConfig())
    # Split each aircraft-day into two flights: hours and cycles split, TAH after each flight.
    first = util.assign(Hours=(util["Hours"] / 2).round(3), Cycles=util["Cycles"] // 2)
    second = util.assign(
        Hours=util["Hours"] - first["Hours"],
        Cycles=util["Cycles"] - first["Cycles"],
        TAH=util["TAH"] - 0.5,  # the earlier flight reports a smaller TAH: the day keeps the max
    )
    flights = pd.concat([second, first]).sort_values(["Dep. Date", "A/C"], kind="stable")
    # Two yearly-style files overlapping by a month: February is in both.
    dates = pd.to_datetime(flights["Dep. Date"])
    part_a = flights[dates < "2019-03-01"]
    part_b = flights[dates >= "2019-02-01"]
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    part_a.to_csv(a, index=False)
    part_b.to_csv(b, index=False)
    by_flight = build_dataset([a, b], [e], DatasetConfig())
    pd.testing.assert_frame_equal(by_flight.weekly, by_day.weekly, atol=0.11, check_exact=False)
    assert (by_flight.weekly["acft"] == by_day.weekly["acft"]).all()
    assert by_flight.manifest["utilization"]["duplicates_dropped"] == int(
        (pd.to_datetime(part_b["Dep. Date"]) < "2019-03-01").sum()
    )


def test_events_the_utilisation_cannot_support_are_counted_not_guessed(
    tmp_path: Path, small_fleet: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    util, events = small_fleet
    extra = pd.DataFrame(
        {
            "date": ["2019-02-05", "2019-07-01", "2019-02-05"],
            "A/C": ["PR-XXX", "PR-GAA", "PR-GAA"],
            "ATA": [21, 21, 21],
            "category": ["MAINT", "MAINT", "cab in"],
            "HH": [100.0, 50.0, 7.0],
        }
    )
    u, e = write_logs(tmp_path, util, pd.concat([events, extra]))
    built = build_dataset([u], [e], DatasetConfig())
    plain = build_dataset(
        *[[p] for p in write_logs(tmp_path / "plain", util, events)], DatasetConfig()
    )
    pd.testing.assert_frame_equal(built.weekly, plain.weekly)
    m = built.manifest["events"]
    assert m["unknown_aircraft"] == {"rows": 1, "HH": 100.0}
    assert m["outside_utilization_dates"] == {"rows": 1, "HH": 50.0}
    assert m["excluded"]["CABIN"]["HH"] == pytest.approx(
        plain.manifest["events"]["excluded"]["CABIN"]["HH"] + 7.0
    )


def test_a_missing_month_is_refused_naming_the_weeks(
    tmp_path: Path, small_fleet: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    util, events = small_fleet
    feb = pd.to_datetime(util["Dep. Date"]).dt.month == 2
    u, e = write_logs(tmp_path, util[~feb], events)
    with pytest.raises(
        DatasetError,
        match=r"no utilisation at all in the week\(s\) of "
        r"2019-02-04, 2019-02-11, 2019-02-18, inside",
    ):
        build_dataset([u], [e], DatasetConfig())


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda u: u.drop(columns=["Hours"]),
            r"utilization.csv: utilisation log: missing column\(s\) 'Hours' "
            r"\(dataset.utilization.hours\); columns present: 'Dep. Date', 'A/C', 'Cycles'",
        ),
        (
            lambda u: u.assign(Cycles=np.where(np.arange(len(u)) == 4, -1, u["Cycles"])),
            r"column 'Cycles' \(dataset.utilization.cycles\), line 6: -1 is negative",
        ),
        (
            lambda u: u.assign(Hours=np.where(np.arange(len(u)) == 2, "x", u["Hours"])),
            r"column 'Hours', line 4: 'x' is not a number",
        ),
    ],
)
def test_bad_raw_input_exits_2_in_one_line_and_writes_nothing(
    tmp_path: Path, small_fleet: tuple[pd.DataFrame, pd.DataFrame], cli, edit, message: str
) -> None:
    util, events = small_fleet
    u, e = write_logs(tmp_path, edit(util), events)
    result = cli(
        "dataset",
        "build",
        "--utilization",
        u,
        "--events",
        e,
        "--out",
        "w.csv",
        "--report",
        "r.html",
    )
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: dataset ")
    import re

    assert re.search(message, lines[0]), lines[0]
    assert not list(tmp_path.glob("w*")) and not (tmp_path / "r.html").exists()


def test_report_is_self_contained_and_escapes_what_the_files_say(
    tmp_path: Path, small_fleet: tuple[pd.DataFrame, pd.DataFrame], cli
) -> None:
    util, events = small_fleet
    hostile = events.assign(category=events["category"].replace("CABIN", "<script>x</script>"))
    u, e = write_logs(tmp_path / "a&b", util, hostile)
    config = tmp_path / "hostile.yaml"
    config.write_text("dataset:\n  excluded_categories: [PILOT, '<script>x</script>']\n")
    result = cli(
        "dataset",
        "build",
        "--utilization",
        u,
        "--events",
        e,
        "--out",
        "w.csv",
        "--report",
        "r.html",
        "--config",
        config,
        "--json",
    )
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["report"] == str(tmp_path / "r.html")
    html = (tmp_path / "r.html").read_text()
    assert "<script" not in html and "&lt;SCRIPT&gt;X&lt;/SCRIPT&gt;" in html
    assert "a&amp;b" in html
    assert html.count('src="data:image/png;base64,') == 4
    assert "http://" not in html and "https://" not in html


def test_every_event_row_is_counted_once_in_the_manifest(
    tmp_path: Path, small_fleet: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    util, events = small_fleet
    dates = pd.to_datetime(events["date"])
    early, late = events[dates < "2019-02-15"], events[dates >= "2019-02-01"]  # overlap
    extra = pd.DataFrame(
        {"date": ["2019-06-03"], "A/C": ["PR-GAA"], "ATA": [21], "category": ["X"], "HH": [1.0]}
    )
    u = tmp_path / "u.csv"
    util.to_csv(u, index=False)
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    early.to_csv(a, index=False)
    pd.concat([late, extra]).to_csv(b, index=False)
    m = build_dataset([u], [a, b], DatasetConfig()).manifest["events"]
    parts = [
        m["duplicates_dropped"],
        m["unknown_aircraft"],
        m["outside_utilization_dates"],
        m["in_dropped_weeks"],
        m["counted"],
        *m["excluded"].values(),
    ]
    assert m["rows_read"] == len(early) + len(late) + 1
    assert sum(p["rows"] for p in parts) == m["rows_read"]
    total_hh = early["HH"].sum() + late["HH"].sum() + 1.0
    assert sum(p["HH"] for p in parts) == pytest.approx(total_hh, abs=0.01)
    assert m["in_dropped_weeks"]["rows"] > 0  # the partial week 2018-12-31 (Jan 1 to 6)


BRAZILIAN_LOG = "Data Voo;Matrícula;Horas;Ciclos;TAH;Base\n01/02/2024;PR-ABC;1,5;1;100;GRU\n"
MAPPING_HINT = (
    "Map the file's own names in the dataset: section of config.yaml (see docs/configuration.md)."
)


def test_a_mistyped_mapping_names_the_whole_header_and_the_closest_column(
    tmp_path: Path,
) -> None:
    path = tmp_path / "voos.csv"
    path.write_bytes(BRAZILIAN_LOG.encode("cp1252"))
    mapping = {"date": "Data Voo", "aircraft": "Matricula", "hours": "Horas", "cycles": "Ciclos"}
    config = DatasetConfig.model_validate({"dayfirst": True, "utilization": mapping})
    with pytest.raises(DatasetError) as caught:
        build_dataset([path], [path], config)
    assert str(caught.value) == (
        f"dataset {path}: utilisation log: missing column(s) 'Matricula' "
        "(dataset.utilization.aircraft, closest in the file: 'Matrícula'); columns present: "
        f"'Data Voo', 'Matrícula', 'Horas', 'Ciclos', 'TAH', 'Base'. {MAPPING_HINT}"
    )


def test_the_default_mapping_on_a_brazilian_log_shows_its_six_columns(tmp_path: Path) -> None:
    path = tmp_path / "voos.csv"
    path.write_bytes(BRAZILIAN_LOG.encode("cp1252"))
    with pytest.raises(DatasetError) as caught:
        build_dataset([path], [path], DatasetConfig())
    assert str(caught.value) == (
        f"dataset {path}: utilisation log: missing column(s) 'Dep. Date' "
        "(dataset.utilization.date), 'A/C' (dataset.utilization.aircraft), 'Hours' "
        "(dataset.utilization.hours, closest in the file: 'Horas'), 'Cycles' "
        "(dataset.utilization.cycles, closest in the file: 'Ciclos'); columns present: "
        f"'Data Voo', 'Matrícula', 'Horas', 'Ciclos', 'TAH', 'Base'. {MAPPING_HINT}"
    )
