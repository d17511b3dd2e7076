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
from nuru_yield.monitoring.season import compare_to_normal
from nuru_yield.monitoring.statistics import DriftRule

RUN_DATE = dt.date(2024, 6, 30)
ACCURACY_REASON = (
    "accuracy: 2023 Long Rains, version 3, 60 days after planting: RMSE 711 kg/ha vs 500 at "
    "evaluation (+42% > +20%, n=900)"
)


def sample_report() -> tuple[DriftReport, pd.DataFrame, pd.DataFrame]:
    """A report over two counties: rain collapsed (drifted: a season signal), altitude
    unchanged (ok), and NDVI missing in almost every current row (insufficient data); the
    alert is realized accuracy (model evidence)."""
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
        compare_to_normal(current, reference),
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
    (everyone, *counties) = payload["season_signals"]
    assert everyone.startswith("all plots (Long Rains): rain 6") and "% below" in everyone
    assert [line.split(" (")[0] for line in counties] == ["Bungoma", "Kitui"]
    season = {row["county"]: row for row in payload["season_to_date"]}
    assert set(season) == {None, "Bungoma", "Kitui"}
    assert 35 < season[None]["rain_pct_of_normal"] < 45  # rain × 0.4
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
    empty = render_html(sample_report()[0], reference, current)
    assert "No county forecasts for this night." in empty


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
    assert signal.count("<li>") == 3 and "<li>Kitui (Long Rains): rain " in signal
    season = page[page.index('<table class="season">') :]
    assert season.count('<td class="words">') == 3


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
