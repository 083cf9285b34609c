"""`encode_record` writes exactly what PostgreSQL's CSV COPY writes, byte for byte."""

from __future__ import annotations

import random

import pytest
from psycopg import sql

from loader.engines.csv_layout import encode_record

HOSTILE = [
    "plain",
    "comma, inside",
    'a "quoted" word',
    '"',
    '""',
    "two\nlines",
    "carriage\rreturn",
    "crlf\r\nline",
    "\n",
    "ñandú – 東京 – emoji 🙂",
    '=HYPERLINK("http://x")',
    "=1+2",
    " leading and trailing spaces ",
    " ",
    "\\.",
    "\\",
    "\\N",
    "NULL",
    "tab\tinside",
    "",
    None,
]
HEADER = ["Value", "Other, with comma", 'Quote "here"', "Score"]


def copy_out(db, query: sql.Composable) -> bytes:
    with db.cursor() as cursor, cursor.copy(query) as copy:
        return b"".join(bytes(block) for block in copy)


@pytest.fixture
def layout_schema(db):
    db.execute("drop schema if exists csv_layout_t cascade")
    db.execute("create schema csv_layout_t")
    yield "csv_layout_t"
    db.execute("drop schema csv_layout_t cascade")


def load_rows(db, schema: str, header: list[str], rows: list[list[str | None]]) -> None:
    columns = [sql.Identifier(name) for name in header]
    db.execute(
        sql.SQL("create table {} (n int, {})").format(
            sql.Identifier(schema, "t"),
            sql.SQL(", ").join(sql.SQL("{} text").format(c) for c in columns),
        )
    )
    with db.cursor() as cursor:
        cursor.executemany(
            sql.SQL("insert into {} values (%s, {})").format(
                sql.Identifier(schema, "t"), sql.SQL(", ").join(sql.Placeholder() * len(header))
            ),
            [(n, *row) for n, row in enumerate(rows)],
        )


def postgres_csv(db, schema: str, header: list[str]) -> bytes:
    query = sql.SQL(
        "copy (select {} from {} order by n) to stdout (format csv, header, encoding 'UTF8')"
    ).format(
        sql.SQL(", ").join(sql.Identifier(name) for name in header), sql.Identifier(schema, "t")
    )
    return copy_out(db, query)


def encoded(header: list[str], rows: list[list[str | None]]) -> bytes:
    return encode_record(header) + b"".join(encode_record(row) for row in rows)


def test_hostile_values_match_postgres(db, layout_schema):
    rows = [[value, "x", value, None] for value in HOSTILE]
    rows += [[None, value, "", value] for value in HOSTILE]
    load_rows(db, layout_schema, HEADER, rows)
    assert encoded(HEADER, rows) == postgres_csv(db, layout_schema, HEADER)


def test_single_column_quotes_the_end_of_data_marker(db, layout_schema):
    # PostgreSQL quotes a lone \. only when it would stand alone on a line.
    rows = [[value] for value in HOSTILE]
    load_rows(db, layout_schema, ["Only"], rows)
    body = postgres_csv(db, layout_schema, ["Only"])
    assert encoded(["Only"], rows) == body
    assert b'\n"\\."\n' in body
    assert encode_record(["\\.", "x"]) == b"\\.,x\n"


def test_random_values_match_postgres(db, layout_schema):
    alphabet = [",", '"', "\n", "\r", " ", "a", "é", "\\", ".", "=", "N", "🙂", "\t"]
    generator = random.Random(20250115)

    def value() -> str | None:
        if generator.random() < 0.1:
            return None
        return "".join(generator.choice(alphabet) for _ in range(generator.randint(0, 5)))

    rows = [[value() for _ in HEADER] for _ in range(2000)]
    load_rows(db, layout_schema, HEADER, rows)
    assert encoded(HEADER, rows) == postgres_csv(db, layout_schema, HEADER)


def test_rules_in_short():
    assert encode_record([None, "", "a", "a,b", 'say "hi"', "x\ny", "x\ry"]) == (
        b',"",a,"a,b","say ""hi""","x\ny","x\ry"\n'
    )
    assert encode_record([" =1 ", "ü"]) == " =1 ,ü\n".encode()
    assert encode_record([None]) == b"\n"
    assert encode_record([""]) == b'""\n'
