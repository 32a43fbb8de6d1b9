"""SQL over the lake: which statements pass the check, limits, and the encodings of a result."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from dccd.errors import QueryError
from dccd.storage import Lake
from dccd.storage.query import check_sql, encode, run_query
from dccd.storage.views import open_views

from .helpers import NOW, PROV, TRADES, trades


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 1",
        "WITH a AS (SELECT 1 AS x) SELECT * FROM a",
        "FROM trades LIMIT 1",
        "VALUES (1), (2)",
        "DESCRIBE trades",
        "SUMMARIZE ohlc",
        "EXPLAIN SELECT 1",
        "explain analyze SELECT 1",
        "SELECT 1; ",
        "SELECT 1 -- comment; DROP TABLE x",
    ],
)
def test_one_read_only_query_passes_the_check(sql: str) -> None:
    """Queries in their several forms (and a trailing semicolon or comment) pass."""
    assert check_sql(sql) == sql


@pytest.mark.parametrize(
    ("sql", "kind", "text"),
    [
        ("COPY (SELECT 1) TO 'x.csv'", "refused", "COPY statements are not allowed"),
        ("EXPLAIN ANALYZE COPY (SELECT 1) TO 'x.csv'", "refused", "COPY statements are not allowed"),
        ("EXPLAIN ANALYZE DELETE FROM t", "refused", "DELETE statements are not allowed"),
        ("/* c */ EXPLAIN ANALYZE SELECT 1", "refused", "an EXPLAIN that does not start the statement"),
        ("SELECT 1; SELECT 2", "refused", "2 statements"),
        ("UPDATE EXTENSIONS", "refused", "a statement that is not a query"),
        ("BEGIN", "refused", "TRANSACTION statements are not allowed"),
        ("USE memory", "refused", "SET statements are not allowed"),
        ("-- nothing", "invalid", "no statement"),
        ("SELECT FROM WHERE", "invalid", "syntax error"),
        ("SELECT " + "1," * 60_000 + "1", "refused", "at most 100,000"),
    ],
)
def test_everything_else_is_refused_before_running(sql: str, kind: str, text: str) -> None:
    """Statements that are not one query, or that do not parse, raise QueryError naming why."""
    with pytest.raises(QueryError) as err:
        check_sql(sql)
    assert err.value.kind == kind and text in str(err.value)


def test_the_engine_refuses_writes_even_past_the_check(tmp_path: Path) -> None:
    """The locked-down views refuse a COPY into the lake and an ATTACH'd file themselves (the second barrier)."""
    Lake(tmp_path).write(TRADES, trades(0, 5), PROV, now_ns=NOW)
    with open_views(tmp_path, {"trades"}) as v:
        for sql in (f"COPY trades TO '{tmp_path}/x.csv'", f"ATTACH '{tmp_path}/x.duckdb'"):
            with pytest.raises(Exception, match="Permission Error"):
                v.con.execute(sql)
    assert not (tmp_path / "x.csv").exists() and not (tmp_path / "x.duckdb").exists()


def test_run_query_keeps_max_rows_and_marks_truncation(tmp_path: Path) -> None:
    """At most max_rows rows come back; truncated is True only when more existed."""
    Lake(tmp_path).write(TRADES, trades(0, 100), PROV, now_ns=NOW)
    cut = run_query(tmp_path, "SELECT * FROM trades", max_rows=10)
    assert (cut.table.num_rows, cut.truncated, cut.parts) == (10, True, {"trades": 1})
    whole = run_query(tmp_path, "SELECT * FROM trades", max_rows=100)
    assert (whole.table.num_rows, whole.truncated) == (100, False)


def test_json_encodings_render_every_type_and_name_duplicates_apart() -> None:
    """JSON renders nested values, dates and escapes; a duplicate column name gets a suffix; no rows is []."""
    table = pa.table([pa.array([1]), pa.array([2]), pa.array([[1, 2]]), pa.array(["a\nb"])], names=["a", "a", "l", "s"])
    assert json.loads(b"".join(encode(table, "json"))) == [{"a": 1, "a_1": 2, "l": [1, 2], "s": "a\nb"}]
    assert b"".join(encode(table.slice(0, 0), "json")) == b"[]"
    assert b"".join(encode(table, "jsonl")).count(b"\n") == 1


def test_csv_holds_nested_values_as_json_text() -> None:
    """Lists and structs, which CSV cannot hold, become their JSON text (a null stays an empty field)."""
    table = pa.table({"l": [[1, 2], None], "s": [{"x": 1}, {"x": None}]})
    back = pacsv.read_csv(io.BytesIO(b"".join(encode(table, "csv"))))
    assert back.column("l").to_pylist() == ["[1,2]", ""]
    assert back.column("s").to_pylist() == ['{"x":1}', '{"x":null}']


def test_an_unknown_format_is_refused() -> None:
    """encode names the formats it knows."""
    with pytest.raises(ValueError, match="not a query format"):
        encode(pa.table({"a": [1]}), "xml")


def test_as_of_reads_the_market_data_of_a_snapshot(tmp_path: Path) -> None:
    """With the lake catalog: as_of queries what a snapshot held, through a compaction since; an unknown
    snapshot is ``missing``. Without it (a build lacking the catalog), as_of is an invalid one-line error."""
    from dccd.storage.views import snapshots_module

    from .helpers import OHLC_1M, T0, bars

    lake = Lake(tmp_path)
    lake.write(OHLC_1M, bars(T0, 30), PROV, now_ns=NOW)
    sql = "SELECT count(*) AS n, max(close) AS top FROM ohlc"
    snapshots = snapshots_module()
    if snapshots is None:
        with pytest.raises(QueryError) as err:
            run_query(tmp_path, sql, as_of="t1")
        assert (err.value.kind, str(err.value)) == ("invalid", "as_of: this dccd has no lake catalog (snapshots)")
        return
    snapshots.create(tmp_path, tag="t1")
    lake.write(OHLC_1M, bars(T0 + 20 * 60 * 10**9, 20, close=1.9), PROV, now_ns=NOW + 1)
    lake.compact(OHLC_1M)
    assert run_query(tmp_path, sql).table.to_pylist() == [{"n": 40, "top": 1.9}]
    assert run_query(tmp_path, sql, as_of="t1").table.to_pylist() == [{"n": 30, "top": 1.5}]
    with pytest.raises(QueryError) as err:
        run_query(tmp_path, sql, as_of="nope")
    assert err.value.kind == "missing" and str(err.value).startswith("as_of: no snapshot 'nope'")


def test_a_query_past_its_memory_limit_is_refused_as_such(tmp_path: Path) -> None:
    """A query that cannot fit (an unspillable list of 20 M values in 50 MB) is a ``memory`` QueryError naming the limit."""
    with pytest.raises(QueryError) as err:
        run_query(tmp_path, "SELECT list(range) AS l FROM range(20000000)", memory_limit="50MB")
    assert err.value.kind == "memory"
    assert str(err.value).startswith("the query needs more than its memory limit of 50MB: Out of Memory Error")
