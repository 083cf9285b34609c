"""Project hygiene from dbt's manifest (dbt-project-evaluator's rules we hold ourselves to).

Every model is described and has a primary-key test, and the daily build guards every key;
every column of the public models is described; public models enforce contracts; a source
table has a freshness or is a declared exception, and only its staging model reads it; the
exposure depends on public models only; seeds declare a type for every column; the export's
columns are the loader's interface.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from loader.marts.deliveries import DELIVERIES_COLUMNS, DELIVERIES_MODEL
from loader.marts.expected_years import EXPECTED_YEARS_COLUMNS, EXPECTED_YEARS_MODEL
from tests.support.model_scenarios import SCRATCH

PROJECT_DIR = Path(__file__).resolve().parents[2]
PACKAGE = "healthmonix_mips"
FILE_COLUMNS = [
    "Practice TIN",
    "Provider NPI",
    "Patient ID",
    "Patient Date Of Birth",
    "Patient Sex",
    "Payer",
    "Episode ID",
    "Episode Start Date",
    "Episode End Date",
    "Surgical",
    "Symptom Onset Date",
    "Body Part",
    "Visit ID",
    "Date Of Service",
    "Visit Type",
    "Treatment",
    "Instrument",
    "Score",
]


@pytest.fixture(scope="module")
def manifest(project_options) -> dict:
    """dbt's manifest of the project, parsed as SCRATCH (the parse the worker's other modules
    on SCRATCH start from)."""
    result = SCRATCH.run(project_options, "parse", "--write-json")
    assert result.success, result.error
    return json.loads((SCRATCH.target_path() / "manifest.json").read_text())


def _nodes(manifest: dict, resource_type: str) -> list[dict]:
    return [
        node
        for node in manifest["nodes"].values()
        if node["resource_type"] == resource_type and node["package_name"] == PACKAGE
    ]


def test_every_model_is_described(manifest):
    undescribed = [m["name"] for m in _nodes(manifest, "model") if not m["description"].strip()]
    assert undescribed == []


def test_every_declared_column_is_described(manifest):
    undescribed = [
        f"{node['name']}.{column['name']}"
        for kind in ("model", "seed")
        for node in _nodes(manifest, kind)
        for column in node["columns"].values()
        if not column["description"].strip()
    ]
    assert undescribed == []


def test_public_models_document_every_column_and_enforce_contracts(manifest):
    public = [m for m in _nodes(manifest, "model") if m["access"] == "public"]
    assert {m["name"] for m in public} == {"mips_export", "mips_deliveries", "mips_expected_years"}
    for model in public:
        assert model["contract"]["enforced"], model["name"]
        # an enforced contract makes the SQL's columns exactly the documented ones
        assert all(c["data_type"] for c in model["columns"].values()), model["name"]


def _is_weekly(test: dict) -> bool:
    """Left out of the daily build (selectors.yml): a repeat of a guard the build has."""
    return "weekly" in test["config"]["tags"]


def _key_test_columns(tests: list[dict]) -> bool:
    """A primary-key test as dbt Labs' evaluator counts it (var primary_key_test_macros in
    dbt_project.yml): `unique` and `not_null` on one column, or our combination test."""
    unique, not_null = set(), set()
    for test in tests:
        name = (test.get("test_metadata") or {}).get("name")
        if name == "unique_combination_of_columns":
            return True
        if name == "unique":
            unique.add(test.get("column_name"))
        if name == "not_null":
            not_null.add(test.get("column_name"))
    return bool(unique & not_null)


def _tests_by_model(manifest: dict) -> dict[str, list[dict]]:
    tests_by_model: dict[str, list[dict]] = {}
    for test in _nodes(manifest, "test"):
        if test.get("attached_node"):
            tests_by_model.setdefault(test["attached_node"], []).append(test)
    return tests_by_model


def test_every_model_has_a_primary_key_test(manifest):
    """The evaluator's rule: a key test on every model, whether the daily or the weekly run
    runs it (dbt test --selector weekly)."""
    tests_by_model = _tests_by_model(manifest)
    missing = [
        m["name"]
        for m in _nodes(manifest, "model")
        if not _key_test_columns(tests_by_model.get(m["unique_id"], []))
    ]
    assert missing == []


def test_the_daily_build_guards_every_model_key(manifest):
    """Ours: the production build (`--selector daily`) guards every key, by a test it runs, an
    enforced primary key, or the key's test on the source column or the model it becomes
    (`meta.primary_key_tested_on`). A weekly key test only repeats one of these."""
    tests_by_model = _tests_by_model(manifest)

    def has_daily_key_test(model_id: str) -> bool:
        return _key_test_columns([t for t in tests_by_model.get(model_id, []) if not _is_weekly(t)])

    def has_primary_key_constraint(model: dict) -> bool:
        """Enforced while the table is built; its tests are then weekly or off on PostgreSQL."""
        return model["contract"]["enforced"] and any(
            c["type"] == "primary_key" for c in model.get("constraints", [])
        )

    def source_column_is_a_key(name: str) -> bool:
        source, table, column = name.split(".")
        tests = tests_on_sources.get((source, table), [])
        kinds = {
            (t.get("test_metadata") or {}).get("name")
            for t in tests
            if t["column_name"] == column and not _is_weekly(t)
        }
        return {"unique", "not_null"} <= kinds

    tests_on_sources: dict[tuple[str, str], list[dict]] = {}
    for test in _nodes(manifest, "test"):
        for parent in test["depends_on"]["nodes"]:
            if parent.startswith("source."):
                source = manifest["sources"][parent]
                tests_on_sources.setdefault((source["source_name"], source["name"]), []).append(
                    test
                )
    models = {m["name"]: m for m in _nodes(manifest, "model")}

    def guarded(model: dict) -> bool:
        if has_daily_key_test(model["unique_id"]) or has_primary_key_constraint(model):
            return True
        # a key tested elsewhere: the source column it casts, or the model it becomes
        elsewhere = (model["config"].get("meta") or {}).get("primary_key_tested_on")
        if elsewhere is None:
            return False
        if elsewhere in models:
            return elsewhere != model["name"] and guarded(models[elsewhere])
        return source_column_is_a_key(elsewhere)

    missing = [name for name, model in models.items() if not guarded(model)]
    assert missing == []


def test_seeds_declare_every_column_type(manifest):
    for seed in _nodes(manifest, "seed"):
        header = (PROJECT_DIR / seed["original_file_path"]).read_text().splitlines()[0]
        columns = header.split(",")
        assert set(seed["config"]["column_types"]) == set(columns), seed["name"]
        assert set(seed["columns"]) == set(columns), seed["name"]


def test_sources_have_freshness_and_descriptions(manifest):
    sources = {s["name"]: s for s in manifest["sources"].values()}
    for name in ("appointments", "patient_forms_mips"):
        freshness = sources[name]["freshness"]
        assert (freshness["warn_after"]["count"], freshness["warn_after"]["period"]) == (3, "day")
        assert (freshness["error_after"]["count"], freshness["error_after"]["period"]) == (7, "day")
        # only rows that have happened: future bookings must not make the source look fresh
        assert "<= current_timestamp" in freshness["filter"], name
        assert sources[name]["loaded_at_field"] in ("starts_at", "completed_at")
    assert "status = 'completed'" in sources["appointments"]["freshness"]["filter"]
    assert all(source["description"].strip() for source in sources.values())


def test_sources_without_freshness_are_the_declared_exceptions(manifest):
    """A source table has a freshness, or is one dbt Labs' evaluator is told to leave out (its
    var exclude_paths_from_project in dbt_project.yml, with the reason): a new table gets one."""
    project = yaml.safe_load((PROJECT_DIR / "dbt_project.yml").read_text())
    patterns = project["vars"]["dbt_project_evaluator"]["exclude_paths_from_project"]
    for source in manifest["sources"].values():
        # the path the evaluator matches (its macro set_is_excluded)
        path = f"{source['original_file_path']}:{source['fqn'][-2]}.{source['fqn'][-1]}"
        excluded = any(re.search(pattern, path, re.IGNORECASE) for pattern in patterns)
        freshness = source.get("freshness") or {}
        has_freshness = any(
            (freshness.get(after) or {}).get("count") for after in ("warn_after", "error_after")
        )
        assert excluded != has_freshness, path


def test_a_source_table_is_read_by_its_staging_model_only(manifest):
    """dbt Labs' source rules, held here for every source table, those the evaluator leaves out
    too: one reader (no fan-out, none unused), the staging model of the table in the source's
    folder, which reads nothing else (no join to a source; no later layer reads a source)."""
    readers: dict[str, list[dict]] = {unique_id: [] for unique_id in manifest["sources"]}
    for model in _nodes(manifest, "model"):
        for parent in model["depends_on"]["nodes"]:
            if parent.startswith("source."):
                readers[parent].append(model)
    for unique_id, models in readers.items():
        source = manifest["sources"][unique_id]
        assert len(models) == 1, (unique_id, [m["name"] for m in models])
        (model,) = models
        assert model["name"].startswith(f"stg_{source['source_name']}__"), model["name"]
        folder = f"models/staging/{source['source_name']}/"
        assert model["original_file_path"].startswith(folder), model["original_file_path"]
        assert model["depends_on"]["nodes"] == [unique_id], model["name"]


def test_exposure_depends_on_public_models_only(manifest):
    (exposure,) = manifest["exposures"].values()
    models = {node["unique_id"]: node for node in _nodes(manifest, "model")}
    parents = exposure["depends_on"]["nodes"]
    assert parents
    assert all(models[parent]["access"] == "public" for parent in parents)


def test_what_an_exposure_reads_is_stored_in_tables(manifest):
    """Ours, for the evaluator's rule that exposures read tables, from which the export is
    left out (dbt_project.yml): on PostgreSQL the export is a view, but of tables only, its
    two parts (docs/models.md, "The export in two parts"); every other mart is a table."""
    (exposure,) = manifest["exposures"].values()
    nodes = manifest["nodes"]
    for parent in exposure["depends_on"]["nodes"]:
        model = nodes[parent]
        if model["config"]["materialized"] == "view":
            read = model["depends_on"]["nodes"]
            assert read, parent
            assert all(nodes[p]["config"]["materialized"] == "table" for p in read), parent
        else:
            assert model["config"]["materialized"] == "table", parent
    export = nodes["model.healthmonix_mips.mips_export.v1"]
    assert export["config"]["materialized"] == "view"
    assert sorted(export["depends_on"]["nodes"]) == [
        "model.healthmonix_mips.mips_export_v1_part_0",
        "model.healthmonix_mips.mips_export_v1_part_1",
    ]


def test_export_columns_are_the_loader_interface(manifest):
    (export,) = [m for m in _nodes(manifest, "model") if m["name"] == "mips_export"]
    assert export["version"] == 1
    assert export["latest_version"] == 1
    assert export["alias"] == "mips_export_v1"
    columns = list(export["columns"].values())
    assert [c["name"] for c in columns] == [
        "performance_year",
        "state_code",
        "file_row_number",
        *(header.lower().replace(" ", "_") for header in FILE_COLUMNS),
    ]
    assert [c["data_type"] for c in columns[:3]] == ["integer", "varchar", "bigint"]
    assert all(c["data_type"] == "varchar" for c in columns[3:])
    # Glue keeps only lower-case letters, digits and underscores in column names.
    assert all(re.fullmatch(r"[a-z0-9_]+", c["name"]) for c in columns)


def test_the_loader_reads_only_columns_the_models_contract_states(manifest):
    """The loader names each model once and selects only contracted columns from it, so a
    change of a name or a column is a contract change dbt refuses, not a silent mismatch."""
    models = {node["name"]: node for node in _nodes(manifest, "model")}
    read = {
        DELIVERIES_MODEL: (*DELIVERIES_COLUMNS, "run_time_zone"),
        EXPECTED_YEARS_MODEL: (*EXPECTED_YEARS_COLUMNS, "run_time_zone"),
    }
    for model, columns in read.items():
        node = models[model]
        assert node["config"]["contract"]["enforced"], model
        assert set(columns) <= set(node["columns"]), (model, set(columns) - set(node["columns"]))
