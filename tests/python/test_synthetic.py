"""The synthetic source data: deterministic, covering every edge the export rules name."""

from __future__ import annotations

import time
from datetime import date

import psycopg
import pytest
from psycopg import errors, sql

from loader.clock import SYNTHETIC_TIME_ZONE, today_in
from loader.environment.source_schema import APP_TABLES, FORMS_TABLE, create_source_schema
from loader.environment.synthetic import COUNTED_TABLES, generate

# The data's "today" for tests that assert exact data: the generator's output does not move
# with the calendar. (2026-06-30 is the date the generator used before it took one.)
AS_OF = date(2026, 6, 30)

BODY_PART_TYPES = {
    "neck",
    "shoulder_arm",
    "lower_back",
    "hip",
    "hip_joint_replacement",
    "foot_and_ankle",
    "knee",
    "knee_joint_replacement",
    "other",
    "pelvis",
    "upper_back",
    "wrist_hand",
}
PRODUCTION_SETTINGS = {
    ("healthmonix_2022_states", "CA", "list"),
    ("healthmonix_2022_integration_enabled", "false", "boolean"),
    ("healthmonix_2022_strictly_contained", "true", "boolean"),
    ("healthmonix_2023_states", "AZ,CA,FL,IL,TX,WA", "list"),
    ("healthmonix_2023_integration_enabled", "true", "boolean"),
    ("healthmonix_2023_strictly_contained", "false", "boolean"),
    ("healthmonix_2024_states", "AZ,CA,FL,IL,TX,WA,GA,NY,CO", "list"),
    ("healthmonix_2024_integration_enabled", "true", "boolean"),
    ("healthmonix_2024_strictly_contained", "false", "boolean"),
    ("healthmonix_2025_states", "AZ,CA,FL,IL,TX,WA,GA,NY,CO", "list"),
    ("healthmonix_2025_integration_enabled", "true", "boolean"),
    ("healthmonix_2025_strictly_contained", "false", "boolean"),
}
PROGRAM_SETTING_PATTERN = r"^healthmonix_[0-9]+_(states|integration_enabled|strictly_contained)$"


def fingerprints(conn, app_schema: str, forms_schema: str) -> dict[str, str]:
    """An md5 over each table's rows in id order."""
    tables = {table: sql.Identifier(app_schema, table) for table in APP_TABLES}
    tables[FORMS_TABLE] = sql.Identifier(forms_schema, FORMS_TABLE)
    query = sql.SQL("select md5(string_agg(t::text, E'\\n' order by t.id)) from {} as t")
    return {
        name: conn.execute(query.format(identifier)).fetchone()[0]
        for name, identifier in tables.items()
    }


def scalar(conn, query: str):
    return conn.execute(query).fetchone()[0]


@pytest.fixture(scope="module")
def synthetic(cluster):
    """One small data set (schema `app_cov`, forms in `forms_cov`) for the coverage checks."""
    with psycopg.connect(cluster.conninfo(), autocommit=True) as conn:
        counts = generate(
            conn, seed=42, scale=0.1, app_schema="app_cov", forms_schema="forms_cov", as_of=AS_OF
        )
        conn.execute("set search_path = app_cov, forms_cov")
        yield conn, counts


def test_same_seed_gives_identical_tables_and_another_seed_does_not(db):
    first = generate(
        db, seed=7, scale=0.05, app_schema="app_det", forms_schema="app_det", as_of=AS_OF
    )
    before = fingerprints(db, "app_det", "app_det")
    again = generate(
        db, seed=7, scale=0.05, app_schema="app_det", forms_schema="app_det", as_of=AS_OF
    )
    assert again == first
    assert fingerprints(db, "app_det", "app_det") == before

    generate(db, seed=8, scale=0.05, app_schema="app_det", forms_schema="app_det", as_of=AS_OF)
    after = fingerprints(db, "app_det", "app_det")
    for table in ("patients", "injuries", "care_plans", "appointments", FORMS_TABLE):
        assert after[table] != before[table], table
    # reference data does not depend on the seed
    for table in ("states", "regions", "settings"):
        assert after[table] == before[table], table


def test_counts_are_returned_for_every_table_and_match_the_tables(synthetic):
    conn, counts = synthetic
    assert tuple(counts) == COUNTED_TABLES
    for table, rows in counts.items():
        assert scalar(conn, f"select count(*) from {table}") == rows, table
    assert counts["care_plans"] == 1000
    assert 6 <= counts["appointments"] / counts["care_plans"] <= 10


def test_forms_live_in_the_forms_schema(synthetic):
    conn, _ = synthetic
    schemas = conn.execute(
        "select table_schema, count(*) from information_schema.tables"
        " where table_schema in ('app_cov', 'forms_cov') group by 1 order by 1"
    ).fetchall()
    assert schemas == [("app_cov", len(APP_TABLES)), ("forms_cov", 1)]


def test_states_are_production_ones_plus_unlisted(synthetic):
    conn, _ = synthetic
    codes = {row[0] for row in conn.execute("select postal_abbreviation from states")}
    assert {"AZ", "CA", "FL", "IL", "TX", "WA", "GA", "NY", "CO"} < codes
    assert {"OR", "NV", "UT"} <= codes
    assert scalar(conn, "select min(n) from (select count(*) n from regions group by state_id) r")


def test_free_text_has_commas_quotes_and_non_ascii(synthetic):
    conn, _ = synthetic
    text = scalar(
        conn,
        "select (select string_agg(name, '|') from states)"
        " || (select string_agg(name, '|') from regions)"
        " || (select string_agg(first_name || ' ' || last_name, '|') from clinicians)",
    )
    for awkward in (",", '"', "'", "\n", "é", "ʻ"):
        assert awkward in text, repr(awkward)


def test_clinician_identifiers_are_digit_strings(synthetic):
    conn, _ = synthetic
    assert scalar(conn, "select bool_and(npi ~ '^[0-9]{10}$') from clinicians")
    assert scalar(conn, "select bool_and(tin ~ '^[0-9]{9}$') from clinicians")
    assert scalar(conn, "select count(distinct npi) = count(*) from clinicians")
    # several clinicians bill under one practice TIN
    assert scalar(conn, "select count(distinct tin) < count(*) from clinicians")


def test_every_body_part_type_including_an_unmapped_one(synthetic):
    conn, _ = synthetic
    seen = {row[0] for row in conn.execute("select distinct body_part_type from injuries")}
    assert seen == BODY_PART_TYPES
    assert scalar(conn, "select count(distinct surgical) from injuries") == 2
    assert scalar(
        conn,
        "select bool_and(i.onset_date < c.start_date)"
        " from care_plans c join injuries i on i.id = c.injury_id",
    )
    # an injury belongs to the care plan's patient, and injury ids are not plan ids
    assert scalar(
        conn,
        "select bool_and(i.patient_id = c.patient_id) and bool_or(i.id <> c.id)"
        " from care_plans c join injuries i on i.id = c.injury_id",
    )


def test_patients_include_minors_and_every_sex(synthetic):
    conn, _ = synthetic
    sexes = {row[0] for row in conn.execute("select distinct sex from patients")}
    assert sexes == {"female", "male", "other", "unknown", None}
    minors = scalar(
        conn,
        "select count(*) from care_plans c join patients p on p.id = c.patient_id"
        " where c.start_date < p.date_of_birth + interval '18 years'",
    )
    turning_18 = scalar(
        conn,
        "select count(*) from care_plans c join patients p on p.id = c.patient_id"
        " where c.start_date = p.date_of_birth + interval '18 years'",
    )
    assert minors > 0
    assert turning_18 > 0


def test_care_plans_cover_statuses_payers_and_year_edges(synthetic):
    conn, _ = synthetic
    payers = {row[0] for row in conn.execute("select distinct payer_type from care_plans")}
    assert payers == {
        "medicare",
        "medicare_advantage",
        "medicaid",
        "commercial",
        "workers_comp",
        "self_pay",
        "other",
    }
    assert scalar(conn, "select count(*) from care_plans where status = 'cancelled'")
    assert scalar(
        conn, "select count(*) from care_plans where status = 'active' and end_date is null"
    )
    # active for years without a discharge: not strictly contained in any year
    assert scalar(
        conn,
        "select count(*) from care_plans"
        " where status = 'active' and end_date is null and start_date < date '2025-01-01'",
    )
    assert scalar(
        conn,
        "select count(*) from care_plans where status = 'discharged' and end_date is not null",
    )
    dates = conn.execute("select min(start_date), max(start_date) from care_plans").fetchone()
    assert dates[0] >= date(2021, 6, 1)
    assert dates[1] <= date(2026, 6, 30)
    for year in (2022, 2023, 2024, 2025):
        first, last = date(year, 1, 1), date(year, 12, 31)
        inside = scalar(
            conn,
            f"select count(*) from care_plans where start_date >= '{first}'"
            f" and end_date <= '{last}'",
        )
        spanning = scalar(
            conn,
            f"select count(*) from care_plans where start_date < '{first}'"
            f" and (end_date is null or end_date > '{last}')",
        )
        crossing_new_year = scalar(
            conn,
            f"select count(*) from care_plans where start_date <= '{last}'"
            f" and end_date > '{last}' and end_date < '{year + 1}-12-31'",
        )
        assert inside and spanning and crossing_new_year, year
    assert scalar(
        conn,
        "select count(*) from care_plans where start_date < '2023-01-01'"
        " and end_date > '2023-12-31'",
    )


def test_appointments_cover_every_status_and_visit_type(synthetic):
    conn, _ = synthetic
    pairs = set(conn.execute("select distinct status, visit_type from appointments").fetchall())
    for status in ("completed", "cancelled", "no_show", "scheduled"):
        for visit_type in ("evaluation", "treatment", "re_evaluation", "discharge"):
            assert (status, visit_type) in pairs
    # completed visits in cancelled plans: eligibility must drop them
    assert scalar(
        conn,
        "select count(*) from appointments a join care_plans c on c.id = a.care_plan_id"
        " where c.status = 'cancelled' and a.status = 'completed'",
    )
    assert scalar(
        conn,
        "select count(*) from care_plans c where not exists"
        " (select from appointments a where a.care_plan_id = c.id)",
    )


def test_visits_on_both_sides_of_new_year_in_los_angeles(synthetic):
    conn, _ = synthetic
    rows = conn.execute(
        "select extract(year from starts_at at time zone 'America/Los_Angeles')::int,"
        "   (starts_at at time zone 'UTC')::date,"
        "   bool_or(exists (select from patient_forms_mips f where f.appointment_id = a.id))"
        " from appointments a"
        " where to_char(starts_at at time zone 'America/Los_Angeles', 'MM-DD HH24:MI')"
        "   = '12-31 23:30' and status = 'completed'"
        " group by 1, 2 order by 1"
    ).fetchall()
    by_year = {year: (utc_date, has_form) for year, utc_date, has_form in rows}
    for year in (2022, 2023, 2024):
        assert by_year[year] == (date(year + 1, 1, 1), True), year
    after_midnight = {
        row[0]
        for row in conn.execute(
            "select distinct extract(year from starts_at at time zone 'America/Los_Angeles')::int"
            " from appointments"
            " where to_char(starts_at at time zone 'America/Los_Angeles', 'MM-DD HH24:MI')"
            "   = '01-01 00:30'"
        )
    }
    assert {2023, 2024, 2025} <= after_midnight


def test_forms_cover_multiples_ties_orphans_and_missing_scores(synthetic):
    conn, _ = synthetic
    multi = scalar(
        conn,
        "select count(*) from (select appointment_id from patient_forms_mips"
        " where appointment_id is not null group by 1 having count(*) > 1) m",
    )
    ties = scalar(
        conn,
        "select count(*) from (select appointment_id from patient_forms_mips"
        " where appointment_id is not null group by appointment_id, completed_at"
        " having count(*) > 1) t",
    )
    # latest completed_at is not always the highest id: ordering by id alone is wrong
    out_of_order = scalar(
        conn,
        "select count(*) from patient_forms_mips a join patient_forms_mips b"
        " on a.appointment_id = b.appointment_id and a.id < b.id"
        " and a.completed_at > b.completed_at",
    )
    assert multi and ties and out_of_order
    assert scalar(conn, "select count(*) from patient_forms_mips where appointment_id is null")
    assert scalar(conn, "select count(*) from patient_forms_mips where functional_score is null")
    assert scalar(conn, "select count(*) from patient_forms_mips where nprs_score is null")
    assert scalar(
        conn,
        "select count(*) from patient_forms_mips f join appointments a on a.id = f.appointment_id"
        " where a.status <> 'completed'",
    )
    assert scalar(conn, "select count(*) from appointments where status = 'completed'") > scalar(
        conn, "select count(distinct appointment_id) from patient_forms_mips"
    )
    # forms agree with their appointment's care plan and patient
    assert scalar(
        conn,
        "select bool_and(f.care_plan_id = a.care_plan_id and f.patient_id = c.patient_id)"
        " from patient_forms_mips f join appointments a on a.id = f.appointment_id"
        " join care_plans c on c.id = a.care_plan_id",
    )


def test_scores_use_each_instruments_scale_and_precision(synthetic):
    conn, _ = synthetic
    instruments = {
        row[0] for row in conn.execute("select distinct instrument from patient_forms_mips")
    }
    assert instruments == {
        "NDI",
        "QUICKDASH",
        "MDQ",
        "LEFS",
        "KOS",
        "PROMIS_PF",
        "PROMIS_PI",
        "PROMIS_UE",
    }
    texts = {
        row[0]
        for row in conn.execute(
            "select functional_score::text from patient_forms_mips"
            " where functional_score is not null"
        )
    }
    assert {"40.00", "50.00"} <= texts
    assert any(t.endswith(".50") for t in texts)
    assert any(t.isdigit() for t in texts)
    assert any("." in t and not t.endswith("0") for t in texts)
    assert scalar(conn, "select bool_and(nprs_score between 0 and 10) from patient_forms_mips")
    whole_pain_scores = scalar(
        conn,
        "select avg((nprs_score = trunc(nprs_score))::int) from patient_forms_mips",
    )
    assert whole_pain_scores > 0.9
    # the primary instrument follows the body part
    pairs = set(
        conn.execute(
            "select distinct i.body_part_type, f.instrument from patient_forms_mips f"
            " join care_plans c on c.id = f.care_plan_id join injuries i on i.id = c.injury_id"
            " where f.instrument not like 'PROMIS%'"
        ).fetchall()
    )
    assert ("neck", "NDI") in pairs and ("shoulder_arm", "QUICKDASH") in pairs
    assert ("lower_back", "MDQ") in pairs and ("knee", "KOS") in pairs
    assert ("hip", "LEFS") in pairs and ("knee", "LEFS") in pairs
    assert not [pair for pair in pairs if pair[0] == "neck" and pair[1] != "NDI"]


def test_settings_are_exactly_production_plus_unrelated_rows(synthetic):
    conn, _ = synthetic
    rows = conn.execute("select key, value, setting_type from settings").fetchall()
    program = {row for row in rows if _is_program_setting(conn, row[0])}
    assert program == PRODUCTION_SETTINGS
    assert len(rows) > len(program)


def test_settings_none_leaves_out_every_program_year_setting(db):
    generate(
        db, seed=1, scale=0.01, app_schema="app_alpha", forms_schema="app_alpha", settings="none"
    )
    keys = [row[0] for row in db.execute("select key from app_alpha.settings")]
    assert keys
    assert not [key for key in keys if _is_program_setting(db, key)]


def _is_program_setting(conn, key: str) -> bool:
    return conn.execute("select %s ~ %s", (key, PROGRAM_SETTING_PATTERN)).fetchone()[0]


def test_foreign_keys_and_checks_are_enforced(db):
    generate(db, seed=3, scale=0.01, app_schema="app_fk", forms_schema="app_fk")
    with pytest.raises(errors.ForeignKeyViolation):
        db.execute(
            "insert into app_fk.appointments values (-1, -1, 1, now(), 'completed', 'treatment')"
        )
    with pytest.raises(errors.CheckViolation):
        db.execute("insert into app_fk.appointments values (-1, 1, 1, now(), 'done', 'treatment')")
    with pytest.raises(errors.CheckViolation):
        db.execute(
            "insert into app_fk.patient_forms_mips values (-1, null, 1, 1, 'NDI', 10, 11, now())"
        )
    with pytest.raises(errors.UniqueViolation):
        db.execute("insert into app_fk.settings values (-1, 'default_time_zone', 'UTC', 'string')")
    # forms are synced from Athena: they reference nothing
    db.execute("insert into app_fk.patient_forms_mips values (-1, -5, -5, -5, 'NDI', 10, 5, now())")
    # new body parts can appear in the application
    db.execute("insert into app_fk.injuries values (-1, 1, 'elbow', false, null)")


def test_empty_source_schema_with_odd_names(db):
    app_schema, forms_schema = 'App "Odd"; drop', "forms-odd"
    create_source_schema(db, app_schema, forms_schema, drop_existing=True)
    tables = db.execute(
        "select table_schema, table_name from information_schema.tables"
        " where table_schema in (%s, %s)",
        (app_schema, forms_schema),
    ).fetchall()
    assert sorted(tables) == sorted(
        [(app_schema, table) for table in APP_TABLES] + [(forms_schema, FORMS_TABLE)]
    )
    counts = generate(db, seed=5, scale=0.01, app_schema=app_schema, forms_schema=forms_schema)
    assert counts["appointments"] > 0
    with pytest.raises(psycopg.errors.DuplicateTable):
        create_source_schema(db, app_schema, forms_schema)


def test_scale_0_1_is_fast(db):
    started = time.monotonic()
    counts = generate(db, seed=11, scale=0.1, app_schema="app_fast", forms_schema="app_fast")
    assert time.monotonic() - started < 10
    assert counts["care_plans"] == 1000


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"scale": 0}, "scale"),
        ({"scale": float("nan")}, "scale"),
        ({"settings": "alpha"}, "settings"),
        ({"seed": 2**64}, "seed"),
        ({"as_of": date(2021, 6, 1)}, "as_of"),
        ({"as_of": "2026-01-15"}, "as_of"),
    ],
)
def test_bad_arguments_are_refused(db, kwargs, message):
    arguments = {"seed": 1, "scale": 0.01, "app_schema": "app_bad", "forms_schema": "app_bad"}
    with pytest.raises(ValueError, match=message):
        generate(db, **{**arguments, **kwargs})


def test_runs_inside_the_callers_transaction(cluster, db):
    with psycopg.connect(cluster.conninfo()) as conn:
        conn.execute("select 1")  # opens the caller's transaction: generate() nests in it
        generate(conn, seed=1, scale=0.01, app_schema="app_tx", forms_schema="app_tx")
        generate(conn, seed=2, scale=0.01, app_schema="app_tx", forms_schema="app_tx")
        assert scalar(conn, "select count(*) from app_tx.care_plans") == 100
        conn.rollback()
    assert scalar(db, "select to_regclass('app_tx.care_plans')") is None


def _dated_summary(conn, schema: str):
    """Last local dates of: a completed visit, a form, any visit that has happened."""
    local_date = sql.SQL("max(({} at time zone 'America/Los_Angeles')::date)")
    return conn.execute(
        sql.SQL(
            "select (select {starts} from {a} where status = 'completed'),"
            " (select {completed} from {f}),"
            " (select {starts} from {a} where status in ('completed', 'cancelled', 'no_show'))"
        ).format(
            starts=local_date.format(sql.Identifier("starts_at")),
            completed=local_date.format(sql.Identifier("completed_at")),
            a=sql.Identifier(schema, "appointments"),
            f=sql.Identifier(schema, FORMS_TABLE),
        )
    ).fetchone()


def test_data_is_anchored_to_as_of(db):
    as_of = date(2026, 1, 15)
    generate(db, seed=42, scale=0.1, app_schema="app_asof", forms_schema="app_asof", as_of=as_of)
    last_completed, last_form, last_happened = _dated_summary(db, "app_asof")
    assert last_completed == last_form == last_happened == as_of
    # what is booked after as_of is `scheduled`, never completed
    assert (
        scalar(
            db,
            "select count(*) from app_asof.appointments"
            " where (starts_at at time zone 'America/Los_Angeles')::date > '2026-01-15'"
            " and status != 'scheduled'",
        )
        == 0
    )
    assert scalar(
        db,
        "select count(*) from app_asof.appointments"
        " where (starts_at at time zone 'America/Los_Angeles')::date > '2026-01-15'",
    )
    assert scalar(db, "select max(start_date) from app_asof.care_plans") <= as_of
    assert (
        scalar(db, "select max(end_date) from app_asof.care_plans where status = 'discharged'")
        <= as_of
    )
    # the production years all have completed visits to export
    years = {
        row[0]
        for row in db.execute(
            "select distinct extract(year from starts_at at time zone 'America/Los_Angeles')::int"
            " from app_asof.appointments where status = 'completed'"
        )
    }
    assert {2022, 2023, 2024, 2025} <= years


def test_same_seed_and_date_are_identical_another_date_is_not(db):
    def fingerprint_for(as_of):
        generate(db, seed=7, scale=0.02, app_schema="app_day", forms_schema="app_day", as_of=as_of)
        return fingerprints(db, "app_day", "app_day")

    first = fingerprint_for(date(2026, 3, 1))
    assert fingerprint_for(date(2026, 3, 1)) == first
    other = fingerprint_for(date(2026, 3, 2))
    assert other["appointments"] != first["appointments"]
    assert other["settings"] == first["settings"]


def test_default_as_of_is_today_in_los_angeles(db, monkeypatch):
    generate(db, seed=3, scale=0.1, app_schema="app_today", forms_schema="app_today")
    today = today_in(SYNTHETIC_TIME_ZONE)
    last_completed, last_form, _ = _dated_summary(db, "app_today")
    assert last_completed == last_form == today
