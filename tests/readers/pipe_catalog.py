"""Opens the SQL catalog (SQLite file) a test's `pipe` wrote, with PyIceberg."""

from pyiceberg.catalog.sql import SqlCatalog


def open_catalog(catalog_db, warehouse, s3_endpoint=None, name="pipe"):
    """The catalog at `catalog_db`; `s3_endpoint` for s3:// warehouses on
    the test's S3 server (any credentials, path-style)."""
    props = {"uri": f"sqlite:///{catalog_db}", "warehouse": warehouse}
    if s3_endpoint:
        props.update({
            "s3.endpoint": s3_endpoint,
            "s3.access-key-id": "test",
            "s3.secret-access-key": "test",
            "s3.region": "us-east-1",
            "s3.force-virtual-addressing": "false",
        })
    return SqlCatalog(name, **props)
