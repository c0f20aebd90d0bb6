"""What a caller's document URI names, checked before anything is fetched.

Only `s3://bucket/key` and `file:///absolute/path` are accepted. Every malformed form is an
InvalidArgument naming `uri`, so one bad URI fails its own document instead of surfacing as a
ValueError from urllib, pathlib or botocore in the middle of a stream.
"""

import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from urllib.parse import unquote, urlsplit

from llmsuite_common.errors import InvalidArgument

MAX_URI_BYTES = 2048
# botocore's own bucket check: a name it would refuse is refused here, with a clear message.
_S3_BUCKET = re.compile(r"[A-Za-z0-9._-]{1,255}")
# A '%' must start a two-digit escape; anything else is a typo or an attempt to smuggle bytes.
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class S3Object:
    bucket: str
    key: str

    @property
    def path(self) -> str:
        return f"{self.bucket}/{self.key}"


@dataclass(frozen=True, slots=True)
class LocalFile:
    path: PurePosixPath  # absolute, percent-decoded, not yet resolved against the roots


def parse(uri: str) -> S3Object | LocalFile:
    if not uri.strip():
        raise InvalidArgument("uri is empty", param="uri")
    if len(uri) > MAX_URI_BYTES or len(uri.encode("utf-8", "surrogatepass")) > MAX_URI_BYTES:
        raise InvalidArgument(f"uri is longer than {MAX_URI_BYTES} bytes", param="uri")
    if _CONTROL.search(uri):
        raise InvalidArgument("uri contains a control character", param="uri")
    scheme, sep, rest = uri.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in ("s3", "file"):
        raise InvalidArgument("uri must start with s3:// or file://", param="uri")
    return _s3(rest) if scheme == "s3" else _file(uri)


def _s3(rest: str) -> S3Object:
    # Taken as written, not URL-parsed: S3 keys may hold '?', '#' and '%' as plain characters.
    bucket, _, key = rest.partition("/")
    if not bucket or not key:
        raise InvalidArgument("s3:// URIs must name a bucket and a key: s3://bucket/key", param="uri")
    if not _S3_BUCKET.fullmatch(bucket):
        raise InvalidArgument("the uri's bucket name is not a valid S3 bucket name", param="uri")
    if key.endswith("/"):
        raise InvalidArgument("the uri names a folder, not an object", param="uri")
    return S3Object(bucket, key)


def _file(uri: str) -> LocalFile:
    try:
        parts = urlsplit(uri)
    except ValueError:
        raise InvalidArgument("uri is not a valid URI", param="uri") from None
    if parts.netloc not in ("", "localhost"):
        raise InvalidArgument("file:// URIs must name a local path: file:///path", param="uri")
    if parts.query or parts.fragment or uri.endswith(("?", "#")):
        raise InvalidArgument(
            "file:// URIs take no query or fragment (percent-encode '?' and '#')", param="uri"
        )
    if _BAD_ESCAPE.search(parts.path):
        raise InvalidArgument("uri has a '%' that does not start a %XX escape", param="uri")
    try:
        path = unquote(parts.path, errors="strict")
    except UnicodeDecodeError:
        raise InvalidArgument("uri's %XX escapes do not decode as UTF-8", param="uri") from None
    if "\x00" in path:
        raise InvalidArgument("uri's path contains a NUL character", param="uri")
    if not path.startswith("/") or not path.strip("/"):
        raise InvalidArgument("file:// URIs must name an absolute file path: file:///path", param="uri")
    return LocalFile(PurePosixPath(path))
