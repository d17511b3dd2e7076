"""Typed settings from the environment (and `.env`), built lazily at first use.

Nothing here runs at import time: call :func:`get_settings`. A bad value raises
:class:`~nuru_yield.errors.ConfigError` with one line naming the variable.
"""

from __future__ import annotations

import functools
import ipaddress
from pathlib import Path
from typing import Annotated, Literal, get_args
from urllib.parse import urlparse

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from nuru_yield.errors import MASK, ConfigError, mask_passwords


class Settings(BaseSettings):
    """Every knob of the system. Environment variable = field name in upper case."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    nuru_home: Path = Field(Path(".nuru"), description="All local state lives here.")
    lake_url: str = Field(
        "", description="file:///dir or s3://bucket[/prefix]; default under NURU_HOME."
    )
    s3_bucket_name: str | None = None
    s3_endpoint_url: str | None = None
    s3_access_key: str | None = None
    s3_secret_key: SecretStr | None = None
    s3_region: str = "us-east-1"
    mlflow_tracking_uri: str = ""
    mlflow_artifact_root: str = ""
    mlflow_request_timeout_seconds: int = Field(
        5, ge=1, le=600, description="Per HTTP request to the MLflow tracking server."
    )
    mlflow_request_max_retries: int = Field(
        2, ge=0, le=10, description="Retries of a failed MLflow HTTP request (MLflow's own: 7)."
    )
    predictions_db_url: str = ""
    api_key: SecretStr | None = None
    log_file: Path | None = None

    # Pipeline behaviour.
    season_max_days: int = Field(180, ge=30, le=365)
    validation_max_bad_share: float = Field(0.05, ge=0.0, le=1.0)
    weather_max_lag_days: int = Field(
        3,
        ge=0,
        le=60,
        description="A plot-season in progress whose weather cell has no rain value this close "
        "to the run date counts against VALIDATION_MAX_BAD_SHARE (a stalled feed fails the run).",
    )
    scoring_shards: int = Field(4, ge=1, le=1024)
    feature_shards: int = Field(
        1,
        ge=1,
        le=1024,
        description="Feature materialization shards: memory per shard grows with N / shards.",
    )
    ingest_shards: int = Field(
        4,
        ge=1,
        le=1024,
        description="Raw ingestion shards: plot buckets for plots and labels, groups of "
        "months for CHIRPS and AgERA5.",
    )
    scoring_threads: int = Field(
        0, ge=0, le=256, description="Model threads per scoring process; 0 = every core."
    )
    scoring_lock_wait_seconds: float = Field(
        0.0,
        ge=0,
        le=3600,
        description="How long a scoring step waits for another run of the same date; "
        "0 = refuse at once.",
    )
    scoring_batch_rows: int = Field(
        65_536, ge=1, description="Rows per record batch streamed through the scorer."
    )
    county_min_plots: int = Field(
        30,
        ge=1,
        description="Plots a county-season needs scored on a night for its bulletin figure.",
    )
    county_min_labels: int = Field(
        30,
        ge=1,
        description="Labelled plots a past county-season needs to count in the county's "
        "record and hindcasts.",
    )
    promotion_rmse_margin: float = Field(0.01, ge=0.0, lt=1.0)
    promotion_county_tolerance: float = Field(0.05, ge=0.0)
    model_interactions: Literal["pairwise", "free"] = Field(
        "pairwise",
        description="Tree paths of at most two features (exact drivers in seconds per "
        "million plots) or free (more accurate; native TreeSHAP takes hours per million).",
    )

    # Real sources (`nuru-yield ingest`, DAG raw_ingestion): a file, a folder, a glob or an
    # s3:// prefix per product; empty = nothing configured (the raw contract comes from
    # elsewhere). docs/DESIGN.md, "Real sources".
    chirps_source: str = Field("", description="CHIRPS v2.0 daily rain: NetCDF or GeoTIFFs.")
    agera5_source: str = Field("", description="AgERA5 daily NetCDFs (temperature, radiation).")
    plots_source: str = Field(
        "", description="Plots: GeoJSON, GeoParquet, zipped Shapefile or CSV with lat/lon."
    )
    plot_seasons_source: str = Field(
        "", description="Plot-seasons CSV keyed by plot id, when not in the plots file."
    )
    yields_source: str = Field("", description="Harvest labels: crop-cut survey CSV.")
    dem_source: str = Field(
        "", description="A DEM GeoTIFF (m): plot altitude sampled at the centroid."
    )
    counties_source: str = Field(
        "",
        description="County boundaries (GeoJSON, zipped Shapefile, ...) for plots "
        "without a county column.",
    )
    ndvi_source: str = Field(
        "", description="NDVI composites (MOD13Q1-style GeoTIFF/COG): files, a folder, a glob."
    )
    ndvi_stac_url: str = Field(
        "",
        description="Sentinel-2 L2A scenes: a STAC API's URL or a static catalog.json "
        "(local or s3://).",
    )
    ndvi_stac_collection: str = Field(
        "sentinel-2-l2a", description="The STAC collection of the L2A scenes."
    )
    ndvi_stac_days: int = Field(
        30,
        ge=1,
        le=3660,
        description="How many days before the night a STAC search looks back (a late tile "
        "within it recomputes its date).",
    )
    source_columns: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict,
        description="Column names a file uses for the contract's: 'plot_id=FarmID,"
        "latitude=Y_coord' (beyond the common spellings every reader accepts).",
    )
    yields_unit: Literal["", "kg/ha", "t/ha"] = Field(
        "", description="Unit of a plain 'yield' column in a harvest-label file."
    )
    yield_standard_moisture_pct: float = Field(
        12.5, gt=0, lt=50, description="Grain moisture (%) every harvest label is expressed at."
    )

    # Read-only API (`nuru-yield serve`).
    api_db_url: str = Field(
        "", description="URL the API reads with (a read-only role); default PREDICTIONS_DB_URL."
    )
    api_db_pool_max: int = Field(20, ge=1, le=200, description="Connections per API process.")
    api_db_timeout_seconds: float = Field(
        1.5,
        gt=0,
        le=120,
        description="Most a database round trip may take (waiting for a connection, "
        "connecting, the query): beyond it the request is 503 and /health unhealthy.",
    )
    api_max_body_bytes: int = Field(
        262_144,
        ge=1024,
        le=64 * 1024 * 1024,
        description="Larger request bodies get 413 unread. The largest batch (1,000 plots, "
        "every field) is about 185 KB of JSON.",
    )
    api_body_timeout_seconds: float = Field(
        10.0, gt=0, le=300, description="A request body must arrive within this (else 408)."
    )
    api_header_timeout_seconds: float = Field(
        10.0,
        gt=0,
        le=300,
        description="A request line and headers must arrive within this (else the "
        "connection is closed).",
    )
    api_rate_limit_per_minute: int = Field(
        1200, ge=0, description="Requests per client per minute; 0 turns the limit off."
    )
    api_rate_limit_burst: int = Field(100, ge=1)
    forwarded_allow_ips: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated proxy addresses or networks (or *) whose "
        "X-Forwarded-For / X-Forwarded-Proto the API believes (the client address of the "
        "rate limit and the request log); empty = nobody's, loopback included.",
    )
    api_ab_challenger_share: float = Field(
        0.0, ge=0.0, le=1.0, description="Share of plots (hash of plot_id) served the challenger."
    )
    api_cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Comma-separated allowed origins; empty = CORS closed."
    )
    api_cache_seconds: float = Field(300.0, ge=0, description="Registry and /models cache.")
    api_freshness_seconds: float = Field(10.0, ge=0, description="Newest-partition cache.")
    api_mlflow_timeout_seconds: float = Field(3.0, gt=0, le=60)
    api_stale_after_hours: float = Field(
        36.0, gt=0, description="/health is degraded when the newest partition is older."
    )

    # Drift monitoring, realized accuracy and alerts (`nuru-yield drift`, DAG drift_monitoring).
    drift_statistic: Literal["psi", "ks", "js_distance", "wasserstein"] = Field(
        "psi", description="The statistic that decides whether a variable drifted."
    )
    drift_threshold: float = Field(0.25, gt=0, description="DRIFT_STATISTIC beyond it: drifted.")
    drift_min_samples: int = Field(
        100, ge=2, description="Fewer rows on either side: 'insufficient data', never an alarm."
    )
    drift_max_outside_share: float = Field(
        0.05,
        gt=0,
        le=1,
        description="Share of tonight's values of a feature outside the model's training range "
        "(per lead-time band; ~1% by construction) beyond which retraining is due.",
    )
    drift_reference_years: int = Field(5, ge=1, le=50, description="Season years of history.")
    drift_reference_window_days: int = Field(
        7, ge=1, le=60, description="Planting-date window (days) matched with the reference."
    )
    drift_reference_max_rows: int = Field(20_000, ge=100)
    accuracy_rmse_margin: float = Field(
        0.2, ge=0, description="Realized RMSE above evaluation RMSE × (1 + margin): alert."
    )
    accuracy_min_samples: int = Field(100, ge=1)
    accuracy_recent_years: int = Field(
        1, ge=0, description="Labelled seasons this recent are recomputed every run."
    )
    alert_cooldown_days: int = Field(
        7, ge=0, description="No new retraining trigger this soon after the last one."
    )
    alert_channel: Literal["off", "webhook", "smtp"] = "off"
    alert_webhook_url: str | None = None
    alert_smtp_host: str | None = None
    alert_smtp_port: int = Field(587, ge=1, le=65535)
    alert_smtp_user: str | None = None
    alert_smtp_password: SecretStr | None = None
    alert_smtp_starttls: bool = True
    alert_email_from: str = "nuru-yield@localhost"
    alert_email_to: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Comma-separated recipients."
    )
    alert_timeout_seconds: float = Field(10.0, gt=0, le=120)

    @field_validator("lake_url")
    @classmethod
    def _check_lake_url(cls, value: str) -> str:
        if value and urlparse(value).scheme not in ("file", "s3"):
            raise ValueError("must start with file:// or s3://")
        if value.startswith("s3://") and not urlparse(value).netloc:
            raise ValueError("s3:// URL needs a bucket, e.g. s3://nuru-yield")
        return value.rstrip("/")

    @field_validator("api_cors_origins", "alert_email_to", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @field_validator("source_columns", mode="before")
    @classmethod
    def _split_mapping(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        mapping = {}
        for pair in filter(None, (part.strip() for part in value.split(","))):
            ours, sep, theirs = pair.partition("=")
            if not sep or not ours.strip() or not theirs.strip():
                raise ValueError(f"{pair!r} is not contract_column=file_column")
            mapping[ours.strip()] = theirs.strip()
        return mapping

    @field_validator("forwarded_allow_ips", mode="before")
    @classmethod
    def _split_proxies(cls, value: object) -> object:
        if isinstance(value, str):
            value = [item.strip() for item in value.split(",") if item.strip()]
        if isinstance(value, list):
            for item in value:
                if item != "*":
                    try:
                        ipaddress.ip_network(item, strict=False)
                    except ValueError:
                        raise ValueError(f"{item!r} is not an IP address or network") from None
        return value

    @field_validator("predictions_db_url", "api_db_url")
    @classmethod
    def _check_db_url(cls, value: str) -> str:
        if value and not value.startswith(("sqlite", "postgresql")):
            raise ValueError("must be a sqlite:/// or postgresql+psycopg:// URL")
        return value

    @field_validator("s3_endpoint_url", "alert_webhook_url")
    @classmethod
    def _check_endpoint(cls, value: str | None) -> str | None:
        if value and urlparse(value).scheme not in ("http", "https"):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @model_validator(mode="after")
    def _fill_defaults(self) -> Settings:
        home = self.nuru_home.expanduser().resolve()
        self.nuru_home = home
        if not self.lake_url:
            self.lake_url = f"file://{home / 'lake'}"
        if not self.mlflow_tracking_uri:
            self.mlflow_tracking_uri = f"sqlite:///{home / 'mlflow.db'}"
        if not self.mlflow_artifact_root:
            self.mlflow_artifact_root = str(home / "mlartifacts")
        if not self.predictions_db_url:
            self.predictions_db_url = f"sqlite:///{home / 'predictions.db'}"
        if not self.api_db_url:
            self.api_db_url = self.predictions_db_url
        return self


def _first_error_line(error: ValidationError) -> str:
    """``invalid setting NAME='value': why``, with the value's passwords masked (and a secret
    setting's value not shown at all)."""
    first = error.errors()[0]
    field = str(first["loc"][0]) if first["loc"] else ""
    variable = field.upper() or "settings"
    value = first.get("input")
    if isinstance(value, dict):
        shown = ""
    elif field in _SECRET_FIELDS:
        shown = f"={MASK}"
    else:
        shown = f"={value!r}"
    message = first["msg"].removeprefix("Value error, ")
    return mask_passwords(f"invalid setting {variable}{shown}: {message}")


_SECRET_FIELDS = frozenset(
    name
    for name, info in Settings.model_fields.items()
    if SecretStr in (info.annotation, *get_args(info.annotation))
)


@functools.cache
def get_settings() -> Settings:
    """The process-wide settings, validated on first call."""
    try:
        return Settings()
    except ValidationError as error:
        raise ConfigError(_first_error_line(error)) from None


def reset_settings() -> None:
    """Forget cached settings (tests, or after changing the environment)."""
    get_settings.cache_clear()
