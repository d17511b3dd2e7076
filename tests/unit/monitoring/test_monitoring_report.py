"""The drift report: JSON content and a self-contained HTML page, which say whether the
night was a season signal, model evidence or both."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re

import numpy as np
import pandas as pd

from nuru_yield.monitoring.alerts import Alert
from nuru_yield.monitoring.drift import detect_drift
from nuru_yield.monitoring.report import DriftReport, driver_shares, render_html
from nuru_yield.monitoring.statistics import DriftRule

RUN_DATE = dt.date(2024, 6, 30)
ACCURACY_REASON = (
    "accuracy: 2023 Long Rains, version 3, 60 days after planting: RMSE 711 kg/ha vs 500 at "
    "evaluation (+42% > +20%, n=900)"
)


def bulletin_rows() -> pd.DataFrame:
    """The night's ``county_forecasts`` rows of the two counties (the columns the report
    reads): Kitui far below its normal rain to date, Bungoma near it, and a Short Rains
    county-season without a normal yet."""
    return pd.DataFrame(
        [
            {"county": "Bungoma", "season": "Long Rains", "season_year": 2024, "n_plots": 600,
             "forecast_kg_per_ha": 2410.0, "lower_kg_per_ha": 1900.0, "upper_kg_per_ha": 2800.0,
             "pct_of_5yr_mean": 98.0, "beats_naive": True, "status": "ok",
             "rain_mm": 290.0, "normal_rain_mm": 300.0, "rain_pct_of_normal": 96.7,
             "tmax_c": 26.1, "normal_tmax_c": 26.0, "heat_days": 0.0, "normal_heat_days": 0.0,
             "normal_years": 10, "season_signal": None},
            {"county": "Kitui", "season": "Long Rains", "season_year": 2024, "n_plots": 600,
             "forecast_kg_per_ha": 612.4, "lower_kg_per_ha": 450.0, "upper_kg_per_ha": 800.0,
             "pct_of_5yr_mean": 71.2, "beats_naive": True, "status": "ok",
             "rain_mm": 58.0, "normal_rain_mm": 100.0, "rain_pct_of_normal": 58.0,
             "tmax_c": 31.5, "normal_tmax_c": 30.0, "heat_days": 6.0, "normal_heat_days": 2.0,
             "normal_years": 10,
             "season_signal": "rain 42% below the county's normal to date (58 mm against "
             "100); days 1.5 °C hotter than the county's normal to date (mean maximum 31.5 °C "
             "against 30.0)"},
            {"county": "Kitui", "season": "Short Rains", "season_year": 2024, "n_plots": 3,
             "forecast_kg_per_ha": None, "lower_kg_per_ha": None, "upper_kg_per_ha": None,
             "pct_of_5yr_mean": None, "beats_naive": None, "status": "too_few_plots",
             "rain_mm": None, "normal_rain_mm": None, "rain_pct_of_normal": None,
             "tmax_c": None, "normal_tmax_c": None, "heat_days": None, "normal_heat_days": None,
             "normal_years": None, "season_signal": None},
        ]
    )  # fmt: skip


def sample_report() -> tuple[DriftReport, pd.DataFrame, pd.DataFrame]:
    """A report over two counties: rain collapsed (drifted: a season signal), altitude
    unchanged (ok), and NDVI missing in almost every current row (insufficient data); the
    alert is realized accuracy (model evidence); the night's county bulletin rows."""
    rng = np.random.default_rng(0)
    n_ref, n_cur = 3000, 1200
    reference = pd.DataFrame(
        {
            "county": rng.choice(["Bungoma", "Kitui"], n_ref),
            "season": "Long Rains",
            "precip_total": rng.gamma(6.0, 60.0, n_ref),
            "altitude": rng.normal(1500, 200, n_ref),
            "mean_ndvi": rng.normal(0.5, 0.1, n_ref),
        }
    )
    current = pd.DataFrame(
        {
            "county": rng.choice(["Bungoma", "Kitui"], n_cur),
            "season": "Long Rains",
            "precip_total": rng.gamma(6.0, 60.0, n_cur) * 0.4,
            "altitude": rng.normal(1500, 200, n_cur),
            "mean_ndvi": np.where(rng.random(n_cur) < 0.95, np.nan, 0.5),
        }
    )
    rule = DriftRule(min_samples=100)
    drifts = detect_drift(reference, current, ["precip_total", "altitude", "mean_ndvi"], rule)
    accuracy = pd.DataFrame(
        [
            {
                "season": "Long Rains",
                "season_year": 2023,
                "model_name": "champion",
                "model_version": "3",
                "lead_time_days": 60,
                "rmse": 710.5,
                "mae": 520.25,
                "bias": -40.0,
                "coverage": float("nan"),
                "n": 900,
                "too_few_labels": False,
            },
            {
                "season": "Long Rains",
                "season_year": 2023,
                "model_name": "champion",
                "model_version": "3",
                "lead_time_days": 90,
                "rmse": 655.4,
                "mae": 500.0,
                "bias": 12.0,
                "coverage": 0.8234,
                "n": 12,
                "too_few_labels": True,
            },
        ]
    )
    report = DriftReport(
        RUN_DATE,
        "file:///lake/monitoring/predictions/2024-06-30/predictions.parquet",
        {"rows": n_ref, "strata": []},
        rule,
        drifts,
        Alert((ACCURACY_REASON,)),
        accuracy,
        counties=bulletin_rows(),
    )
    return report, reference, current


def test_json_report_lists_every_variable_and_county_and_is_strict_json() -> None:
    report, _, _ = sample_report()
    payload = report.to_json()
    text = json.dumps(payload, allow_nan=False)  # NaN coverage must have become null
    assert json.loads(text)["realized_accuracy"][0]["coverage"] is None
    assert payload["drifted"] == ["precip_total"]
    assert payload["finding"] == "season signal and model evidence"
    assert payload["model_evidence"] == ACCURACY_REASON
    # The season signals in words are the county bulletin's, word for word.
    kitui = bulletin_rows().iloc[1]
    assert payload["season_signals"] == [f"Kitui (Long Rains 2024): {kitui['season_signal']}"]
    season = {(row["county"], row["season"]): row for row in payload["season_to_date"]}
    assert set(season) == {
        ("Bungoma", "Long Rains"),
        ("Kitui", "Long Rains"),
        ("Kitui", "Short Rains"),
    }
    assert season[("Kitui", "Long Rains")]["rain_pct_of_normal"] == 58.0
    assert season[("Kitui", "Short Rains")]["normal_rain_mm"] is None  # no normal: null
    assert payload["alert"] == {
        "raised": True,
        "trigger_training": True,
        "reasons": [report.alert.reasons[0]],
        "suppressed_by": None,
    }
    keys = {(v["feature"], v["county"]): v["status"] for v in payload["variables"]}
    assert len(keys) == 9  # 3 variables × (all plots, Bungoma, Kitui)
    assert keys[("mean_ndvi", None)] == "insufficient data"
    assert keys[("altitude", "Kitui")] == "ok"
    assert keys[("precip_total", "Bungoma")] == "drifted"
    signals = {(v["feature"], v["county"]): v["signal"] for v in payload["variables"]}
    assert signals[("precip_total", None)] == signals[("precip_total", "Kitui")] == "season signal"
    assert signals[("altitude", None)] is None
    rain = next(v for v in payload["variables"] if v["feature"] == "precip_total")
    assert rain["current_mean"] < 0.5 * rain["reference_mean"]
    assert rain["outside_training_share"] is None  # no training ranges in this report


def test_html_is_self_contained_with_a_summary_and_charts_of_drifted_variables() -> None:
    report, reference, current = sample_report()
    page = render_html(report, reference, current)
    assert "<script" not in page and "<link" not in page and "@import" not in page
    assert not re.search(r"url\((?!#)|(?:src|href)=\"(?!#)", page)  # only in-page references
    urls = set(re.findall(r"https?://[^\"\s<]+", page))
    assert urls <= {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}  # namespaces
    summary = page[page.index('<table class="summary">') :]
    summary = summary[: summary.index("</table>")]
    assert summary.count("<tr class=") == 3
    assert '<tr class="season"><td class="name">precip_total</td><td>season signal</td>' in summary
    assert '<tr class="insufficient"><td class="name">mean_ndvi</td>' in summary
    charts = re.findall(r'<figure class="chart" data-variable="([^"]+)"><svg', page)
    assert charts == ["precip_total"]  # only drifted variables get histograms
    # Metrics for people: kg/ha whole, coverage to two decimals, small groups flagged.
    accuracy = page[page.index('<table class="accuracy">') :]
    assert "Realized accuracy" in page and "<td>710</td>" in accuracy and "710.5" not in page
    assert "<td>0.82</td>" in accuracy and "0.823" not in accuracy
    assert accuracy.count("too few labels") == 1 + 1  # the column heading, the n=12 row
    assert "Retraining is due: the drift_monitoring DAG starts model_training." in page
    counties = page[page.index('<table class="counties">') :]
    counties = counties[: counties.index("</table>")]
    assert counties.count('<td class="name">') == 2  # Bungoma, Kitui
    assert counties.count('<td class="season"') == 2  # precip_total in each county
    assert counties.count('<td class="insufficient"') == 2  # mean_ndvi in each county


def test_everything_from_the_data_is_escaped_on_the_page() -> None:
    report, reference, current = sample_report()
    hostile = '<script>alert("x")</script> & <b>'
    report = dataclasses.replace(
        report,
        source=f"file:///lake/{hostile}",
        alert=Alert(reasons=(f"accuracy: {hostile}",)),
        accuracy=report.accuracy.assign(season=hostile),
    )
    page = render_html(report, reference, current)
    assert "<script" not in page and "<b>" not in page
    escaped = "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; &lt;b&gt;"
    assert page.count(escaped) == 2 + len(report.accuracy)  # source, reason, each row


def test_the_report_carries_the_nights_county_bulletin() -> None:
    report, reference, current = sample_report()
    counties = pd.DataFrame(
        [
            {
                "county": "<b>Kitui</b>",
                "season": "Long Rains",
                "season_year": 2024,
                "n_plots": 1200,
                "forecast_kg_per_ha": 612.4,
                "lower_kg_per_ha": 450.0,
                "upper_kg_per_ha": 800.0,
                "pct_of_5yr_mean": 71.2,
                "rain_pct_of_normal": 58.0,
                "beats_naive": True,
                "status": "ok",
                "season_signal": "rain 42% below the county's normal to date (58 mm against 100)",
            }
        ]
    )
    uri = "file:///lake/monitoring/bulletins/2024-06-30/bulletin.html"
    report = dataclasses.replace(report, counties=counties, bulletin=uri)

    payload = json.loads(json.dumps(report.to_json(), allow_nan=False))
    assert payload["county_bulletin"]["uri"] == uri
    assert payload["county_bulletin"]["counties"][0]["pct_of_5yr_mean"] == 71.2
    page = render_html(report, reference, current)
    section = page[page.index("<h2>County bulletin</h2>") : page.index("<h2>Drifted variables")]
    assert f'<a href="{uri}">' in section
    assert '<td class="name">&lt;b&gt;Kitui&lt;/b&gt;</td>' in section
    assert "<td>612</td><td>450–800</td><td>71</td><td>58</td>" in section
    assert "rain 42% below" in section
    empty = dataclasses.replace(report, counties=pd.DataFrame(), bulletin=None)
    assert empty.season_signals == [] and empty.to_json()["season_to_date"] == []
    page = render_html(empty, reference, current)
    assert "No county forecasts for this night." in page and '<table class="season">' not in page


def test_a_season_signal_without_evidence_says_so_and_asks_for_no_retraining() -> None:
    report, reference, current = sample_report()
    report = dataclasses.replace(report, alert=Alert(), accuracy=report.accuracy.iloc[:0])
    assert report.finding == "season signal"
    assert report.evidence_summary == (
        "none: inputs not checked against the training range (the model records none); "
        "no new harvest labels"
    )
    page = render_html(report, reference, current)
    assert "Retraining is due" not in page
    assert "<strong>No evidence the model is wrong</strong> — no retraining." in page
    signal = page[page.index('<div class="signal">') :]
    signal = signal[: signal.index("</div>")]
    assert "news for the bulletin, not a model fault" in signal
    assert signal.count("<li>") == 1 and "<li>Kitui (Long Rains 2024): rain 42% below " in signal
    season = page[page.index('<table class="season">') :]
    season = season[: season.index("</table>")]
    assert season.count('<td class="words">') == 3  # every county-season, with or without words
    assert "<td>58%</td>" in season and "<td>97%</td>" in season
    assert '<td class="name">Kitui, Short Rains 2024</td><td>–</td>' in season


def test_the_bulletins_words_are_a_season_signal_only_when_the_season_drifted() -> None:
    """A county far from its normal to date, on a night where no season-varying variable
    drifted from the drift reference: its numbers and words stay in the season table, but
    the report does not call the night a season signal."""
    report, reference, current = sample_report()
    quiet = [d for d in report.drifts if d.variable != "precip_total"]
    report = dataclasses.replace(report, drifts=quiet, alert=Alert())
    assert report.finding == "nothing unusual"
    assert report.season_signals == []
    page = render_html(report, reference, current)
    assert '<div class="signal">' not in page
    assert "rain 42% below the county" in page[page.index('<table class="season">') :]


def test_the_nights_driver_slots_are_counted_by_feature() -> None:
    """The prediction log's ``top_drivers`` (scoring's compact JSON, or anyone's spaced one):
    each feature's share of the slots, and where the plot lies said apart."""
    logged = pd.Series(
        [
            '[{"feature":"precip_total","value":12.5,"contribution":-310.2},'
            '{"feature":"latitude","value":-0.4,"contribution":120.0},'
            '{"feature":"mean_ndvi","value":null,"contribution":-8.0}]',
            json.dumps([{"feature": "precip_total", "value": 3.0, "contribution": -40.0}]),
            None,
        ]
    )
    shares = driver_shares(logged)
    assert shares == {"precip_total": 0.5, "latitude": 0.25, "mean_ndvi": 0.25}
    report, _, _ = sample_report()
    report = dataclasses.replace(report, drivers=shares)
    assert report.drivers_summary == (
        "precip_total 50%, latitude 25%, mean_ndvi 25% of driver slots; where the plot lies "
        "(altitude, latitude, longitude, is_short_rains) 25.0%"
    )
    assert report.to_json()["driver_shares"] == shares
    assert dataclasses.replace(report, drivers={}).drivers_summary == "none (no scored forecasts)"
