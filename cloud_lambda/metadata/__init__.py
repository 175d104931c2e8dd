"""Item metadata (title, image URL, extra fields, model id) behind one interface: SQLite and DynamoDB."""

from cloud_lambda.metadata.base import ItemRecord, MetadataError, MetadataStore, open_metadata_store

__all__ = ["ItemRecord", "MetadataError", "MetadataStore", "open_metadata_store"]
