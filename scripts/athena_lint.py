#!/usr/bin/env python
"""Fail when SQL compiled for Athena still holds PostgreSQL-only syntax.

The models must run on Athena (Trino) as they do on PostgreSQL, with the engine differences in
dispatched macros only (macros/cross_database/). PostgreSQL never sees Athena's SQL, so nothing
else would notice a `::` cast or a `to_char()` written straight into a model: this script does,
offline, in a few seconds.

    python scripts/athena_lint.py                      # compile for athena, then lint
    python scripts/athena_lint.py --compiled-dir DIR   # lint SQL compiled earlier

How: every compiled model and test is tokenized and parsed with sqlglot's Trino dialect. Parsing
alone is not enough — sqlglot's Trino reader is lenient and would quietly accept (and rewrite)
`a::int`, `ILIKE`, `DISTINCT ON` or `to_char(...)` — so each statement is also checked for:

- tokens Trino's grammar does not have (`::`, `~` regex operators, JSON arrows `->>`, `#>`…);
- PostgreSQL type names in a type position (`text`, `numeric`, `timestamptz`, `int8`…);
- calls to PostgreSQL-only functions (`to_char`, `string_to_array`, `generate_series`,
  `trim_scale`, `date_part`…), and calls to functions neither sqlglot's Trino dialect nor
  the TRINO_FUNCTIONS list below knows;
- PostgreSQL-only constructs (ILIKE, DISTINCT ON, SIMILAR TO, `interval '1 day'`,
  `extract(epoch …)`, LATERAL over a function);
- anything sqlglot itself cannot express in Trino (generation with unsupported_level=RAISE);
- SQL that runs on both engines but means something else on Trino: a one-argument trim()
  (Trino strips every whitespace character, PostgreSQL only spaces: use macro trim_spaces)
  and a `$` anchor in regexp_like (Trino's also matches before a final newline: use macro
  fully_matches).

Then every file is parsed with Trino's own grammar (the `trino-query-parser` package: the
ANTLR grammar of Trino 422, generated for Python), which rejects what sqlglot's lenient
reader lets through.

Exit status: 0 clean, 1 findings, 2 compile or usage error.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import sqlglot
from antlr4 import CommonTokenStream, InputStream
from antlr4.error.ErrorListener import ConsoleErrorListener
from sqlglot import exp
from sqlglot.errors import ErrorLevel, ParseError, TokenError, UnsupportedError
from sqlglot.tokens import Token, TokenType
from trino_query_parser.error import TrinoErrorListener, TrinoSyntaxError
from trino_query_parser.SqlBaseLexer import SqlBaseLexer
from trino_query_parser.SqlBaseParser import SqlBaseParser

DIALECT = "trino"
PROJECT_DIR = Path(__file__).resolve().parents[1]

# Operators of PostgreSQL that Trino's grammar lacks (`->` is left alone: it is Trino's lambda).
POSTGRES_OPERATORS = {
    TokenType.DCOLON: "`::` cast: write cast(x as type)",
    TokenType.TILDE: "`~` (regex match or bitwise not): use regexp_like() / bitwise_not()",
    TokenType.DARROW: "`->>` JSON operator: use json_extract_scalar()",
    TokenType.HASH_ARROW: "`#>` JSON operator: use json_extract()",
    TokenType.DHASH_ARROW: "`#>>` JSON operator: use json_extract_scalar()",
    TokenType.LT_AT: "`<@` containment operator: use contains() / array functions",
    TokenType.AT_GT: "`@>` containment operator: use contains() / array functions",
}

# Type names PostgreSQL accepts and Trino does not (checked where a type is expected).
POSTGRES_TYPE_NAMES = {
    "text": "varchar",
    "numeric": "decimal(p, s)",
    "timestamptz": "timestamp with time zone",
    "timetz": "time with time zone",
    "bpchar": "char(n)",
    "jsonb": "json",
    "bytea": "varbinary",
    "int2": "smallint",
    "int4": "integer",
    "int8": "bigint",
    "float4": "real",
    "float8": "double",
    "serial": "integer",
    "bigserial": "bigint",
    "money": "decimal(p, s)",
    "citext": "varchar",
}

# Functions of PostgreSQL with no Trino namesake (or a different meaning), by written name.
POSTGRES_FUNCTIONS = {
    "to_char": "date_format() / format()",
    "to_number": "cast()",
    "string_to_array": "split()",
    "regexp_split_to_table": "unnest(regexp_split())",
    "regexp_split_to_array": "regexp_split()",
    "regexp_matches": "regexp_extract_all()",
    "regexp_match": "regexp_extract()",
    "generate_series": "sequence()",
    "string_agg": "listagg() / array_join(array_agg())",
    "array_to_string": "array_join()",
    "array_length": "cardinality()",
    "date_part": "extract() / year() …",
    "age": "date_diff()",
    "make_date": "date(format(...))",
    "make_timestamp": "from_iso8601_timestamp()",
    "trim_scale": "a regexp_replace() on the decimal text",
    "btrim": "trim()",
    "left": "substr()",
    "right": "substr()",
    "initcap": "a macro",
    "justify_days": "date arithmetic",
    "date_bin": "date_trunc()",
    "current_setting": "nothing (no session settings in Athena)",
    "set_config": "nothing (no session settings in Athena)",
    "jsonb_build_object": "map()/json functions",
    "json_build_object": "map()/json functions",
    "row_to_json": "cast(row as json)",
    "to_jsonb": "cast(x as json)",
}

# Trino functions that sqlglot's Trino dialect parses as unknown (Anonymous) calls.
TRINO_FUNCTIONS = {
    "to_milliseconds",
    "at_timezone",
    "with_timezone",
    "from_iso8601_date",
    "from_iso8601_timestamp",
    "to_iso8601",
    "human_readable_seconds",
    "parse_duration",
    "last_day_of_month",
    "timezone_hour",
    "timezone_minute",
    "year_of_week",
    "yow",
    "dow",
    "doy",
    "day_of_week",
    "day_of_year",
    "week_of_year",
    "regexp_split",
    "regexp_extract_all",
    "element_at",
    "cardinality",
    "array_join",
    "typeof",
    "try",
    "count_if",
    "max_by",
    "min_by",
    "arbitrary",
    "approx_distinct",
    "approx_percentile",
    "checksum",
    "from_utf8",
    "to_utf8",
    "xxhash64",
    "json_parse",
    "json_format",
    "json_size",
    "luhn_check",
    "normalize",
    "word_stem",
    "levenshtein_distance",
    "hamming_distance",
    "codepoint",
    "split_to_map",
    "url_extract_host",
}


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: [{self.rule}] {self.message}"


def lint_sql(sql: str, path: str = "<sql>") -> list[Finding]:
    """Findings for one compiled SQL text (empty when it is clean Trino)."""
    if not sql.strip():
        return []
    grammar = trino_grammar_findings(sql, path)
    try:
        tokens = sqlglot.tokenize(sql, read=DIALECT)
    except TokenError as error:
        return [Finding(path, 1, "tokenize", f"not Trino SQL: {error}")]
    findings = list(_token_findings(tokens, path))
    try:
        statements = sqlglot.parse(sql, read=DIALECT, error_level=ErrorLevel.RAISE)
    except ParseError as error:
        line = error.errors[0].get("line", 1) if error.errors else 1
        detail = error.errors[0].get("description", str(error)) if error.errors else str(error)
        findings.append(Finding(path, line or 1, "parse", f"does not parse as Trino: {detail}"))
        return _unique(findings + grammar)
    for statement in statements:
        if statement is None:
            continue
        findings.extend(_tree_findings(statement, path))
        try:
            statement.sql(dialect=DIALECT, unsupported_level=ErrorLevel.RAISE)
        except UnsupportedError as error:
            findings.append(Finding(path, 1, "unsupported", f"not expressible in Trino: {error}"))
    return _unique(findings + grammar)


def trino_grammar_findings(sql: str, path: str = "<sql>") -> list[Finding]:
    """A finding when Trino's own grammar (Trino 422's SqlBase.g4) rejects the statement."""
    # the grammar's keywords are upper case (Trino's lexer upper-cases its input the same way)
    lexer = SqlBaseLexer(InputStream(sql.strip().rstrip(";").upper()))
    parser = SqlBaseParser(CommonTokenStream(lexer))
    for recognizer in (lexer, parser):
        recognizer.removeErrorListener(ConsoleErrorListener.INSTANCE)
        recognizer.addErrorListener(TrinoErrorListener())
    try:
        parser.singleStatement()
    except TrinoSyntaxError as error:
        message = f"Trino's grammar rejects it at {error.line}:{error.column}: {error.msg}"
        return [Finding(path, error.line, "trino-grammar", message[:300])]
    return []


def _token_findings(tokens: list[Token], path: str) -> Iterator[Finding]:
    for index, token in enumerate(tokens):
        previous = tokens[index - 1] if index > 0 else None
        following = tokens[index + 1] if index + 1 < len(tokens) else None
        if token.token_type in POSTGRES_OPERATORS:
            yield Finding(path, token.line, "operator", POSTGRES_OPERATORS[token.token_type])
        text = token.text.lower()
        in_type_position = previous is not None and previous.token_type in (
            TokenType.ALIAS,
            TokenType.DCOLON,
        )
        if (
            in_type_position
            and text in POSTGRES_TYPE_NAMES
            and token.token_type not in (TokenType.IDENTIFIER, TokenType.VAR)
        ):
            yield Finding(
                path,
                token.line,
                "type",
                f"PostgreSQL type `{token.text}`: Trino calls it {POSTGRES_TYPE_NAMES[text]}",
            )
        if (
            token.token_type == TokenType.INTERVAL
            and following is not None
            and following.token_type == TokenType.STRING
            and any(character.isalpha() for character in following.text)
        ):
            yield Finding(
                path,
                token.line,
                "interval",
                f"interval '{following.text}': Trino writes interval '1' day (or use dbt.dateadd)",
            )
        is_call = (
            following is not None
            and following.token_type == TokenType.L_PAREN
            and token.token_type != TokenType.IDENTIFIER
            and (previous is None or previous.token_type not in (TokenType.ALIAS, TokenType.DOT))
        )
        if is_call and text in POSTGRES_FUNCTIONS:
            yield Finding(
                path,
                token.line,
                "function",
                f"PostgreSQL-only function {text}(): on Trino use {POSTGRES_FUNCTIONS[text]}",
            )


def _tree_findings(statement: exp.Expression, path: str) -> Iterator[Finding]:
    for node in statement.walk():
        if isinstance(node, exp.Anonymous):
            name = node.name.lower()
            if name not in TRINO_FUNCTIONS and name not in POSTGRES_FUNCTIONS:
                yield Finding(
                    path,
                    1,
                    "function",
                    f"{name}() is not a function sqlglot's Trino dialect knows; if Athena "
                    "has it, add it to TRINO_FUNCTIONS in scripts/athena_lint.py",
                )
        elif (
            isinstance(node, exp.Trim)
            and node.args.get("expression") is None
            and node.args.get("position") is None
        ):
            yield Finding(
                path,
                1,
                "trim",
                "trim(x) strips every whitespace character on Trino but only spaces on "
                "PostgreSQL: use {{ trim_spaces(x) }}",
            )
        elif (
            isinstance(node, exp.RegexpLike)
            and isinstance(node.expression, exp.Literal)
            and end_anchors(node.expression.this)
        ):
            yield Finding(
                path,
                1,
                "regex-end-anchor",
                f"regexp_like pattern '{node.expression.this}': Trino's `$` also matches before "
                "a final newline; use {{ fully_matches(x, pattern) }}, which anchors with \\z",
            )
        elif isinstance(node, exp.ILike):
            yield Finding(path, 1, "ilike", "ILIKE: Trino has none; compare lower() with LIKE")
        elif isinstance(node, exp.Distinct) and node.args.get("on") is not None:
            yield Finding(path, 1, "distinct-on", "DISTINCT ON: use row_number() over (...) = 1")
        elif isinstance(node, exp.SimilarTo):
            yield Finding(path, 1, "similar-to", "SIMILAR TO: use regexp_like()")
        elif isinstance(node, exp.Extract) and node.this.name.lower() == "epoch":
            yield Finding(path, 1, "extract-epoch", "extract(epoch ...): use to_unixtime()")
        elif isinstance(node, exp.Lateral) and isinstance(node.this, exp.Func):
            yield Finding(
                path,
                1,
                "lateral",
                "LATERAL over a function: Trino's UNNEST is lateral already; LATERAL takes a "
                "subquery",
            )


def end_anchors(pattern: str) -> list[int]:
    """Positions of the `$` anchors in a regex: unescaped and outside a character class."""
    found, in_class, index = [], False, 0
    while index < len(pattern):
        char = pattern[index]
        if char == "\\":
            index += 2
            continue
        if char == "[" and not in_class:
            in_class = True
        elif char == "]" and in_class:
            in_class = False
        elif char == "$" and not in_class:
            found.append(index)
        index += 1
    return found


def _unique(findings: Iterable[Finding]) -> list[Finding]:
    seen: dict[tuple[str, int, str, str], Finding] = {}
    for finding in findings:
        seen.setdefault((finding.path, finding.line, finding.rule, finding.message), finding)
    return list(seen.values())


def lint_directory(compiled_dir: Path) -> list[Finding]:
    """Findings for every .sql file under a dbt `target/compiled` directory."""
    findings: list[Finding] = []
    for path in sorted(compiled_dir.rglob("*.sql")):
        relative = str(path.relative_to(compiled_dir))
        findings.extend(lint_sql(path.read_text(encoding="utf-8"), relative))
    return findings


# Placeholders for the athena target of profiles.example.yml: compiling never connects.
OFFLINE_ATHENA_ENV = {
    "AWS_ACCESS_KEY_ID": "offline",
    "AWS_SECRET_ACCESS_KEY": "offline",
    "AWS_DEFAULT_REGION": "us-west-2",
    "MIPS_ATHENA_S3_STAGING_DIR": "s3://offline-compile/staging/",
}


@contextlib.contextmanager
def offline_env() -> Iterator[None]:
    """The placeholders, where the environment has no real values; restored afterwards."""
    added = [key for key in OFFLINE_ATHENA_ENV if key not in os.environ]
    for key in added:
        os.environ[key] = OFFLINE_ATHENA_ENV[key]
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)


def athena_dbt_args(project_dir: Path, profiles_dir: Path, target_dir: Path) -> list[str]:
    """The options of an offline dbt invocation for the athena target (after the command)."""
    return [
        "--quiet",
        "--target",
        "athena",
        "--project-dir",
        str(project_dir),
        "--profiles-dir",
        str(profiles_dir),
        "--target-path",
        str(target_dir),
        "--log-path",
        str(target_dir / "logs"),
        # manifest.json is read after (whatever DBT_WRITE_JSON says)
        "--write-json",
    ]


def compile_for_athena(
    project_dir: Path, target_dir: Path, profiles_dir: Path | None = None, *, manifest=None
) -> Path:
    """`dbt compile --target athena` offline into target_dir; returns its compiled/ directory.

    `manifest`: dbt's parsed manifest of the same invocation options, when the caller parsed
    already (it compiles more afterwards, tests/support/athena_duckdb.py), so nothing is parsed
    twice."""
    from dbt.cli.main import dbtRunner

    with offline_env(), tempfile.TemporaryDirectory(prefix="athena-lint-profiles-") as scratch:
        if profiles_dir is None:
            profiles_dir = Path(scratch)
            shutil.copy(project_dir / "profiles.example.yml", profiles_dir / "profiles.yml")
        result = dbtRunner(manifest=manifest).invoke(
            [
                "compile",
                "--no-populate-cache",
                *athena_dbt_args(project_dir, profiles_dir, target_dir),
            ]
        )
    if not result.success:
        raise RuntimeError(f"dbt compile --target athena failed: {result.exception or 'see log'}")
    return target_dir / "compiled"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--compiled-dir", type=Path, help="lint this compiled/ dir, no compile")
    parser.add_argument("--project-dir", type=Path, default=PROJECT_DIR)
    parser.add_argument("--profiles-dir", type=Path, default=None)
    options = parser.parse_args(argv)

    if options.compiled_dir is not None:
        if not options.compiled_dir.is_dir():
            print(f"no such directory: {options.compiled_dir}", file=sys.stderr)
            return 2
        findings = lint_directory(options.compiled_dir)
        checked = sum(1 for _ in options.compiled_dir.rglob("*.sql"))
    else:
        with tempfile.TemporaryDirectory(prefix="athena-lint-target-") as target:
            try:
                compiled = compile_for_athena(
                    options.project_dir.resolve(), Path(target), options.profiles_dir
                )
            except RuntimeError as error:
                print(error, file=sys.stderr)
                return 2
            findings = lint_directory(compiled)
            checked = sum(1 for _ in compiled.rglob("*.sql"))
    for finding in findings:
        print(finding)
    print(f"athena lint: {checked} compiled files, {len(findings)} findings", file=sys.stderr)
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
