"""What the readers share: the catalog a test's `pipe` wrote (PyIceberg on
its SQLite file) and the test's S3 server (pyarrow's file system)."""

from urllib.parse import urlparse

from pyarrow import fs

from pyiceberg.catalog.sql import SqlCatalog


def open_catalog(catalog_db, warehouse, s3_endpoint=None, name="pipe", uri=None):
    """The catalog in the SQLite file `catalog_db`, or at the SQLAlchemy
    `uri` (e.g. `postgresql+pg8000://…`); `s3_endpoint` for s3://
    warehouses on the test's S3 server (any credentials, path-style)."""
    props = {"uri": uri or f"sqlite:///{catalog_db}", "warehouse": warehouse}
    if s3_endpoint:
        props.update({
            "s3.endpoint": s3_endpoint,
            "s3.access-key-id": "test",
            "s3.secret-access-key": "test",
            "s3.region": "us-east-1",
            "s3.force-virtual-addressing": "false",
        })
    return SqlCatalog(name, **props)


def s3_filesystem(s3_endpoint):
    """pyarrow's S3 file system on the test's S3 server (any credentials)."""
    endpoint = urlparse(s3_endpoint)
    return fs.S3FileSystem(
        endpoint_override=endpoint.netloc,
        scheme=endpoint.scheme,
        access_key="test",
        secret_key="test",
        region="us-east-1",
    )
