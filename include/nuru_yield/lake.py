"""Object-store paths and parquet I/O under ``LAKE_URL`` (a local directory or S3/MinIO).

Every write is atomic: data goes to a temporary local file first and only a complete file
is moved into place (``os.replace`` on disk, a single managed upload on S3, where the
object appears only once the upload completes). A reader therefore never sees half a file
and a writer that crashes leaves the previous file as it was.

Paths passed to :class:`Lake` are relative to the lake root and use ``/``; the dated
partition layout (docs/DESIGN.md, "Lake layout") lives in :mod:`nuru_yield.names`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from nuru_yield.config import get_settings
from nuru_yield.errors import LakeError
from nuru_yield.names import PART_ROW_GROUPS

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq

    from nuru_yield.config import Settings


def part_row_groups(parquet_file: pq.ParquetFile, part: int, parts: int) -> list[int] | None:
    """The row groups of part ``part`` in a file assembled from ``parts`` parts by
    :meth:`Lake.assemble_parquet`; None when the file was not assembled from that many."""
    metadata = parquet_file.schema_arrow.metadata or {}
    raw = metadata.get(PART_ROW_GROUPS.encode())
    if raw is None:
        return None
    starts = json.loads(raw)
    if len(starts) != parts + 1 or starts[-1] != parquet_file.metadata.num_row_groups:
        return None
    return list(range(starts[part], starts[part + 1]))


log = logging.getLogger(__name__)

# How the temporary file of an atomic write is named (next to its destination on disk):
# hidden from listings and datasets, and removable once its writer is known to be gone.
TEMPORARY = ".tmp-"

# Parquet writer defaults: dictionary encoding off for float columns is ~4x faster to write
# and smaller (docs/NOTES.md, "Speed"); strings keep it.
_WRITE_OPTIONS: dict[str, Any] = {"compression": "zstd", "write_statistics": True}


class Lake:
    """Parquet/JSON/bytes storage rooted at a ``file://`` directory or an ``s3://`` bucket."""

    def __init__(
        self,
        url: str,
        *,
        endpoint_url: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        region: str = "us-east-1",
    ) -> None:
        parsed = urlparse(url)
        if parsed.scheme not in ("file", "s3"):
            raise LakeError(f"LAKE_URL must be file:// or s3://, got {url!r}")
        self.url = url.rstrip("/")
        self.is_s3 = parsed.scheme == "s3"
        self._endpoint_url = endpoint_url
        self._access_key = access_key
        self._secret_key = secret_key
        self._region = region
        if self.is_s3:
            self.bucket = parsed.netloc
            self._prefix = parsed.path.strip("/")
        else:
            self.root = Path(parsed.netloc + parsed.path).resolve()
        self._fs: pafs.FileSystem | None = None
        self._s3_client: Any = None

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> Lake:
        settings = settings or get_settings()
        secret = settings.s3_secret_key.get_secret_value() if settings.s3_secret_key else None
        return cls(
            settings.lake_url,
            endpoint_url=settings.s3_endpoint_url,
            access_key=settings.s3_access_key,
            secret_key=secret,
            region=settings.s3_region,
        )

    def __repr__(self) -> str:
        return f"Lake({self.url!r})"

    # --- addressing ----------------------------------------------------------------------
    def uri(self, path: str) -> str:
        """Absolute URI of a lake path, as recorded in tables and reports."""
        return f"{self.url}/{path.lstrip('/')}"

    def _key(self, path: str) -> str:
        """Location inside the filesystem: an absolute local path or ``bucket/key``."""
        path = path.lstrip("/")
        if self.is_s3:
            return "/".join(p for p in (self.bucket, self._prefix, path) if p)
        return str(self.root / path)

    def _object_key(self, path: str) -> str:
        return "/".join(p for p in (self._prefix, path.lstrip("/")) if p)

    @property
    def filesystem(self) -> pafs.FileSystem:
        """A pyarrow filesystem for reads (random access, streaming batches)."""
        if self._fs is None:
            import pyarrow.fs as pafs

            if self.is_s3:
                endpoint = urlparse(self._endpoint_url) if self._endpoint_url else None
                self._fs = pafs.S3FileSystem(
                    access_key=self._access_key,
                    secret_key=self._secret_key,
                    region=self._region,
                    endpoint_override=endpoint.netloc if endpoint else None,
                    scheme=endpoint.scheme if endpoint else "https",
                )
            else:
                self._fs = pafs.LocalFileSystem()
        return self._fs

    @property
    def s3(self) -> Any:
        """A boto3 S3 client with the lake's S3 settings (endpoint, credentials, region): the
        lake's own bucket, and any other the pipeline reads with them (``nuru-yield
        ingest``'s ``s3://`` sources)."""
        if self._s3_client is None:
            import boto3

            self._s3_client = boto3.client(
                "s3",
                endpoint_url=self._endpoint_url,
                aws_access_key_id=self._access_key,
                aws_secret_access_key=self._secret_key,
                region_name=self._region,
            )
        return self._s3_client

    # --- checks ---------------------------------------------------------------------------
    def check_writable(self) -> None:
        """Fail early with one clear line when the lake root cannot be written."""
        probe = f"_probe-{os.getpid()}"  # a file, not a folder: nothing left behind
        try:
            self.write_bytes(probe, b"ok")
            self.delete(probe)
        except LakeError as error:
            raise LakeError(
                f"cannot write to lake {self.url}: {error.__cause__ or error}"
            ) from None

    def exists(self, path: str) -> bool:
        import pyarrow.fs as pafs

        try:
            info = self.filesystem.get_file_info(self._key(path))
        except OSError as error:
            raise self._error("check", path, error) from error
        return info.type != pafs.FileType.NotFound

    def list(self, prefix: str, suffix: str = "") -> list[str]:
        """Lake paths of every file below ``prefix`` ending in ``suffix``, sorted.

        Like pyarrow datasets, names starting with ``.`` or ``_`` (temporary files of a
        writer that was killed, probes) are not data and are left out.
        """
        return sorted(
            path
            for path, name in self._files(prefix)
            if name.endswith(suffix) and not name.startswith((".", "_"))
        )

    def _files(self, prefix: str) -> list[tuple[str, str]]:
        """(lake path, base name) of every file below ``prefix``, hidden ones included."""
        import pyarrow.fs as pafs

        selector = pafs.FileSelector(self._key(prefix), recursive=True, allow_not_found=True)
        try:
            infos = self.filesystem.get_file_info(selector)
        except OSError as error:
            raise self._error("list", prefix, error) from error
        base = self._key("")
        return [
            (info.path[len(base) :].lstrip("/"), info.base_name)
            for info in infos
            if info.type == pafs.FileType.File
        ]

    def clear_temporary(self, prefix: str) -> list[str]:
        """Remove the temporary files (``.tmp-…``, :meth:`atomic_local_file`) that writers
        killed mid-write left below ``prefix``; returns their lake paths. Only for a caller
        that knows no writer below ``prefix`` is alive (it holds the lock they hold while
        they write): a live writer's file would go too. On S3 there are none (a write's
        temporary file is local to its writer)."""
        if self.is_s3:
            return []
        stale = sorted(path for path, name in self._files(prefix) if name.startswith(TEMPORARY))
        for path in stale:
            self.delete(path)
        if stale:
            log.info("removed %d temporary file(s) of killed writers below %s", len(stale), prefix)
        return stale

    def partition_dates(self, prefix: str) -> list[dt.date]:
        """Dates of the ``{prefix}/{YYYY-MM-DD}/…`` partitions that hold at least one file."""
        dates = set()
        for path in self.list(prefix):
            part = path[len(prefix) :].strip("/").split("/", 1)[0]
            with contextlib.suppress(ValueError):
                dates.add(dt.date.fromisoformat(part))
        return sorted(dates)

    # --- atomic writes --------------------------------------------------------------------
    @contextlib.contextmanager
    def atomic_local_file(self, path: str, suffix: str = "") -> Iterator[Path]:
        """Yield a temporary local file; on clean exit it replaces ``path`` in one step.

        On an exception the temporary file is removed and ``path`` is left untouched.
        """
        if self.is_s3:
            tmp_dir = None
        else:
            target = Path(self._key(path))
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise self._error("write", path, error) from error
            tmp_dir = target.parent
        try:
            tmp = _new_private_name(Path(tmp_dir or tempfile.gettempdir()), suffix)
        except OSError as error:
            raise self._error("write", path, error) from error
        try:
            yield tmp
            self._publish(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    def _publish(self, tmp: Path, path: str) -> None:
        if self.is_s3:
            from boto3.exceptions import S3UploadFailedError
            from botocore.exceptions import BotoCoreError, ClientError

            try:
                self.s3.upload_file(str(tmp), self.bucket, self._object_key(path))
            except (BotoCoreError, ClientError, S3UploadFailedError) as error:
                raise self._error("write", path, error) from error
            return
        try:
            with open(tmp, "rb") as handle:
                os.fsync(handle.fileno())
            os.replace(tmp, self._key(path))
        except OSError as error:
            raise self._error("write", path, error) from error

    def write_parquet(self, path: str, data: pa.Table | pd.DataFrame) -> str:
        """Write a table atomically; returns its URI."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = (
            data if isinstance(data, pa.Table) else pa.Table.from_pandas(data, preserve_index=False)
        )
        with self.atomic_local_file(path, ".parquet") as tmp:
            pq.write_table(
                table, tmp, use_dictionary=_dictionary_columns(table.schema), **_WRITE_OPTIONS
            )
        return self.uri(path)

    def write_parquet_batches(
        self, path: str, schema: pa.Schema, batches: Iterable[pa.RecordBatch | pa.Table]
    ) -> tuple[str, int]:
        """Stream batches into one parquet file atomically; returns (URI, rows written)."""
        import pyarrow.parquet as pq

        rows = 0
        with (
            self.atomic_local_file(path, ".parquet") as tmp,
            pq.ParquetWriter(
                tmp, schema, use_dictionary=_dictionary_columns(schema), **_WRITE_OPTIONS
            ) as writer,
        ):
            for batch in batches:
                writer.write(batch)
                rows += batch.num_rows
        return self.uri(path), rows

    def write_parquet_split(
        self,
        paths: Sequence[str],
        schema: pa.Schema,
        batches: Iterable[pa.RecordBatch | pa.Table],
        split: Callable[[pa.RecordBatch | pa.Table], np.ndarray],
    ) -> list[tuple[str, int]]:
        """Stream batches into several parquet files at once: row ``i`` of a batch goes to
        ``paths[split(batch)[i]]``. Every file is written atomically, empty ones too, so a
        rewrite leaves no file of an earlier write behind. Returns (URI, rows) per path."""
        import numpy as np
        import pyarrow.parquet as pq

        rows = [0] * len(paths)
        with contextlib.ExitStack() as stack:
            writers = []
            for path in paths:
                tmp = stack.enter_context(self.atomic_local_file(path, ".parquet"))
                writers.append(
                    stack.enter_context(
                        pq.ParquetWriter(
                            tmp,
                            schema,
                            use_dictionary=_dictionary_columns(schema),
                            **_WRITE_OPTIONS,
                        )
                    )
                )
            for batch in batches:
                target = np.asarray(split(batch))
                order = np.argsort(target, kind="stable")
                ordered = batch.take(order)
                bounds = np.searchsorted(target[order], np.arange(len(paths) + 1))
                for index, (start, stop) in enumerate(itertools.pairwise(bounds)):
                    if stop > start:
                        writers[index].write(ordered.slice(start, stop - start))
                        rows[index] += int(stop - start)
        return [(self.uri(path), count) for path, count in zip(paths, rows, strict=True)]

    def assemble_parquet(
        self,
        parts: Sequence[str],
        destination: str,
        schema: pa.Schema,
        metadata: dict[str, str] | None = None,
    ) -> tuple[str, int]:
        """One parquet file from the parts of a sharded step, in order; returns (URI, rows).

        A single part is moved into place (no rewrite). Several are copied row group by
        row group into a new file, written atomically, whose key-value ``metadata`` (JSON
        values) records where each part starts (``nuru_yield.part_row_groups``), so that a
        reader of one shard can skip the others' row groups. Memory: one row group.
        Raises :class:`LakeError` naming the parts that are missing.
        """
        import pyarrow.parquet as pq

        missing = [index for index, part in enumerate(parts) if not self.exists(part)]
        if missing:
            raise LakeError(
                f"cannot assemble {self.uri(destination)}: parts of shards {missing} are missing"
            )
        if len(parts) == 1:
            self.move(parts[0], destination)
            return self.uri(destination), self.open_parquet(destination).metadata.num_rows
        files = [self.open_parquet(part) for part in parts]
        starts = [0]
        for part in files:
            starts.append(starts[-1] + part.metadata.num_row_groups)
        layout = {**(metadata or {}), PART_ROW_GROUPS: json.dumps(starts)}
        rows = 0
        with (
            self.atomic_local_file(destination, ".parquet") as tmp,
            pq.ParquetWriter(
                tmp,
                schema.with_metadata({**(schema.metadata or {}), **layout}),
                use_dictionary=_dictionary_columns(schema),
                **_WRITE_OPTIONS,
            ) as writer,
        ):
            for part in files:
                for index in range(part.metadata.num_row_groups):
                    group = part.read_row_group(index).cast(schema)
                    writer.write_table(group, row_group_size=max(group.num_rows, 1))
                    rows += group.num_rows
        return self.uri(destination), rows

    def write_bytes(self, path: str, data: bytes) -> str:
        with self.atomic_local_file(path) as tmp:
            tmp.write_bytes(data)
        return self.uri(path)

    def write_json(self, path: str, payload: Any) -> str:
        return self.write_bytes(path, json.dumps(payload, indent=2, default=str).encode())

    def move(self, source: str, destination: str) -> str:
        """Replace ``destination`` with ``source`` in one step (a rename on disk, a
        server-side copy on S3, then ``source`` is removed); returns the URI."""
        try:
            if self.is_s3:
                copy_source = {"Bucket": self.bucket, "Key": self._object_key(source)}
                self.s3.copy(copy_source, self.bucket, self._object_key(destination))
            else:
                Path(self._key(destination)).parent.mkdir(parents=True, exist_ok=True)
                os.replace(self._key(source), self._key(destination))
        except Exception as error:
            raise self._error("move", source, error) from error
        self.delete(source)
        return self.uri(destination)

    def delete(self, path: str) -> None:
        """Remove one file if it exists."""
        try:
            if self.is_s3:
                self.s3.delete_object(Bucket=self.bucket, Key=self._object_key(path))
            else:
                Path(self._key(path)).unlink(missing_ok=True)
        except Exception as error:
            raise self._error("delete", path, error) from error

    # --- reads ----------------------------------------------------------------------------
    def read_bytes(self, path: str) -> bytes:
        try:
            with self.filesystem.open_input_stream(self._key(path)) as stream:
                return stream.read()
        except (OSError, FileNotFoundError) as error:
            raise self._error("read", path, error) from error

    def read_json(self, path: str) -> Any:
        return json.loads(self.read_bytes(path))

    def read_parquet(
        self, path: str | Sequence[str], columns: list[str] | None = None, filters: Any = None
    ) -> pa.Table:
        """Read one parquet file, every parquet file below a directory (hive partitions), or
        the files of a list of paths (no partition columns)."""
        import pyarrow.dataset as ds

        try:
            if isinstance(path, str):
                source: str | list[str] = self._key(path)
                partitioning: str | None = "hive"
            else:
                source, partitioning = [self._key(p) for p in path], None
            dataset = ds.dataset(
                source, filesystem=self.filesystem, format="parquet", partitioning=partitioning
            )
            return dataset.to_table(columns=columns, filter=filters)
        except (OSError, FileNotFoundError) as error:
            where = path if isinstance(path, str) else ", ".join(path)
            raise self._error("read", where, error) from error

    def open_parquet(self, path: str) -> pq.ParquetFile:
        """An open parquet file for streaming with ``iter_batches`` (bounded memory).

        ``pre_buffer`` is off: with it, peak memory grew with the file (measured ≈90 MB per
        1M feature rows over 2M rows), with 1 MiB read buffers it stays flat.
        """
        import pyarrow.parquet as pq

        try:
            return pq.ParquetFile(
                self.filesystem.open_input_file(self._key(path)),
                pre_buffer=False,
                buffer_size=1 << 20,
            )
        except (OSError, FileNotFoundError) as error:
            raise self._error("read", path, error) from error

    def _error(self, action: str, path: str, error: BaseException) -> LakeError:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        if isinstance(error, FileNotFoundError) or "Path does not exist" in reason:
            reason = "not found"
        return LakeError(f"cannot {action} {self.uri(path)}: {reason}")


def _dictionary_columns(schema: pa.Schema) -> list[str]:
    """Dictionary-encode only string-like columns; floats write faster without it."""
    import pyarrow as pa

    return [
        field.name
        for field in schema
        if pa.types.is_string(field.type)
        or pa.types.is_large_string(field.type)
        or pa.types.is_dictionary(field.type)
    ]


def _new_private_name(directory: Path, suffix: str) -> Path:
    """A new empty file ``.tmp-…`` in ``directory`` (created exclusively, so no other writer
    shares it) with the permissions any file of this user gets (``0666`` less the umask),
    not ``mkstemp``'s ``0600``: moved into place, it must stay readable by the group (an
    Airflow worker, the API, a colleague reading the lake) as the rest of the lake is."""
    while True:
        candidate = directory / f"{TEMPORARY}{os.urandom(8).hex()}{suffix}"
        try:
            os.close(os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return candidate
