"""Fetching documents named by URI through fsspec: s3:// and file:// only.

Other schemes (http, ftp, ...) are refused: a URI from a caller must not make the
service reach arbitrary hosts. file:// reads only regular files below the configured roots,
checked on the resolved path so `..` and symlinks cannot step outside. Every way a fetch can
fail becomes a ServiceError about `uri`, so it fails that one document and nothing else.
"""

import asyncio
import logging
import stat
from dataclasses import dataclass
from pathlib import Path

from llmsuite_common.errors import (
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ServiceError,
    Unavailable,
)

from . import source_uris
from .source_uris import LocalFile

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SourceConfig:
    s3_endpoint_url: str
    s3_region: str
    file_roots: tuple[Path, ...]
    max_bytes: int


class SourceFetcher:
    def __init__(self, config: SourceConfig) -> None:
        self._config = config
        self._s3 = None

    async def fetch(self, uri: str, *, timeout: float) -> bytes:
        if timeout <= 0:
            raise DeadlineExceeded("the deadline passed before the document was fetched")
        target = source_uris.parse(uri)
        if isinstance(target, LocalFile) and not self._config.file_roots:
            raise FailedPrecondition("file:// URIs are not enabled on this service", param="uri")
        try:
            return await asyncio.wait_for(asyncio.to_thread(self._read_target, target), timeout)
        except TimeoutError:
            raise DeadlineExceeded("the deadline passed while fetching the document") from None

    def _read_target(self, target: source_uris.S3Object | LocalFile) -> bytes:
        if isinstance(target, LocalFile):
            return self._read(self._local_fs(), str(self._local_path(target)))
        return self._read(self._s3_fs(), target.path)

    def _read(self, fs, path: str) -> bytes:  # type: ignore[no-untyped-def]
        try:
            size = fs.size(path)
            if size is not None and size > self._config.max_bytes:
                raise InvalidArgument(
                    f"the object is larger than {self._config.max_bytes} bytes", param="uri"
                )
            with fs.open(path, "rb") as handle:
                data = handle.read(self._config.max_bytes + 1)
        except ServiceError:
            raise
        except FileNotFoundError:
            raise NotFound("no object at that uri", param="uri") from None
        except PermissionError:
            raise FailedPrecondition("the service may not read that uri", param="uri") from None
        except IsADirectoryError:
            raise InvalidArgument("the uri names a directory", param="uri") from None
        except OSError as exc:
            raise Unavailable("the object store is unavailable") from exc
        except Exception as exc:  # noqa: BLE001 - a store client's own errors (botocore, s3fs)
            # Not the caller's text in the message: it may carry bucket policy or endpoint details.
            log.warning("fetch failed", extra={"error": type(exc).__name__})
            raise Unavailable("the document could not be fetched") from exc
        if len(data) > self._config.max_bytes:
            raise InvalidArgument(f"the object is larger than {self._config.max_bytes} bytes", param="uri")
        return bytes(data)

    def _s3_fs(self):  # type: ignore[no-untyped-def]
        if self._s3 is None:
            import fsspec

            client_kwargs = {}
            if self._config.s3_endpoint_url:
                client_kwargs["endpoint_url"] = self._config.s3_endpoint_url
            if self._config.s3_region:
                client_kwargs["region_name"] = self._config.s3_region
            # Credentials come from the standard AWS chain (env, profile, IRSA), never from requests.
            self._s3 = fsspec.filesystem(
                "s3",
                client_kwargs=client_kwargs,
                config_kwargs={"connect_timeout": 5, "read_timeout": 30, "retries": {"max_attempts": 2}},
                skip_instance_cache=True,
            )
        return self._s3

    @staticmethod
    def _local_fs():  # type: ignore[no-untyped-def]
        import fsspec

        return fsspec.filesystem("file")

    def _local_path(self, target: LocalFile) -> Path:
        """The resolved path of a regular file below a root; runs in a worker thread (it stats)."""
        try:
            path = Path(target.path).resolve()
        except (OSError, RuntimeError):  # a symlink loop, a name too long for the filesystem
            raise InvalidArgument("the uri's path cannot be resolved", param="uri") from None
        if not any(path.is_relative_to(root) for root in self._config.file_roots):
            raise FailedPrecondition("the path is outside the directories this service may read", param="uri")
        try:
            mode = path.stat().st_mode
        except FileNotFoundError:
            raise NotFound("no object at that uri", param="uri") from None
        except OSError:
            raise FailedPrecondition("the service may not read that uri", param="uri") from None
        if stat.S_ISDIR(mode):
            raise InvalidArgument("the uri names a directory", param="uri")
        if not stat.S_ISREG(mode):
            # A FIFO or device would block the reading thread or never end.
            raise InvalidArgument("the uri does not name a regular file", param="uri")
        return path
