"""Unloading a slice: the exact bytes PostgreSQL writes, the row count, the hash, no leftovers."""

from __future__ import annotations

import csv
import hashlib
import io
import stat
import zlib
from decimal import Decimal

import pytest

from loader.engines.postgres import CsvRowCounter, count_postgres_slice, unload_postgres_slice
from loader.run.export import shrink_refusal

HEADER = ["Patient ID", "Treatment", "Score"]
HOSTILE = [
    "plain",
    "comma, inside",
    'a "quoted" word',
    "two\nlines",
    "crlf\r\nline",
    "ñandú – 東京 – emoji 🙂",
    '=HYPERLINK("http://x")',
    " leading and trailing spaces ",
    None,
]


@pytest.fixture
def export_like(db):
    """A table shaped like the export model: slice columns, then text file columns."""
    db.execute("drop schema if exists unload_t cascade")
    db.execute("create schema unload_t")
    db.execute(
        "create table unload_t.export (performance_year int, state_code text, "
        'file_row_number bigint, "Patient ID" text, "Treatment" text, "Score" text)'
    )
    with db.cursor() as cursor:
        for number, text in enumerate(HOSTILE, start=1):
            cursor.execute(
                "insert into unload_t.export values (2025, 'CA', %s, %s, %s, %s)",
                (number, str(1000 + number), text, "42.5" if number % 2 else None),
            )
        cursor.execute("insert into unload_t.export values (2025, 'TX', 1, '1', 'LOS', '3')")
    return '"unload_t"."export"'


def expected_csv(rows) -> bytes:
    """RFC 4180 with quoting only where needed, NULL as empty, LF line ends."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(["Patient ID", "Treatment", "Score"])
    for row in rows:
        writer.writerow(["" if v is None else v for v in row])
    return out.getvalue().encode("utf-8")


def test_slice_bytes_follow_the_file_layout(db, export_like, tmp_path):
    unloaded = unload_postgres_slice(db, export_like, 2025, "CA", header=HEADER, work_dir=tmp_path)
    body = unloaded.path.read_bytes()
    rows = [
        (str(1000 + n), text, "42.5" if n % 2 else None) for n, text in enumerate(HOSTILE, start=1)
    ]
    # PostgreSQL quotes a field with \r as Python does; leading "=" is not special in CSV.
    assert body == expected_csv(rows)
    assert not body.startswith(b"\xef\xbb\xbf"), "no BOM"
    assert unloaded.rows == len(HOSTILE)
    assert unloaded.bytes == len(body)
    assert unloaded.sha256 == hashlib.sha256(body).hexdigest()
    assert unloaded.crc32 == zlib.crc32(body), "S3's checksum is of the same bytes"
    assert stat.S_IMODE(unloaded.path.stat().st_mode) == 0o600
    parsed = list(csv.reader(io.StringIO(body.decode("utf-8"), newline="")))
    assert [r[1] for r in parsed[1:]] == ["" if t is None else t for t in HOSTILE]


def test_slice_is_filtered_and_ordered(db, export_like, tmp_path):
    db.execute("insert into unload_t.export values (2025, 'TX', 0, '0', 'first', null)")
    unloaded = unload_postgres_slice(db, export_like, 2025, "TX", header=HEADER, work_dir=tmp_path)
    assert unloaded.path.read_bytes() == b"Patient ID,Treatment,Score\n0,first,\n1,LOS,3\n"
    assert unloaded.rows == 2 == count_postgres_slice(db, export_like, 2025, "TX")


def test_empty_slice_is_a_header_only_file(db, export_like, tmp_path):
    unloaded = unload_postgres_slice(db, export_like, 2024, "CA", header=HEADER, work_dir=tmp_path)
    assert unloaded.path.read_bytes() == b"Patient ID,Treatment,Score\n"
    assert unloaded.rows == 0


def test_dry_run_keeps_no_bytes(db, export_like, tmp_path):
    unloaded = unload_postgres_slice(db, export_like, 2025, "CA", header=HEADER, work_dir=None)
    assert unloaded.path is None
    assert unloaded.rows == len(HOSTILE)
    kept = unload_postgres_slice(db, export_like, 2025, "CA", header=HEADER, work_dir=tmp_path)
    assert (unloaded.sha256, unloaded.crc32) == (kept.sha256, kept.crc32)
    kept.path.unlink()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("chunk_size", [1, 2, 3, 7, 64, 10_000])
def test_row_counter_ignores_newlines_inside_quotes_across_chunks(chunk_size):
    body = expected_csv([("1", "two\nlines", "x"), ("2", 'say ""hi""\n', None), ("3", "", "")])
    counter = CsvRowCounter()
    for start in range(0, len(body), chunk_size):
        counter.feed(body[start : start + chunk_size])
    assert counter.newlines == 4  # header + three records


@pytest.mark.parametrize(
    ("previous", "rows", "refused"),
    [
        (100, 80, False),  # exactly 20% less: allowed
        (100, 79, True),  # more than 20% less
        (100, 0, True),  # to zero
        (100, 150, False),  # growth is fine
        (0, 0, False),  # nothing before: nothing to compare
        (5, 4, False),
        (5, 3, True),
    ],
)
def test_shrink_guard_edges(previous, rows, refused):
    reason = shrink_refusal(previous, rows, Decimal("0.2"))
    assert (reason is not None) == refused
    if refused:
        assert str(previous) in reason and str(rows) in reason
