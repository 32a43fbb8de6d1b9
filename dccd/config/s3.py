"""The ``storage.s3`` config section: how to reach the object store of an ``s3://bucket/prefix`` lake."""

from __future__ import annotations

import msgspec


class S3(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Endpoint, region and credentials of an S3-compatible store; every field falls back to the environment
    (``DCCD_S3_*``, then ``AWS_ENDPOINT_URL``, ``AWS_REGION``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``)."""

    endpoint_url: str | None = None
    """``http(s)://host:port`` of the S3 API (None: AWS itself)."""
    region: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None
    allow_http: bool | None = None
    """Plain HTTP to the endpoint (default: allowed for a loopback endpoint only)."""
    timeout_s: float = 30.0
    """Deadline of one request (connect included)."""
    connect_timeout_s: float = 5.0
