"""The weather cell nearest to each plot (great-circle distance on the sphere): used when
plots are checked and when a shard reads only the weather its plots need."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from nuru_yield.features.checks import CELL_CHECKS, failing_any

EARTH_RADIUS_KM = 6371.0088


def nearest_cells(
    cells: pd.DataFrame, latitude: np.ndarray, longitude: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Id of the nearest valid weather cell of each point and its great-circle distance (km).

    Points without valid coordinates get id −1 and NaN; located points when there is no
    valid cell at all get id −1 and an infinite distance (no cell is near them).
    """
    latitude = np.asarray(latitude, dtype=np.float64)
    longitude = np.asarray(longitude, dtype=np.float64)
    cell_ids = np.full(len(latitude), -1, dtype=np.int64)
    distance = np.full(len(latitude), np.nan)
    good_cells = cells[~failing_any(cells, CELL_CHECKS)]
    with np.errstate(invalid="ignore"):
        located = (np.abs(latitude) <= 90) & (np.abs(longitude) <= 180)
    if good_cells.empty:
        distance[located] = np.inf
    if good_cells.empty or not located.any():
        return cell_ids, distance
    tree = cKDTree(_unit_vectors(good_cells["latitude"], good_cells["longitude"]))
    chord, index = tree.query(_unit_vectors(latitude[located], longitude[located]), workers=-1)
    cell_ids[located] = good_cells["cell_id"].to_numpy(np.int64)[index]
    distance[located] = 2 * EARTH_RADIUS_KM * np.arcsin(np.minimum(chord / 2, 1.0))
    return cell_ids, distance


def _unit_vectors(
    latitude: np.ndarray | pd.Series, longitude: np.ndarray | pd.Series
) -> np.ndarray:
    lat = np.radians(np.asarray(latitude, dtype=np.float64))
    lon = np.radians(np.asarray(longitude, dtype=np.float64))
    return np.column_stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)])
