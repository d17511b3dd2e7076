"""Request and response shapes: the seed's ``/predict`` contract, extended with intervals,
drivers and the plot-season a forecast belongs to (docs/DESIGN.md,
"Database")."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field
from pydantic_core import PydanticCustomError

from nuru_yield.names import CHALLENGER, CHAMPION, MAX_PLOT_ID
from nuru_yield.serving.store import Row, as_utc

Season = Literal["Long Rains", "Short Rains"]
# What clients name: `ensemble` is the champion (seed naming), `challenger` the shadow model.
ModelChoice = Literal["ensemble", "challenger"]
PUBLIC_NAMES: dict[str, ModelChoice] = {CHAMPION: "ensemble", CHALLENGER: "challenger"}
STORED_NAMES: dict[ModelChoice, str] = {public: stored for stored, public in PUBLIC_NAMES.items()}

# Every timestamp leaves with its zone (RFC 3339), also those SQLite stored without one.
UtcDatetime = Annotated[dt.datetime, AfterValidator(as_utc)]


def _json_number(value: object) -> object:
    """A JSON number and nothing else: pydantic's lax mode would also take ``true`` or
    ``"12"``, which the schema does not allow (a whole ``12.0`` is an integer to JSON Schema,
    and stays accepted)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PydanticCustomError("number_type", "Input should be a JSON number")
    return value


# After a field's bounds in `Annotated[…]` (before them, the bounds leave the JSON schema).
JSON_NUMBER = BeforeValidator(_json_number)
# An ISO date string only (lax mode also takes a Unix timestamp).
JsonDate = Annotated[dt.date, Field(strict=True)]

MAX_BATCH = 1000

_EXAMPLE_REQUEST = {
    "plot_id": 1,
    "latitude": -0.499127,
    "longitude": 37.612253,
    "planting_date": "2025-03-20",
    "season": "Long Rains",
    "altitude": 1252.08,
    "model_name": "ensemble",
}
_EXAMPLE_PREDICTION = {
    "plot_id": 1,
    "predicted_yield_kg_per_ha": 2450.75,
    "model_name": "ensemble",
    "model_version": "7",
    "confidence_score": 0.8,
    "features_used": {"precip_total": 450.2, "gdd_sum": 1200.5, "ndvi_mean": 0.65},
    "timestamp": "2025-05-02T01:12:09Z",
    "yield_lower": 1710.0,
    "yield_upper": 3240.5,
    "top_drivers": [{"feature": "precip_total", "value": 450.2, "contribution": 210.4}],
    "season": "Long Rains",
    "season_year": 2025,
    "run_date": "2025-05-01",
    "county": "Nakuru",
    "days_after_planting": 42,
    "basis": "model",
    "normal_kg_per_ha": 2210.0,
    "plot_normal_kg_per_ha": 2240.35,
}


class PlotQuery(BaseModel):
    """A plot as the seed's clients send it. Only ``plot_id`` (and ``season``, the year of
    ``planting_date``) select the forecast; the location fields are validated for
    compatibility, the stored forecast used the plot's registered location."""

    # Values as the schema types them (no `true` or "1" for a plot id), and no NaN or
    # ±Infinity (which JSON does not have, but parsers accept).
    model_config = ConfigDict(allow_inf_nan=False)

    plot_id: Annotated[int, Field(ge=0, le=MAX_PLOT_ID), JSON_NUMBER] = Field(examples=[1])
    latitude: Annotated[float, Field(ge=-90, le=90), JSON_NUMBER] | None = Field(
        None, examples=[-0.499127]
    )
    longitude: Annotated[float, Field(ge=-180, le=180), JSON_NUMBER] | None = Field(
        None, examples=[37.612253]
    )
    planting_date: JsonDate | None = Field(
        None, description="Selects the season year (the year the plot was planted)."
    )
    season: Season | None = None
    altitude: Annotated[float, Field(ge=-500, le=9000), JSON_NUMBER] | None = Field(
        None, description="Metres."
    )

    @property
    def season_year(self) -> int | None:
        return self.planting_date.year if self.planting_date else None


class PredictionRequest(PlotQuery):
    model_config = ConfigDict(json_schema_extra={"examples": [_EXAMPLE_REQUEST]})

    model_name: ModelChoice = Field(
        "ensemble", description="`ensemble` = the champion; `challenger` = the shadow model."
    )


class BatchRequest(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"plots": [{"plot_id": 1, "season": "Long Rains"}, {"plot_id": 2}]},
            ]
        },
    )

    plots: list[PlotQuery] = Field(
        min_length=1, max_length=MAX_BATCH, description=f"At most {MAX_BATCH} plots per call."
    )
    model_name: ModelChoice = "ensemble"


class Prediction(BaseModel):
    """A stored forecast, in the seed's response shape plus interval, drivers and season."""

    model_config = ConfigDict(json_schema_extra={"examples": [_EXAMPLE_PREDICTION]})

    plot_id: int
    predicted_yield_kg_per_ha: float
    model_name: ModelChoice = Field(description="The model that answered.")
    model_version: str
    confidence_score: float | None = Field(
        description="Level of the interval [yield_lower, yield_upper], e.g. 0.8."
    )
    features_used: dict[str, Any] = Field(
        description="Feature values of the snapshot the forecast was scored on (its drivers)."
    )
    timestamp: UtcDatetime = Field(description="When the forecast was scored.")
    yield_lower: float | None
    yield_upper: float | None
    # `Any`, not pydantic's JsonValue: the stored JSON needs no re-validation on the hot path.
    top_drivers: Any = Field(
        description="What this season changed most, largest first: `[{feature, value, "
        "contribution}]`, contributions in kg/ha from the plot normal (positive raises the "
        "forecast). Rain, heat, dry spells, vegetation and planting date only; where the plot "
        "lies is in `plot_normal_kg_per_ha`."
    )
    season: str
    season_year: int
    run_date: dt.date
    county: str | None = None
    days_after_planting: int | None = None
    basis: Literal["model", "blended", "normal"] | None = Field(
        None,
        description="What the forecast rests on: the model, the county normal (too early in the "
        "season for the model to beat it), or a blend of the two.",
    )
    normal_kg_per_ha: float | None = Field(
        None, description="The plot's county normal for the season: a normal season's yield."
    )
    plot_normal_kg_per_ha: float | None = Field(
        None,
        description="The plot's own normal: the county normal adjusted for where the plot lies "
        "(location, altitude). The forecast is this plus the contributions of everything the "
        "season changed, of which `top_drivers` are the largest. Null for forecasts scored "
        "before it existed.",
    )


def features_from_drivers(drivers: Any) -> dict[str, Any]:
    """Feature values carried by the stored drivers (``[{"feature", "value", …}, …]``)."""
    if not isinstance(drivers, list):
        return {}
    return {
        str(item["feature"]): item["value"]
        for item in drivers
        if isinstance(item, Mapping) and "feature" in item and "value" in item
    }


def prediction_from_row(row: Row) -> Prediction:
    return Prediction(
        plot_id=row["plot_id"],
        predicted_yield_kg_per_ha=row["predicted_yield_kg_per_ha"],
        model_name=PUBLIC_NAMES.get(row["model_name"], "ensemble"),
        model_version=row["model_version"],
        confidence_score=row["interval_level"],
        features_used=features_from_drivers(row["top_drivers"]),
        timestamp=row["scored_at"],
        yield_lower=row["yield_lower"],
        yield_upper=row["yield_upper"],
        top_drivers=row["top_drivers"],
        season=row["season"],
        season_year=row["season_year"],
        run_date=row["run_date"],
        county=row["county"],
        days_after_planting=row["days_after_planting"],
        basis=row["basis"],
        normal_kg_per_ha=row["normal_kg_per_ha"],
        plot_normal_kg_per_ha=row["plot_normal_kg_per_ha"],
    )


class BatchItem(BaseModel):
    plot_id: int
    status: Literal["ok", "not_found"]
    prediction: Prediction | None = None
    detail: str | None = None


class BatchResponse(BaseModel):
    model_name: ModelChoice
    found: int
    not_found: int
    results: list[BatchItem]


class PredictionHistory(BaseModel):
    plot_id: int
    model_name: ModelChoice
    season: Season | None
    season_year: int | None
    as_of: dt.date | None = Field(description="Forecasts scored on or before this date.")
    limit: int
    offset: int
    next_offset: int | None = Field(description="Offset of the next page; null on the last.")
    items: list[Prediction] = Field(description="Newest first.")


class Health(BaseModel):
    status: Literal["healthy", "degraded", "unhealthy"]
    reasons: list[str] = Field(description="Why the status is not healthy.")
    models_loaded: list[str] = Field(
        description="Models with served predictions, then the registry's aliases."
    )
    mlflow_connected: bool
    feature_store_available: bool
    predictions_db: Literal["ok", "unavailable"]
    latest_run_date: dt.date | None
    newest_partition_age_seconds: float | None
    timestamp: UtcDatetime


class ModelVersion(BaseModel):
    version: str
    aliases: list[str]
    run_id: str | None
    status: str | None
    created_at: UtcDatetime | None
    metrics: dict[str, float]
    tags: dict[str, str]


class Promotion(BaseModel):
    id: int
    decided_at: UtcDatetime
    model_name: str
    candidate_version: str | None
    previous_version: str | None
    alias: str
    decision: str
    reason: str
    candidate_metrics: Any = None
    champion_metrics: Any = None
    dag_run_id: str | None = None
    actor: str | None = None


class Models(BaseModel):
    registered_model: str
    mlflow_connected: bool
    mlflow_error: str | None
    aliases: dict[str, str]
    versions: list[ModelVersion] = Field(description="Newest first.")
    promotions: list[Promotion] = Field(description="Newest first, from `model_promotions`.")
    fetched_at: UtcDatetime


class ErrorBody(BaseModel):
    detail: str


CountyStatus = Literal["ok", "short_record", "no_skill", "too_few_plots"]

_EXAMPLE_COUNTY = {
    "county": "Makueni",
    "season": "Long Rains",
    "season_year": 2025,
    "run_date": "2025-04-10",
    "model_version": "1",
    "lead_days": 24,
    "n_plots": 1285,
    "plot_share": 1.0,
    "area_ha": 612.4,
    "forecast_kg_per_ha": 690.0,
    "lower_kg_per_ha": 470.0,
    "upper_kg_per_ha": 910.0,
    "production_t": 422.6,
    "mean_5yr_kg_per_ha": 760.0,
    "mean_lt_kg_per_ha": 760.0,
    "record_seasons": 5,
    "pct_of_5yr_mean": 90.8,
    "pct_of_lt_mean": 90.8,
    "hist_percentile": 20.0,
    "lowest_on_record": False,
    "lowest3_on_record": True,
    "skill_lead_days": 30,
    "skill_seasons": 5,
    "skill_mape": 14.2,
    "skill_nrmse": 0.17,
    "naive_nrmse": 0.24,
    "trend_nrmse": 0.31,
    "beats_naive": True,
    "rain_mm": 61.0,
    "normal_rain_mm": 102.0,
    "rain_pct_of_normal": 59.8,
    "tmax_c": 30.4,
    "normal_tmax_c": 29.8,
    "heat_days": 0.0,
    "normal_heat_days": 0.2,
    "normal_years": 5,
    "season_signal": "rain 40% below the county's normal to date (61 mm against 102)",
    "status": "ok",
    "message": None,
    "computed_at": "2025-04-11T00:41:07Z",
}


class CountyForecast(BaseModel):
    """A county's forecast of one night: a row of `county_forecasts` (docs/DESIGN.md,
    "County bulletins"). Figures are null where the county cannot tell (`status`,
    `message`)."""

    model_config = ConfigDict(json_schema_extra={"examples": [_EXAMPLE_COUNTY]})

    county: str
    season: str
    season_year: int
    run_date: dt.date
    model_version: str
    lead_days: int | None = Field(description="Median days after planting of its plots.")
    n_plots: int = Field(description="Plot-seasons scored that night.")
    plot_share: float | None = Field(
        description="Of the county's plot-seasons of the season in the raw plots."
    )
    area_ha: float | None = Field(description="Hectares scored (null unless every area is known).")
    forecast_kg_per_ha: float | None = Field(description="Area-weighted mean forecast.")
    lower_kg_per_ha: float | None = Field(description="80% interval, calibrated on county figures.")
    upper_kg_per_ha: float | None
    production_t: float | None = Field(description="Σ forecast × area of the plots scored, t.")
    mean_5yr_kg_per_ha: float | None = Field(
        description="Mean realized yield of the county's last five seasons of the kind."
    )
    mean_lt_kg_per_ha: float | None = Field(description="… of every season on record.")
    record_seasons: int | None
    pct_of_5yr_mean: float | None
    pct_of_lt_mean: float | None
    hist_percentile: float | None = Field(
        description="Share of the seasons on record the forecast is above (ties half), 0–100."
    )
    lowest_on_record: bool | None
    lowest3_on_record: bool | None
    skill_lead_days: int | None = Field(description="The hindcast lead the skill is read at.")
    skill_seasons: int | None
    skill_mape: float | None = Field(description="Hindcast MAPE (%) at that lead.")
    skill_nrmse: float | None = Field(description="Hindcast RMSE / mean realized yield.")
    naive_nrmse: float | None = Field(
        description="The same for the county's mean of its other seasons."
    )
    trend_nrmse: float | None = Field(description="The same for the county's linear trend.")
    beats_naive: bool | None = Field(description="Whether the model beat the county's mean.")
    rain_mm: float | None = Field(description="Rain since planting (mean of sampled plots).")
    normal_rain_mm: float | None = Field(description="The same days of earlier years.")
    rain_pct_of_normal: float | None
    tmax_c: float | None = Field(description="Mean daily maximum temperature since planting.")
    normal_tmax_c: float | None
    heat_days: float | None = Field(description="Days above 35 °C since planting.")
    normal_heat_days: float | None
    normal_years: int | None
    season_signal: str | None = Field(description="Rain or heat far from normal, in words.")
    status: CountyStatus
    message: str | None = Field(description="What the county cannot tell, and why.")
    computed_at: UtcDatetime


def county_from_row(row: Row) -> CountyForecast:
    return CountyForecast(**{name: row[name] for name in CountyForecast.model_fields})


class CountyTable(BaseModel):
    """Every county forecast of one night: the newest on or before ``as_of``."""

    run_date: dt.date
    as_of: dt.date | None = Field(description="The night asked for (null: the newest).")
    season: Season | None
    counties: list[CountyForecast] = Field(description="By county, then season.")


class TrajectoryPoint(BaseModel):
    run_date: dt.date
    lead_days: int | None
    n_plots: int
    forecast_kg_per_ha: float | None
    lower_kg_per_ha: float | None
    upper_kg_per_ha: float | None
    pct_of_5yr_mean: float | None
    status: CountyStatus


class LeadSkill(BaseModel):
    """The hindcast skill of the forecast's model version at one lead time."""

    lead_days: int
    n_seasons: int
    first_season_year: int | None
    last_season_year: int | None
    mean_yield_kg_per_ha: float | None
    skill_mape: float | None
    skill_nrmse: float | None
    naive_mape: float | None
    naive_nrmse: float | None
    trend_mape: float | None
    trend_nrmse: float | None
    beats_naive: bool | None
    beats_trend: bool | None
    lower_factor: float | None
    upper_factor: float | None
    interval_scope: str | None = Field(description="`county` (its own seasons) or `pooled`.")


class CountyForecastDetail(BaseModel):
    """A county's newest forecast on or before ``as_of``, its season so far, and the track
    record of the model version behind it."""

    county: str
    as_of: dt.date | None
    forecast: CountyForecast
    trajectory: list[TrajectoryPoint] = Field(
        description="The season night by night, oldest first."
    )
    skill: list[LeadSkill] = Field(description="By lead time (days after planting).")
