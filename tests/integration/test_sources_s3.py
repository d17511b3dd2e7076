"""Real sources from an ``s3://`` prefix into a lake on S3 (moto's server), as docker-compose
runs it: files listed with their ETags (an unchanged object is not downloaded again), a
glob in the key, a replaced object read again, the shards' parts staged on S3 too."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import boto3
import numpy as np
import pandas as pd
import pytest

from nuru_yield.config import reset_settings
from nuru_yield.lake import Lake
from nuru_yield.sample_data import formats
from nuru_yield.sources.ingest import ingest
from nuru_yield.sources.weather import weather_cells

pytestmark = [pytest.mark.s3]

NIGHT = dt.date(2024, 4, 30)
DAYS = [dt.date(2024, 4, 1) + dt.timedelta(days=d) for d in range(30)]


def test_products_from_an_s3_prefix_into_an_s3_lake(
    s3_bucket: str, s3_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = boto3.client(
        "s3", endpoint_url=s3_endpoint, aws_access_key_id="test",
        aws_secret_access_key="test", region_name="us-east-1",
    )  # fmt: skip
    monkeypatch.setenv("LAKE_URL", f"s3://{s3_bucket}")
    reset_settings()
    lake = Lake.from_settings()
    rng = np.random.default_rng(4)
    pd.DataFrame(
        {"PlotID": range(1, 9), "lat": rng.uniform(-0.6, -0.3, 8), "lon": rng.uniform(34.6, 34.9, 8),
         "altitude": 1300.0, "county": "Kakamega", "season": "LR", "planting_date": "2024-04-02"}
    ).to_csv(tmp_path / "plots.csv", index=False)  # fmt: skip
    client.upload_file(str(tmp_path / "plots.csv"), s3_bucket, "inbox/plots/plots.csv")

    first = ingest("plots", [f"s3://{s3_bucket}/inbox/plots/"], NIGHT, lake=lake, shards=2)
    assert first.lines() == ["plots: 1 file(s), 8 rows, 0 quarantined"]
    ids = weather_cells(lake)["cell_id"].to_numpy()
    rain = np.round(rng.gamma(0.7, 9.0, (len(DAYS), len(ids))), 1)
    for index, day in enumerate(DAYS):
        path = formats.write_chirps_day(tmp_path, day, ids, rain[index], gz=True)
        client.upload_file(str(path), s3_bucket, f"inbox/chirps/{path.name}")
    client.put_object(Bucket=s3_bucket, Key="inbox/chirps/README.txt", Body=b"not a product")

    glob = f"s3://{s3_bucket}/inbox/chirps/chirps-v2.0.*.tif.gz"
    done = ingest("chirps", [glob], NIGHT, lake=lake, shards=2)
    assert done.lines() == ["chirps: 30 file(s), 30 day(s) read; raw weather rebuilt for 2024"]
    weather = lake.read_parquet("raw/weather/year=2024/month-04.parquet").to_pandas()
    pivot = weather.pivot(index="date", columns="cell_id", values="precip_mm")
    np.testing.assert_array_equal(pivot.to_numpy(), rain)
    assert lake.list("sources/weather/_parts") == []  # staged on S3, cleared by publish

    again = ingest("chirps", [glob], NIGHT, lake=lake)
    assert again.days_read == {"chirps": 0}  # the same ETags: nothing downloaded or read
    replaced = formats.write_chirps_day(tmp_path, DAYS[9], ids, rain[9] + 1.0, gz=True)
    client.upload_file(str(replaced), s3_bucket, f"inbox/chirps/{replaced.name}")
    assert ingest("chirps", [glob], NIGHT, lake=lake).days_read == {"chirps": 1}
    sources = lake.read_parquet("raw/weather_sources.parquet").to_pandas()
    assert sources["file"].str.startswith(f"s3://{s3_bucket}/inbox/chirps/").all()
    assert sources["fingerprint"].str.startswith("etag:").all()
