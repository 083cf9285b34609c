"""Write-audit-publish on Athena, as far as the offline stand-in goes (docs/athena.md).

The hooks' Athena statements are rendered offline by dbt (`dbt compile --inline` on the athena
target) and run in DuckDB over the suite's Athena build (tests/support/athena_duckdb.py):
publication renames the tested marts into the published schema under the build's suffix and
leaves views behind; a build that ends before publication changes nothing the loader reads;
the `finished` row of a failed build names the failing test first, as the loader reads it.
What only Athena can show (Glue's rename of an Iceberg table, Iceberg's commit of the log row)
is not proven here.
"""

from __future__ import annotations

from collections import Counter

import psycopg
import pytest

from loader.engines.athena import AthenaPublished
from loader.marts.build_log import BUILD_LOG_COLUMNS, BuildRecord, build_history
from tests.support.athena_duckdb import AthenaOnDuckDB
from tests.support.model_scenarios import PRODUCTION, PROJECT_DIR

SUFFIX = "__p20260115093000_1a2b3c4d"
BUILT = "mips_analytics"  # the athena target's schema in profiles.example.yml
PUBLISHED = f"{BUILT}_published"
MARTS = ["mips_deliveries", "mips_expected_years", "mips_export_v1"]


@pytest.fixture(scope="module")
def athena(athena_compilation, production_build, cluster) -> AthenaOnDuckDB:
    assert production_build.success, production_build.error
    engine = AthenaOnDuckDB(athena_compilation.manifest, PROJECT_DIR)
    with psycopg.connect(cluster.conninfo(), autocommit=True) as pg:
        engine.load_sources_from_postgres(
            pg, {"app": PRODUCTION.app_schema, "forms": PRODUCTION.forms_schema}
        )
    engine.load_seeds()
    engine.build_models()
    return engine


def rows(athena: AthenaOnDuckDB, relation: str) -> Counter:
    return Counter(athena.connection.execute(f"select * from {relation}").fetchall())


def run(athena: AthenaOnDuckDB, statements: list[str]) -> None:
    for statement in statements:
        for duckdb_sql in athena.transpiler.statements_to_duckdb(statement):
            athena.connection.execute(duckdb_sql)


@pytest.fixture(scope="module")
def published(athena, athena_compilation) -> dict[str, Counter]:
    """The marts as built, then published the way the on-run-end hook publishes on Athena."""
    built = {mart: rows(athena, f'"{BUILT}"."{mart}"') for mart in MARTS}
    rendered = athena_compilation.render(
        "{% for statement in healthmonix_mips.athena_publication_statements("
        f"healthmonix_mips.all_mart_relation_names(), '{SUFFIX}') %}}"
        "{{ statement }};\n{% endfor %}"
    )
    statements = [s.strip() for s in rendered.split(";\n") if s.strip()]
    assert statements == [
        f"create schema if not exists `{PUBLISHED}`",
        *[
            line
            for mart in MARTS
            for line in (
                f"alter table `{BUILT}`.`{mart}` rename to `{PUBLISHED}`.`{mart}{SUFFIX}`",
                f'create or replace view "{BUILT}"."{mart}" as select * from '
                f'"{PUBLISHED}"."{mart}{SUFFIX}"',
            )
        ],
    ]
    run(athena, statements)
    assert athena.transpiler.fixups["iceberg_rename_across_schemas"] == len(MARTS)
    return built


def publication_record() -> BuildRecord:
    history = [
        ["build-1", "finished", "build", "", "2026-01-15 09:30:00.000", "2026-01-15 09:31:00.000",
         True, True, True, PUBLISHED, SUFFIX, MARTS, [], 0, 0, 0, 0],
    ]  # fmt: skip
    latest, publication = build_history(history, history)
    assert latest == publication and publication is not None
    return publication


def test_publication_moves_the_tested_marts_under_the_builds_suffix(athena, published):
    for mart in MARTS:
        assert rows(athena, f'"{PUBLISHED}"."{mart}{SUFFIX}"') == published[mart], mart
        # the target schema keeps a view of what was published (analytics engineers, dbt test)
        kind = athena.connection.execute(
            "select table_type from information_schema.tables "
            "where table_schema = ? and table_name = ?",
            [BUILT, mart],
        ).fetchone()[0]
        assert kind == "VIEW"
        assert rows(athena, f'"{BUILT}"."{mart}"') == published[mart]
    # the loader reads exactly the tables the publication made
    read = AthenaPublished(client=None, latest=None, publication=publication_record())
    export = read.published_relation(athena.relation_of("mips_export", 1))
    assert export == f'"{PUBLISHED}"."mips_export_v1{SUFFIX}"'
    assert rows(athena, export) == published["mips_export_v1"]


def test_a_build_that_ends_before_publication_changes_nothing_the_loader_reads(athena, published):
    # the sources change and the next build writes its marts, then stops before publishing
    appointments = [
        s["relation_name"]
        for s in athena.manifest["sources"].values()
        if s["identifier"] == "appointments"
    ][0]
    athena.connection.execute(f"update {appointments} set status = 'cancelled' where id % 3 = 0")
    athena.build_models()
    rebuilt = rows(athena, f'"{BUILT}"."mips_export_v1"')
    assert rebuilt != published["mips_export_v1"], "the unpublished build changed the export"
    for mart in MARTS:
        assert rows(athena, f'"{PUBLISHED}"."{mart}{SUFFIX}"') == published[mart], mart


def test_a_failed_build_names_its_failing_test_first_in_the_athena_log(athena_compilation, athena):
    failing = "test.healthmonix_mips.matches_pattern_stg_app__clinicians_npi___0_9_10_.5b3f2e1a9c"
    values = athena_compilation.render(
        "{{ healthmonix_mips.build_log_values({"
        "'invocation_id': 'build-2', 'event': 'finished', 'command': 'build',"
        " 'selection': 'selector=daily', 'started_at': '2026-01-16 09:30:00.000000',"
        " 'completed_at': '2026-01-16 09:31:00.000000', 'success': false,"
        " 'touched_marts': true, 'published': false, 'published_schema': none,"
        " 'publication_suffix': none, 'marts_built': ['mips_expected_years'],"
        f" 'failed_nodes': ['{failing}'], 'errors': 1, 'failures': 0, 'warnings': 2,"
        " 'skipped': 19, 'dbt_version': '1.11.0', 'target_name': 'athena'},"
        " 'timestamp(6)', 'array(varchar)') }}"
    )
    columns = [*BUILD_LOG_COLUMNS, "dbt_version", "target_name"]
    query = f"select * from (values ({values})) as log ({', '.join(columns)})"
    row = athena.connection.execute(athena.transpiler.to_duckdb(query)).fetchone()
    latest, publication = build_history([row[: len(BUILD_LOG_COLUMNS)]], [])
    assert publication is None and latest is not None and not latest.success
    assert latest.what_failed() == (
        "test matches_pattern_stg_app__clinicians_npi___0_9_10_ errored; +19 skipped"
    )
    assert latest.describe().startswith("dbt build (selector=daily) build-2, finished")
