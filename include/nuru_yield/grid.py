"""The weather-cell grid: the 0.05° pixels of CHIRPS v2.0 (docs/DESIGN.md, "Real sources").

CHIRPS v2.0 lays its pixels on a global 0.05° grid whose edges are multiples of 0.05°
counted from 180° W and 90° S (the quasi-global NetCDF covers 50° S–50° N, the Africa
GeoTIFFs 40° S–40° N and 20° W–55° E; both are windows of the same grid). A weather cell is
one such pixel, and its id is derived from the pixel's row and column on the global grid,
so the same pixel has the same id in every run, whatever window a file covers and whichever
plots are loaded. The synthetic weather of ``nuru-yield sample-data`` uses the same cells.
"""

from __future__ import annotations

import numpy as np

CELL_DEG = 0.05
GRID_COLUMNS = 7200  # 360° / 0.05°


def cell_index(latitude: np.ndarray, longitude: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row (from 90° S) and column (from 180° W) of the 0.05° pixel containing each point.

    A point on a pixel edge belongs to the pixel north / east of it."""
    row = np.floor((np.asarray(latitude, dtype=np.float64) + 90.0) / CELL_DEG).astype(np.int64)
    col = np.floor((np.asarray(longitude, dtype=np.float64) + 180.0) / CELL_DEG).astype(np.int64)
    return row, col


def cell_id(row: np.ndarray, col: np.ndarray) -> np.ndarray:
    """Stable global id of a 0.05° pixel (the same pixel has the same id in every run)."""
    return np.asarray(row, dtype=np.int64) * GRID_COLUMNS + np.asarray(col, dtype=np.int64)


def cell_rows_cols(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row and column of each cell id (the inverse of :func:`cell_id`)."""
    ids = np.asarray(ids, dtype=np.int64)
    return ids // GRID_COLUMNS, ids % GRID_COLUMNS


def cell_centre(row: np.ndarray, col: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Latitude and longitude of the centre of each pixel."""
    return (np.asarray(row) + 0.5) * CELL_DEG - 90.0, (np.asarray(col) + 0.5) * CELL_DEG - 180.0


# AgERA5's grid: 0.1° pixels centred on multiples of 0.1° (docs/DESIGN.md, "Real sources").
AGERA5_DEG = 0.1


def agera5_pixel(latitude: np.ndarray, longitude: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Latitude and longitude index (coordinate / 0.1°, rounded) of the AgERA5 pixel
    holding each point: where a weather cell's temperature comes from."""
    lat = np.rint(np.asarray(latitude, dtype=np.float64) / AGERA5_DEG).astype(np.int64)
    lon = np.rint(np.asarray(longitude, dtype=np.float64) / AGERA5_DEG).astype(np.int64)
    return lat, lon
