"""Request bodies of the collections, documents, search and embeddings endpoints."""

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class CreateCollectionBody(_Body):
    name: Annotated[str, Field(min_length=1, max_length=64)]
    description: Annotated[str, Field(max_length=1024)] = ""


class DocumentBody(_Body):
    """One document: `text`, base64 `data` (PDF, HTML, ...), or an s3:// / file:// `uri`."""

    id: Annotated[str, Field(max_length=256)] = ""
    text: str | None = None
    data: str | None = Field(None, description="Base64 of the file's bytes.")
    uri: str | None = None
    content_type: str = ""
    metadata: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_content(self) -> "DocumentBody":
        if sum(v is not None for v in (self.text, self.data, self.uri)) != 1:
            raise ValueError("give exactly one of text, data or uri")
        if self.uri is None and not self.id:
            raise ValueError("id is required unless uri is given")
        return self


class IngestBody(_Body):
    documents: Annotated[list[DocumentBody], Field(min_length=1)]


class SearchBody(_Body):
    query: str = ""
    vector: list[float] | None = None
    k: Annotated[int, Field(ge=0, le=1000)] = 0
    filter: dict[str, str] = Field(default_factory=dict)
    hybrid_weight: Annotated[float, Field(ge=0, le=1)] = 0.0


class DeleteDocumentsBody(_Body):
    ids: Annotated[list[str], Field(min_length=1)]


class EmbeddingsBody(_Body):
    """OpenAI's embeddings request; token-id inputs are not accepted."""

    input: str | Annotated[list[str], Field(min_length=1)]
    model: Annotated[str, Field(min_length=1)]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None
    user: str | None = None
