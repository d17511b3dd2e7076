"""Where a product's files come from: a file, a folder, a glob or an ``s3://`` prefix.

:func:`resolve` turns the PATHs of ``nuru-yield ingest <product> PATH…`` (or the product's
configured source) into :class:`SourceFile` s, sorted by URI, each with a fingerprint that
changes when its content does (SHA-256 of a local file's bytes; an S3 object's ETag and
size, so an unchanged object is never downloaded). :meth:`SourceFile.local` gives the
readers (netCDF, GDAL) a local path: the file itself, or a temporary copy of an S3 object.
"""

from __future__ import annotations

import contextlib
import fnmatch
import glob
import hashlib
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from nuru_yield.errors import DataValidationError, LakeError

if TYPE_CHECKING:
    from nuru_yield.config import Settings

_GLOB_CHARS = "*?["


@dataclass(frozen=True)
class SourceFile:
    """One input file: its URI (as messages and the manifests name it), base name and
    content fingerprint."""

    uri: str
    fingerprint: str
    size: int

    @property
    def name(self) -> str:
        return self.uri.rstrip("/").rsplit("/", 1)[-1]

    @property
    def is_s3(self) -> bool:
        return self.uri.startswith("s3://")

    @contextlib.contextmanager
    def local(self, settings: Settings | None = None) -> Iterator[Path]:
        """A local path holding the file's bytes for the duration of the block."""
        if not self.is_s3:
            yield Path(self.uri)
            return
        parsed = urlparse(self.uri)
        with tempfile.TemporaryDirectory(prefix="nuru-source-") as folder:
            target = Path(folder) / self.name
            try:
                _s3_client(settings).download_file(parsed.netloc, parsed.path.lstrip("/"), target)
            except Exception as error:
                raise LakeError(f"cannot read {self.uri}: {error}") from error
            yield target


def resolve(patterns: Sequence[str], settings: Settings | None = None) -> list[SourceFile]:
    """Every file the patterns name, sorted by URI, without duplicates.

    A folder means every file below it; a glob or an ``s3://`` prefix, every file it
    matches. A pattern that matches nothing is an error naming it (an empty night must be
    said, not silently ingested as nothing)."""
    found: dict[str, SourceFile] = {}
    for pattern in patterns:
        matched = _s3_files(pattern, settings) if pattern.startswith("s3://") else _local(pattern)
        if not matched:
            raise DataValidationError(f"no file matches {pattern}")
        for source in matched:
            found[source.uri] = source
    return [found[uri] for uri in sorted(found)]


def _local(pattern: str) -> list[SourceFile]:
    path = Path(pattern).expanduser()
    if any(char in pattern for char in _GLOB_CHARS):
        paths = [Path(p) for p in glob.glob(str(path), recursive=True)]
    elif path.is_dir():
        paths = [p for p in path.rglob("*") if not p.name.startswith(".")]
    else:
        paths = [path] if path.exists() else []
    return [_local_file(p.resolve()) for p in paths if p.is_file()]


def _local_file(path: Path) -> SourceFile:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return SourceFile(str(path), f"sha256:{digest.hexdigest()}", path.stat().st_size)


def _s3_files(pattern: str, settings: Settings | None) -> list[SourceFile]:
    """The objects under an ``s3://bucket/prefix`` (a glob in the key filters them)."""
    parsed = urlparse(pattern)
    bucket, key = parsed.netloc, parsed.path.lstrip("/")
    wildcard = min((key.find(c) for c in _GLOB_CHARS if c in key), default=-1)
    prefix = key if wildcard < 0 else key[:wildcard]
    client = _s3_client(settings)
    files = []
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                name = item["Key"]
                if wildcard >= 0 and not fnmatch.fnmatchcase(name, key):
                    continue
                if name.endswith("/") or name.rsplit("/", 1)[-1].startswith("."):
                    continue
                etag = str(item.get("ETag", "")).strip('"')
                files.append(SourceFile(f"s3://{bucket}/{name}", f"etag:{etag}", item["Size"]))
    except Exception as error:
        raise LakeError(f"cannot list {pattern}: {error}") from error
    return files


def _s3_client(settings: Settings | None) -> Any:
    from nuru_yield.lake import Lake

    return Lake.from_settings(settings).s3


def s3_raster_env(settings: Settings | None = None) -> Any:
    """A ``rasterio.Env`` in which GDAL reads ``s3://`` rasters in place (``/vsis3/``: a COG
    is read by ranges, only the windows needed) with the project's S3 settings: the
    endpoint (MinIO, moto: path-style, HTTP or HTTPS as its URL says), keys and region.
    Without keys, boto3's own credential chain (environment, profile, instance role)."""
    import rasterio
    from rasterio.session import AWSSession

    from nuru_yield.config import get_settings

    settings = settings or get_settings()
    secret = settings.s3_secret_key.get_secret_value() if settings.s3_secret_key else None
    options: dict[str, Any] = {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR"}
    endpoint = None
    if settings.s3_endpoint_url:
        parsed = urlparse(settings.s3_endpoint_url)
        endpoint = parsed.netloc + parsed.path.rstrip("/")
        options["AWS_HTTPS"] = "YES" if parsed.scheme == "https" else "NO"
        options["AWS_VIRTUAL_HOSTING"] = False
    session = AWSSession(
        aws_access_key_id=settings.s3_access_key,
        aws_secret_access_key=secret,
        region_name=settings.s3_region,
        endpoint_url=endpoint,
    )
    return rasterio.Env(session=session, **options)
