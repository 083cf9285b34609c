"""dbt writes the build log itself (the on-run-end hook of macros/record_build.sql): real dbt
invocations on the embedded PostgreSQL, then the rows they left in mips_build_log."""

from __future__ import annotations

import psycopg
import pytest

from loader.environment.dbt_invocation import DAILY_BUILD
from tests.support.model_scenarios import BUILD_WITHOUT_UNIT_TESTS, SCRATCH, listed_nodes

APP_SCHEMA = SCRATCH.app_schema
TARGET_SCHEMA = SCRATCH.models_schema


@pytest.fixture(scope="module")
def target(cluster, project_options):
    with psycopg.connect(cluster.conninfo(), autocommit=True) as conn:
        SCRATCH.fresh(conn, seed=5, scale=0.05)
        yield conn


MARTS = [
    "mips_deliveries",
    "mips_expected_years",
    "mips_export_v1",
    "mips_export_v1_part_0",
    "mips_export_v1_part_1",
]
# `dbt build` of the configuration check, its parents and every model after it
CHECK = ("build", "--select", "+int_configuration_errors+", "--exclude-resource-type", "unit_test")
PUBLISHED = f"{TARGET_SCHEMA}_published"


def logged(conn, invocation_id):
    """The invocation's `finished` row, after checking its `started` row came first."""
    events = conn.execute(
        f"select event, started_at from {TARGET_SCHEMA}.mips_build_log "
        "where invocation_id = %s order by event desc",
        (invocation_id,),
    ).fetchall()
    assert [e for e, _ in events] == ["started", "finished"] and events[0][1] == events[1][1]
    return conn.execute(
        "select command, selection, success, touched_marts, published, marts_built, errors, "
        "failures, skipped, failed_nodes, completed_at >= started_at "
        f"from {TARGET_SCHEMA}.mips_build_log where invocation_id = %s and event = 'finished'",
        (invocation_id,),
    ).fetchone()


def published_by(conn) -> list[tuple]:
    return conn.execute(
        f"select distinct dbt_invocation_id from {PUBLISHED}.mips_deliveries"
    ).fetchall()


def test_invocations_are_recorded_with_what_they_did(target, project_options):
    good = SCRATCH.run(project_options, *BUILD_WITHOUT_UNIT_TESTS)
    assert good.success, good.error
    assert logged(target, good.invocation_id) == (
        "build", "", True, True, True, MARTS, 0, 0, 0, [], True,
    )  # fmt: skip
    assert published_by(target) == [(good.invocation_id,)]
    # the target schema's marts read what was published
    assert target.execute(
        f"select distinct dbt_invocation_id from {TARGET_SCHEMA}.mips_deliveries"
    ).fetchall() == [(good.invocation_id,)]

    staging = SCRATCH.run(project_options, "build", "-s", "staging")
    assert staging.success
    command, selection, success, touched, published, built, *_ = logged(
        target, staging.invocation_id
    )
    assert (selection, success, touched, published, built) == (
        "select=staging", True, False, False, [],
    )  # fmt: skip

    tested = SCRATCH.run(project_options, "test", "-s", "mips_deliveries")
    assert tested.success
    assert logged(target, tested.invocation_id)[:6] == (
        "test", "select=mips_deliveries", True, True, False, [],
    )  # fmt: skip

    # `dbt run` builds every mart and tests none: it publishes nothing
    ran = SCRATCH.run(project_options, "run")
    assert ran.success
    assert logged(target, ran.invocation_id)[:6] == ("run", "", True, True, False, MARTS)
    assert published_by(target) == [(good.invocation_id,)]

    # nor does a `dbt build` of every mart that leaves the daily data tests out (one left out
    # is the same rule: daily_nodes_left_out), nor one that ran every daily test but left an
    # upstream model out (its marts were built over the last build's int_visits_dated): what
    # either would publish was never tested as the daily build tests it
    for left_out in (["--exclude-resource-type", "test"], ["--exclude", "int_visits_dated"]):
        partial = SCRATCH.run(project_options, *BUILD_WITHOUT_UNIT_TESTS, *left_out)
        assert partial.success, (left_out, partial.error)
        assert logged(target, partial.invocation_id)[2:6] == (True, True, False, MARTS), left_out
        assert published_by(target) == [(good.invocation_id,)], left_out


def test_publication_asks_for_exactly_what_the_daily_selector_runs(target, project_options):
    """daily_nodes_left_out (macros/record_build.sql) restates selectors.yml's `daily` in Jinja:
    with nothing run, it names exactly the nodes `dbt build --selector daily` runs, so the
    two cannot drift apart (a stricter rule would never publish, a looser one would publish
    what the daily build tests less)."""
    from dbt.cli.main import dbtRunner

    inline = "{{ healthmonix_mips.daily_nodes_left_out([]) | join(' ') }}"
    with SCRATCH.models_environment():
        daily = set(listed_nodes(project_options, *DAILY_BUILD[1:], *SCRATCH.dbt_args()))
        compiled = dbtRunner().invoke(
            ["--quiet", "compile", "--no-populate-cache", "--inline", inline,
             *SCRATCH.dbt_args(), *project_options.dbt_args()]
        )  # fmt: skip
    assert compiled.success, compiled.exception
    required = set(compiled.result.results[0].node.compiled_code.split())
    assert len(daily) > 100 and required == daily


def test_selection_text_with_a_quote_is_stored_as_given(target, project_options):
    quoted = SCRATCH.run(
        project_options, "test", "-s", "stg_app__states", "--exclude", "tag:o'brien"
    )
    assert quoted.success, quoted.error
    assert logged(target, quoted.invocation_id)[:4] == (
        "test", "select=stg_app__states exclude=tag:o'brien", True, False,
    )  # fmt: skip


def test_a_failed_build_is_recorded_with_its_failed_nodes_and_publishes_nothing(
    target, project_options
):
    before = published_by(target)
    key = "healthmonix_2025_integration_enabled"
    target.execute(f"update {APP_SCHEMA}.settings set value = 'yes' where key = %s", (key,))
    try:
        # the configuration check, what it reads and what it guards (every mart): a whole
        # build failing the same way is test_deploy's failing day
        failed = SCRATCH.run(project_options, *CHECK)
    finally:
        target.execute(f"update {APP_SCHEMA}.settings set value = 'true' where key = %s", (key,))
    assert not failed.success
    command, _, success, touched, published, built, errors, _, skipped, nodes, _ = logged(
        target, failed.invocation_id
    )
    assert (command, success, touched, published) == ("build", False, True, False)
    assert "mips_deliveries" not in built
    assert errors >= 1 and skipped >= 1
    # the failed nodes only (skipped ones are counted): the configuration check
    assert nodes == ["model.healthmonix_mips.int_configuration_errors"]
    assert before and published_by(target) == before


def test_a_visit_that_reaches_the_export_twice_is_refused_by_its_primary_key(
    target, project_options
):
    """The daily fan-out guard of the visit joins on PostgreSQL (docs/models.md, "The daily
    build"): two rows of one visit share their row numbers (`dense_rank`), so the primary key
    of the export's part that holds the visit's file refuses the table while it is built,
    before any test. The row-order test, which sees the same, is weekly there. A form doubled
    in the intermediate table stands in for a join that fans out. (The other part, rebuilt,
    drops the target schema's view of the parts with its old table: the published export is
    what stays as it was.)"""
    export = f"{PUBLISHED}.mips_export_v1"
    forms = f"{TARGET_SCHEMA}.int_visit_forms_selected"
    before = published_by(target)
    rows_before = target.execute(f"select count(*) from {export}").fetchone()
    (visit,) = target.execute(
        f"select cast(visit_id as bigint) from {export} where instrument is not null limit 1"
    ).fetchone()
    target.execute(f"insert into {forms} select * from {forms} where visit_id = %s", (visit,))
    try:
        # the export's rows, its two parts and the view of them
        doubled = SCRATCH.run(project_options, "run", "-s", "int_export_rows+")
        # where an operator looks next (docs/operations.md): the view's weekly key test
        located = SCRATCH.run(project_options, "test", "-s", "int_visit_measures_unioned")
    finally:
        target.execute(
            f"delete from {forms} as later using {forms} as first "
            "where later.visit_id = first.visit_id and later.ctid > first.ctid"
        )
    assert not doubled.success
    (failure,) = doubled.failures
    assert "Key (performance_year, state_code, file_row_number)=" in failure, failure
    assert "is duplicated" in failure, failure
    assert not located.success
    # its key test (year, state, row number) finds the visit's three numbers twice
    assert located.failures == ("Got 3 results, configured to fail if != 0",)
    assert target.execute(f"select count(*) from {export}").fetchone() == rows_before
    assert published_by(target) == before
