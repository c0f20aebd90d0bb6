"""Request checks for every call. Messages name the field, never echo its value."""

import math
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from llmsuite_common.errors import InvalidArgument

COLLECTION_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,64}")
MAX_TENANT_BYTES = 128
MAX_SOURCE_ID_BYTES = 256
MAX_METADATA_KEY_BYTES = 64


@dataclass(frozen=True, slots=True)
class Limits:
    max_documents: int
    max_document_bytes: int
    max_metadata_entries: int
    max_metadata_value_bytes: int
    max_query_bytes: int
    default_k: int
    max_k: int


@dataclass(frozen=True, slots=True)
class DocumentInput:
    source_id: str
    text: str
    metadata: dict[str, str]


def tenant(org_id: str) -> str:
    if not org_id.strip():
        raise InvalidArgument("context.org_id is required", param="context.org_id")
    _check_text(org_id, "context.org_id", MAX_TENANT_BYTES)
    return org_id


def collection(name: str, *, param: str = "collection") -> str:
    if not COLLECTION_PATTERN.fullmatch(name):
        raise InvalidArgument(
            f"{param} must be 1-64 characters of letters, digits, '_', '.' or '-'", param=param
        )
    return name


def documents(items: Iterable[tuple[str, str, Mapping[str, str]]], limits: Limits) -> list[DocumentInput]:
    out: list[DocumentInput] = []
    seen: set[str] = set()
    for index, (source_id, text, metadata) in enumerate(items):
        if index >= limits.max_documents:
            raise InvalidArgument(f"at most {limits.max_documents} documents per request", param="documents")
        param = f"documents[{index}]"
        if not source_id.strip():
            raise InvalidArgument(f"{param}.id is required", param=f"{param}.id")
        _check_text(source_id, f"{param}.id", MAX_SOURCE_ID_BYTES)
        if source_id in seen:
            raise InvalidArgument(f"{param}.id repeats an earlier document id", param=f"{param}.id")
        seen.add(source_id)
        if not text.strip():
            raise InvalidArgument(f"{param}.text is empty", param=f"{param}.text")
        _check_text(text, f"{param}.text", limits.max_document_bytes)
        out.append(DocumentInput(source_id, text, _metadata(metadata, f"{param}.metadata", limits)))
    if not out:
        raise InvalidArgument("documents must not be empty", param="documents")
    return out


def query(text: str, limits: Limits) -> str:
    if not text.strip():
        raise InvalidArgument("query is empty", param="query")
    _check_text(text, "query", limits.max_query_bytes)
    return text


def k(value: int, limits: Limits) -> int:
    if value == 0:
        return limits.default_k
    if value > limits.max_k:
        raise InvalidArgument(f"k must be at most {limits.max_k}", param="k")
    return value


def _metadata(metadata: Mapping[str, str], param: str, limits: Limits) -> dict[str, str]:
    if len(metadata) > limits.max_metadata_entries:
        raise InvalidArgument(f"{param} has more than {limits.max_metadata_entries} entries", param=param)
    for key, value in metadata.items():
        if not key:
            raise InvalidArgument(f"{param} has an empty key", param=param)
        _check_text(key, f"{param} key", MAX_METADATA_KEY_BYTES, param=param)
        _check_text(value, f"{param} value", limits.max_metadata_value_bytes, param=param)
    return dict(metadata)


def _check_text(value: str, what: str, max_bytes: int, *, param: str | None = None) -> None:
    if len(value) > max_bytes or len(value.encode("utf-8", "surrogatepass")) > max_bytes:
        raise InvalidArgument(f"{what} is longer than {max_bytes} bytes", param=param or what)
    # PostgreSQL text cannot hold NUL; reject it here rather than fail in the database.
    if "\x00" in value:
        raise InvalidArgument(f"{what} contains a NUL character", param=param or what)


MAX_DESCRIPTION_BYTES = 1024


def description(text: str) -> str:
    _check_text(text, "description", MAX_DESCRIPTION_BYTES)
    return text


def metadata_filter(values: Mapping[str, str], limits: Limits) -> dict[str, str]:
    return _metadata(values, "filter", limits)


def hybrid_weight(value: float) -> float:
    if not math.isfinite(value) or not 0 <= value <= 1:
        raise InvalidArgument("hybrid_weight must be between 0 and 1", param="hybrid_weight")
    return value


def search_vector(values: Sequence[float], dimension: int) -> np.ndarray | None:
    if not values:
        return None
    if len(values) != dimension:
        raise InvalidArgument(f"vector must have {dimension} dimensions", param="vector")
    vector = np.asarray(values, dtype=np.float32)
    if not np.all(np.isfinite(vector)) or not np.any(vector):
        raise InvalidArgument("vector must be finite and not all zeros", param="vector")
    return vector


def search_text(text: str, *, vector_given: bool, hybrid: bool, limits: Limits) -> str:
    """Query text: required unless a vector is given; always required for hybrid search."""
    if vector_given and not hybrid and not text:
        return ""
    return query(text, limits)


def source_ids(ids: Sequence[str], limits: Limits) -> list[str]:
    if not ids:
        raise InvalidArgument("ids must not be empty", param="ids")
    if len(ids) > limits.max_documents:
        raise InvalidArgument(f"at most {limits.max_documents} ids per request", param="ids")
    for index, value in enumerate(ids):
        if not value.strip():
            raise InvalidArgument(f"ids[{index}] is empty", param=f"ids[{index}]")
        _check_text(value, f"ids[{index}]", MAX_SOURCE_ID_BYTES)
    return list(dict.fromkeys(ids))


def chunk_id(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise InvalidArgument("chunk_id is not a chunk id", param="chunk_id") from None


def embed_inputs(texts: Sequence[str], limits: Limits) -> list[str]:
    if not texts:
        raise InvalidArgument("inputs must not be empty", param="inputs")
    if len(texts) > limits.max_documents:
        raise InvalidArgument(f"at most {limits.max_documents} inputs per request", param="inputs")
    for index, text in enumerate(texts):
        if not text.strip():
            raise InvalidArgument(f"inputs[{index}] is empty", param=f"inputs[{index}]")
        _check_text(text, f"inputs[{index}]", limits.max_document_bytes)
    return list(texts)


def document(
    source_id: str, text: str, metadata: Mapping[str, str], limits: Limits, param: str
) -> DocumentInput:
    """One document of a stream; messages name the stream's field, e.g. sources[3]."""
    if not source_id.strip():
        raise InvalidArgument(f"{param}.id is required", param=f"{param}.id")
    _check_text(source_id, f"{param}.id", MAX_SOURCE_ID_BYTES)
    if not text.strip():
        raise InvalidArgument(f"{param} has no text", param=param)
    _check_text(text, f"{param} text", limits.max_document_bytes, param=param)
    return DocumentInput(source_id, text, _metadata(metadata, f"{param}.metadata", limits))


def inline_text(text: str, param: str) -> str:
    """A stream source's inline text before parsing: NUL is refused (parsing would drop it)."""
    if "\x00" in text:
        raise InvalidArgument(f"{param}.text contains a NUL character", param=f"{param}.text")
    return text
