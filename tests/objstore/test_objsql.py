"""SQL over an s3 lake (the lockdown keeps its locks) and the ``storage.s3`` config's one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from dccd.config import load_config
from dccd.errors import ConfigError
from dccd.storage import Lake
from dccd.storage.query import QueryError, run_query
from tests.storage.helpers import NOW, OHLC_1M, PROV, T0, TRADES, bars, trades


def test_sql_reads_an_s3_lake_and_refuses_other_files(s3_uri: str, tmp_path: Path) -> None:
    """``dccd sql``/the SQL endpoint query the s3 lake's views; local files and the lake's other objects stay shut."""
    lake = Lake(s3_uri)
    lake.write(TRADES, trades(0, 100), PROV, now_ns=NOW)
    lake.write(TRADES, trades(50, 100), PROV, now_ns=NOW)
    lake.write(OHLC_1M, bars(T0, 60), PROV, now_ns=NOW)
    res = run_query(lake.root, "SELECT count(*) AS n, count(DISTINCT id) AS ids, min(date) AS d FROM trades")
    assert res.table.to_pylist() == [{"n": 150, "ids": 150, "d": __import__("datetime").date(2024, 1, 1)}]
    res = run_query(lake.root, "SELECT symbol, span, count(*) AS n FROM ohlc GROUP BY ALL")
    assert res.table.to_pylist() == [{"symbol": "BTC-USDT", "span": "1m", "n": 60}]
    secret = tmp_path / "secret.csv"
    secret.write_text("a\n1\n")
    bucket_prefix = s3_uri.removeprefix("s3://")
    for hostile in (
        f"SELECT * FROM read_csv('{secret}')",
        "SELECT * FROM read_text('/etc/passwd')",
        f"SELECT * FROM read_text('s3://{bucket_prefix}/_dccd/log/00000000000000000001.json')",
        f"SELECT * FROM read_parquet('s3://{bucket_prefix}/trades/**/*.parquet')",
    ):
        with pytest.raises(QueryError) as err:
            run_query(lake.root, hostile)
        assert err.value.kind == "denied" and "disabled by configuration" in str(err.value), (hostile, err.value)


def test_config_resolves_an_s3_lake_to_a_local_root(tmp_path: Path) -> None:
    """``storage.path: s3://..`` loads; its data root is the local cache directory, keyed by the URI."""
    env = {"DCCD_DATA": "s3://bucket/lake/one", "AWS_ENDPOINT_URL": "http://127.0.0.1:9", "HOME": str(tmp_path)}
    cfg = load_config(None, {**env, "XDG_CACHE_HOME": str(tmp_path)})
    assert cfg.storage.path == "s3://bucket/lake/one"
    from dccd.storage.objstore import resolve

    s = resolve(cfg.storage.path, None, None, {**env, "XDG_CACHE_HOME": str(tmp_path)})
    assert (s.bucket, s.prefix, s.endpoint_url, s.allow_http) == ("bucket", "lake/one", "http://127.0.0.1:9", True)
    assert s.cache_dir.parent == tmp_path / "dccd"
    other = resolve("s3://bucket/lake/two", None, None, {**env, "XDG_CACHE_HOME": str(tmp_path)})
    assert other.cache_dir != s.cache_dir


@pytest.mark.parametrize(
    ("yaml", "env", "key"),
    [
        ("storage: {path: 's3://'}", {}, "storage.path"),
        ("storage: {path: 's3://Bucket/x'}", {}, "storage.path"),
        ("storage: {path: 's3://b/../x'}", {}, "storage.path"),
        ("storage: {path: 's3://b/x', s3: {endpoint_url: 'ftp://h'}}", {}, "storage.s3.endpoint_url"),
        ("storage: {path: 's3://b/x', s3: {endpoint_url: 'http://10.1.2.3:9000'}}", {}, "storage.s3.endpoint_url"),
        ("storage: {path: 's3://b/x', s3: {access_key_id: 'k'}}", {}, "storage.s3.secret_access_key"),
        ("storage: {path: 's3://b/x'}", {"AWS_SECRET_ACCESS_KEY": "s"}, "storage.s3.access_key_id"),
        ("storage: {path: 's3://b/x', s3: {timeout_s: 0}}", {}, "storage.s3.timeout_s"),
        ("storage: {path: './data', s3: {region: 'x'}}", {}, "storage.s3"),
        ("storage: {path: 's3://b/x', s3: {endpoint: 'http://h'}}", {}, "storage.s3"),
    ],
)
def test_bad_s3_settings_are_one_line_naming_the_key(
    yaml: str, env: dict[str, str], key: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each bad storage/s3 value fails the config load with one line naming its key."""
    for name in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    path = tmp_path / "c.yaml"
    path.write_text(yaml + "\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, dict(__import__("os").environ))
    assert str(err.value).startswith(key) and "\n" not in str(err.value), str(err.value)


def test_plain_http_to_a_remote_endpoint_is_allowed_only_when_asked() -> None:
    """``allow_http: true`` lets a non-loopback http endpoint through (credentials in clear are a choice)."""
    from dccd.config.s3 import S3
    from dccd.storage.objstore import resolve

    s = resolve("s3://b/x", S3(endpoint_url="http://10.1.2.3:9000", allow_http=True), "/tmp/c", {})
    assert s.allow_http and s.endpoint_url == "http://10.1.2.3:9000"


def test_the_secret_key_is_masked_in_the_effective_config(tmp_path: Path) -> None:
    """``dccd config show`` and ``GET /api/v1/config`` never print storage.s3.secret_access_key."""
    from dccd.config import masked

    path = tmp_path / "c.yaml"
    path.write_text(
        "storage: {path: 's3://b/x', cache_dir: "
        + str(tmp_path)
        + ", s3: {access_key_id: AK, secret_access_key: SEKRET}}\n"
    )
    shown = masked(load_config(path, {}))
    assert shown["storage"]["s3"]["secret_access_key"] == "***" and "SEKRET" not in str(shown)
    assert shown["storage"]["s3"]["access_key_id"] == "AK"
