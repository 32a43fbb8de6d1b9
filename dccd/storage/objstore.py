"""Access to the object store of an ``s3://bucket/prefix`` lake: settings, obstore calls, pyarrow's S3 file system.

Writes and listings go through ``obstore`` (put, put-if-absent, get, list, delete; the S3 conditional put
``If-None-Match: *`` answers 412 on an existing key, which obstore raises as ``AlreadyExistsError``); Parquet
reads go through ``pyarrow.fs.S3FileSystem``, also registered with DuckDB (as an fsspec file system under a
protocol of its own) so the lake's SQL runs unchanged over ``s3://`` paths. Every request has a deadline
(``storage.s3.timeout_s``, ``connect_timeout_s``).

An object-store lake keeps its per-machine state (the catalog's materialized cache, run history, rate-limit
state) in a local cache directory, ``storage.cache_dir`` or ``~/.cache/dccd/<hash of the URI>``: that directory
is what ``Config.data_root`` and ``Lake.root`` name, and :func:`settings_for` maps it back to the store.
"""

from __future__ import annotations

import builtins
import contextlib
import datetime
import hashlib
import ipaddress
import os
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from dccd.config.s3 import S3
from dccd.errors import ConfigError, StorageError

if TYPE_CHECKING:
    from obstore.store import ClientConfig, RetryConfig

SCHEME: Final[str] = "s3://"
_ENV: Final[dict[str, tuple[str, ...]]] = {
    "endpoint_url": ("DCCD_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"),
    "region": ("DCCD_S3_REGION", "AWS_REGION", "AWS_DEFAULT_REGION"),
    "access_key_id": ("DCCD_S3_ACCESS_KEY_ID", "AWS_ACCESS_KEY_ID"),
    "secret_access_key": ("DCCD_S3_SECRET_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY"),
}


def is_object_uri(path: str | os.PathLike[str]) -> bool:
    """Whether a ``storage.path`` names an object store (``s3://...``)."""
    return str(path).startswith(SCHEME)


@dataclass(frozen=True)
class StoreSettings:
    """Everything needed to reach one lake on an object store (resolved from config and environment)."""

    uri: str
    bucket: str
    prefix: str
    endpoint_url: str | None
    region: str
    access_key_id: str | None
    secret_access_key: str | None
    allow_http: bool
    timeout_s: float
    connect_timeout_s: float
    cache_dir: Path

    def key(self, rel: str) -> str:
        """Object key of lake-relative path ``rel``."""
        return f"{self.prefix}/{rel}" if self.prefix else rel

    def url(self, rel: str) -> str:
        """``s3://bucket/prefix/rel``: what DuckDB and pyarrow are given."""
        return f"{SCHEME}{self.bucket}/{self.key(rel)}"


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def resolve(path: str, s3: S3 | None, cache_dir: str | None, env: Mapping[str, str] | None = None) -> StoreSettings:
    """Settings of the lake at ``path`` (``s3://bucket/prefix``) from ``storage.s3`` and the environment.

    Raises:
        ConfigError: a bad URI, endpoint, half a key pair, or plain HTTP to a remote host (one line, naming the key).
    """
    env = os.environ if env is None else env
    s3 = s3 or S3()
    rest = path[len(SCHEME) :]
    bucket, _, prefix = rest.partition("/")
    prefix = prefix.strip("/")
    if not bucket or any(c in bucket for c in " \\?#") or bucket != bucket.lower():
        raise ConfigError("storage.path", f"{path!r} is not s3://bucket/prefix (a lower-case bucket name first)")
    if any(part in (".", "..") for part in prefix.split("/")) or "//" in prefix:
        raise ConfigError("storage.path", f"{path!r}: the prefix may not hold '.', '..' or empty segments")
    got: dict[str, Any] = {}
    for key, names in _ENV.items():
        value = getattr(s3, key)
        if value is None:
            value = next((env[n] for n in names if env.get(n)), None)
        got[key] = value
    endpoint = got["endpoint_url"]
    allow_http = s3.allow_http
    if allow_http is None and env.get("DCCD_S3_ALLOW_HTTP"):
        allow_http = env["DCCD_S3_ALLOW_HTTP"].lower() in ("1", "true", "yes")
    if endpoint is not None:
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
            raise ConfigError("storage.s3.endpoint_url", f"{endpoint!r} is not http(s)://host[:port]")
        try:
            parts.port  # noqa: B018 (validates the port)
        except ValueError:
            raise ConfigError("storage.s3.endpoint_url", f"{endpoint!r} has a bad port") from None
        if parts.scheme == "http":
            if allow_http is None:
                allow_http = _loopback(parts.hostname)
            if not allow_http:
                raise ConfigError(
                    "storage.s3.endpoint_url",
                    f"{endpoint} is plain HTTP to a remote host (credentials in clear): use https or set allow_http",
                )
        endpoint = endpoint.rstrip("/")
    if (got["access_key_id"] is None) != (got["secret_access_key"] is None):
        missing = "secret_access_key" if got["secret_access_key"] is None else "access_key_id"
        raise ConfigError(f"storage.s3.{missing}", "is missing (give both keys, or neither to use the AWS defaults)")
    for key in ("timeout_s", "connect_timeout_s"):
        if not 0 < getattr(s3, key) <= 3600:
            raise ConfigError(f"storage.s3.{key}", f"{getattr(s3, key)} is not between 0 and 3600 seconds")
    uri = f"{SCHEME}{bucket}/{prefix}" if prefix else f"{SCHEME}{bucket}"
    if cache_dir:
        cache = Path(cache_dir).expanduser()
    else:
        home = Path(env.get("XDG_CACHE_HOME") or Path("~/.cache").expanduser())
        digest = hashlib.sha256(f"{endpoint or 'aws'}|{uri}".encode()).hexdigest()[:16]
        cache = home / "dccd" / digest
    return StoreSettings(
        uri, bucket, prefix, endpoint, got["region"] or "us-east-1", got["access_key_id"], got["secret_access_key"],
        bool(allow_http), float(s3.timeout_s), float(s3.connect_timeout_s), cache,
    )  # fmt: skip


# -- the cache-root registry: Config.data_root and Lake(root) meet here ----------------------------------

_resolved: dict[tuple[str, S3 | None, str | None], StoreSettings] = {}


def for_storage(path: str, s3: S3 | None, cache_dir: str | None, env: Mapping[str, str] | None = None) -> StoreSettings:
    """:func:`resolve` once per config: the settings the config was loaded with (its environment) are kept for
    ``Config.data_root``; without ``env`` a config seen before gets its remembered settings.

    Raises:
        ConfigError: as :func:`resolve`.
    """
    key = (path, s3, cache_dir)
    if env is None and key in _resolved:
        return _resolved[key]
    settings = _resolved[key] = resolve(path, s3, cache_dir, env)
    return settings


_registry: dict[str, StoreSettings] = {}
_registry_lock = threading.Lock()


def register(settings: StoreSettings) -> Path:
    """Remember that ``settings.cache_dir`` is the local root of that object-store lake (created if missing, so
    commands that check for the lake directory find it); return the directory.

    Raises:
        ConfigError: the directory cannot be created.
    """
    try:
        settings.cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError("storage.cache_dir", f"{settings.cache_dir}: {exc.strerror or exc}") from None
    with _registry_lock:
        _registry[os.path.abspath(settings.cache_dir)] = settings
    return settings.cache_dir


def settings_for(root: Path | str) -> StoreSettings | None:
    """The object-store lake whose local root is ``root`` (None: a lake on local disk)."""
    if not _registry:
        return None
    return _registry.get(os.path.abspath(root))


# -- the store ---------------------------------------------------------------------------------------------


class ObjectStore:
    """One bucket/prefix: obstore for objects, pyarrow for Parquet. Keys given here are lake-relative."""

    def __init__(self, settings: StoreSettings) -> None:
        from obstore.store import S3Store

        self.settings = s = settings
        config: dict[str, Any] = {"region": s.region}
        if s.endpoint_url:
            config["endpoint"] = s.endpoint_url
        if s.access_key_id:
            config["access_key_id"] = s.access_key_id
            config["secret_access_key"] = s.secret_access_key
        client: ClientConfig = {
            "allow_http": s.allow_http,
            "timeout": f"{s.timeout_s}s",
            "connect_timeout": f"{s.connect_timeout_s}s",
        }
        retry: RetryConfig = {"max_retries": 3, "retry_timeout": datetime.timedelta(seconds=s.timeout_s)}
        self._store = S3Store(s.bucket, prefix=s.prefix or None, client_options=client, retry_config=retry, **config)
        self._fs: Any = None
        self._fs_lock = threading.Lock()

    # obstore errors become StorageError (one line), except "already exists" which callers decide on
    @contextlib.contextmanager
    def _errors(self, what: str, key: str) -> Iterator[None]:
        import obstore.exceptions as oe

        try:
            yield
        except oe.AlreadyExistsError:
            raise
        except (oe.NotFoundError, FileNotFoundError):
            raise
        except (oe.BaseError, OSError, RuntimeError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise StorageError(f"{self.settings.uri}: {what} {key}: {first[:300]}") from exc

    def put(self, key: str, data: bytes) -> None:
        """Write (or overwrite) an object."""
        import obstore

        with self._errors("put", key):
            obstore.put(self._store, key, data)

    def put_if_absent(self, key: str, data: bytes) -> bool:
        """Create an object only if no object has that key; False when one does (HTTP 412)."""
        import obstore
        import obstore.exceptions as oe

        try:
            with self._errors("put", key):
                obstore.put(self._store, key, data, mode="create")
        except oe.AlreadyExistsError:
            return False
        return True

    def probe(self) -> None:
        """One request that succeeds only when the store answers (a GET of a key dccd never writes).

        Raises:
            StorageError: the store failed or did not answer within its deadline.
        """
        self.get(PROBE_KEY)

    def get(self, key: str) -> bytes | None:
        """An object's bytes (None: no such object)."""
        import obstore
        import obstore.exceptions as oe

        try:
            with self._errors("get", key):
                return bytes(obstore.get(self._store, key).bytes())
        except (oe.NotFoundError, FileNotFoundError):
            return None

    def list(self, prefix: str, *, offset: str | None = None) -> builtins.list[tuple[str, int, float]]:
        """``(key, size, last_modified_epoch_s)`` of the objects under ``prefix`` (keys after ``offset`` only)."""
        import obstore

        out: list[tuple[str, int, float]] = []
        with self._errors("list", prefix):
            kwargs: dict[str, Any] = {"offset": offset} if offset else {}
            for chunk in obstore.list(self._store, prefix=prefix, **kwargs):
                out += [(m["path"], int(m["size"]), m["last_modified"].timestamp()) for m in chunk]
        return out

    def delete(self, keys: builtins.list[str]) -> None:
        """Delete objects (absent ones are fine)."""
        import obstore
        import obstore.exceptions as oe

        for key in keys:
            with contextlib.suppress(oe.NotFoundError, FileNotFoundError), self._errors("delete", key):
                obstore.delete(self._store, key)

    def filesystem(self) -> Any:
        """``pyarrow.fs.S3FileSystem`` of the bucket (paths are ``bucket/key``)."""
        with self._fs_lock:
            if self._fs is None:
                from pyarrow import fs

                s = self.settings
                opts: dict[str, Any] = {
                    "region": s.region,
                    "connect_timeout": s.connect_timeout_s,
                    "request_timeout": s.timeout_s,
                }
                if s.endpoint_url:
                    parts = urlsplit(s.endpoint_url)
                    opts["endpoint_override"] = parts.netloc
                    opts["scheme"] = parts.scheme
                if s.access_key_id:
                    opts["access_key"], opts["secret_key"] = s.access_key_id, s.secret_access_key
                self._fs = fs.S3FileSystem(**opts)
            return self._fs


PROBE_KEY: Final[str] = "_dccd/ready-probe"
"""The key :meth:`ObjectStore.probe` reads (absent: a 404 is an answer)."""

_stores: dict[StoreSettings, ObjectStore] = {}
_duck_protocols: dict[tuple[str | None, str | None, str], str] = {}


def store_for(settings: StoreSettings) -> ObjectStore:
    """The process's :class:`ObjectStore` of ``settings`` (one client per lake)."""
    with _registry_lock:
        st = _stores.get(settings)
        if st is None:
            st = _stores[settings] = ObjectStore(settings)
        return st


def duckdb_filesystem(store: ObjectStore) -> tuple[str, Any]:
    """``(protocol, fsspec file system)`` that lets DuckDB read ``protocol://bucket/key`` through pyarrow's S3 client.

    The first endpoint a process uses is ``s3``; another endpoint (other credentials) gets ``s3e<n>``.
    """
    from fsspec.implementations.arrow import ArrowFSWrapper

    s = store.settings
    ident = (s.endpoint_url, s.access_key_id, s.region)
    with _registry_lock:
        proto = _duck_protocols.get(ident)
        if proto is None:
            proto = _duck_protocols[ident] = "s3" if not _duck_protocols else f"s3e{len(_duck_protocols)}"

    def strip(cls: Any, path: Any) -> Any:
        # fsspec keeps the bucket (the URL's host) only for protocols it knows as object stores: strip just ours
        if isinstance(path, list):
            return [strip(cls, p) for p in path]
        text = str(path)
        return text[len(proto) + 3 :] if text.startswith(f"{proto}://") else text

    wrapper = type(f"DccdS3_{proto}", (ArrowFSWrapper,), {"protocol": proto, "_strip_protocol": classmethod(strip)})
    return proto, wrapper(store.filesystem())
