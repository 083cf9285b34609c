"""The Ruby/Sidekiq worker this project replaces, reimplemented faithfully in Python.

`Athena::HealthmonixYearDataWriterWorker` as the help-desk note (shared/seed/006) describes it:

    perform(year)
    ├── get_states(year)                                   settings → states
    └── for each state
        ├── write_data_to_s3(year, state)
        │   ├── create_dataset(year, state)
        │   │   ├── query(year, state)                     one "complex SQL" → every visit row
        │   │   └── process_queue(queue, year)             per 500 care plans:
        │   │       ├── care_plan_completed_forms_data     one forms query
        │   │       └── merge_appointments_data_with_outcomes_data   row by row, 3 rows a visit
        │   └── s3_object.upload_stream(CSV)
        └── if integration enabled
            ├── read_csv_tempfile(year, state)             download the CSV back from S3
            ├── get_sftp_filename(year, state)
            └── upload_to_ftp_server(filename, file)

Like the original it holds a state's whole result (query rows, then processed rows) in memory
and formats every value in the application language. The forms come from the same PostgreSQL
(the original asked Athena). Values are formatted to SPEC §6 so the bytes can be compared with
the loader's; the MSK pain code is the original's year-conditional `gsub` on the function code.

Run as `python -m bench.worker_replica --config FILE`; it prints a JSON report on stdout.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import hashlib
import json
import os
import tempfile
import time
from decimal import Decimal
from pathlib import Path

BATCH_CARE_PLANS = 500
TIME_ZONE = "America/Los_Angeles"

HEADER = [
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

PAYERS = {
    "medicare": "Medicare",
    "medicare_advantage": "Medicare Advantage",
    "medicaid": "Medicaid",
    "commercial": "Commercial",
    "workers_comp": "Workers Comp",
    "self_pay": "Self Pay",
    "other": "Other",
}
SEXES = {"female": "F", "male": "M"}
TRUE_WORDS = {"true", "t", "1"}

# The worker's `query`. Its injury_extended hands out MSK01-05 by body part in branches guarded
# by the year (`#{year} >= 2024` and older ones with the same codes); for the configured years
# they reduce to this. Other, pelvis, upper_back and unknown values get no code: excluded.
VISITS_QUERY = """
with injury_extended as (
    select
        inj.id,
        upper(inj.body_part_type) as body_part,
        inj.surgical,
        inj.onset_date,
        case
            when inj.body_part_type = 'neck' then 'MSK01'
            when inj.body_part_type = 'shoulder_arm' then 'MSK02'
            when inj.body_part_type = 'lower_back' then 'MSK03'
            when inj.body_part_type = 'hip' then 'MSK04'
            when inj.body_part_type = 'hip_joint_replacement' then 'MSK04'
            when inj.body_part_type = 'foot_and_ankle' then 'MSK04'
            when inj.body_part_type = 'knee' then 'MSK05'
            when inj.body_part_type = 'knee_joint_replacement' then 'MSK05'
        end as functional_treatment
    from {app}.injuries as inj
),

eligible_care_plans as (
    select
        cp.id,
        cp.patient_id,
        cp.payer_type,
        cp.start_date,
        cp.end_date,
        ie.body_part,
        ie.surgical,
        ie.onset_date,
        ie.functional_treatment
    from {app}.care_plans as cp
    inner join {app}.regions as r on cp.region_id = r.id
    inner join {app}.states as s on r.state_id = s.id
    inner join injury_extended as ie on cp.injury_id = ie.id
    inner join {app}.patients as p on cp.patient_id = p.id
    where
        s.postal_abbreviation = %(state)s
        and cp.status <> 'cancelled'
        and ie.functional_treatment is not null
        and (p.date_of_birth + interval '18 years')::date <= cp.start_date
        and (
            (
                %(strict)s
                and cp.start_date >= make_date(%(year)s, 1, 1)
                and cp.end_date is not null
                and cp.end_date <= make_date(%(year)s, 12, 31)
            )
            or (
                not %(strict)s
                and cp.start_date <= make_date(%(year)s, 12, 31)
                and (cp.end_date is null or cp.end_date >= make_date(%(year)s, 1, 1))
            )
        )
)

select
    c.tin,
    c.npi,
    p.id as patient_id,
    p.date_of_birth,
    p.sex,
    ecp.payer_type,
    ecp.id as care_plan_id,
    ecp.start_date,
    ecp.end_date,
    ecp.surgical,
    ecp.onset_date,
    ecp.body_part,
    a.id as appointment_id,
    (a.starts_at at time zone '{time_zone}')::date as date_of_service,
    a.visit_type,
    ecp.functional_treatment
from eligible_care_plans as ecp
inner join {app}.appointments as a on ecp.id = a.care_plan_id
inner join {app}.patients as p on ecp.patient_id = p.id
inner join {app}.clinicians as c on a.clinician_id = c.id
where
    a.status = 'completed'
    and a.starts_at >= make_timestamptz(%(year)s, 1, 1, 0, 0, 0, '{time_zone}')
    and a.starts_at < make_timestamptz(%(year)s + 1, 1, 1, 0, 0, 0, '{time_zone}')
order by ecp.id, date_of_service, a.id
"""

# `care_plan_completed_forms_data(ids)`: the forms of a batch of care plans (Athena originally).
FORMS_QUERY = """
select * from {forms}.patient_forms_mips
where care_plan_id = any(%(care_plan_ids)s) and appointment_id is not null
"""


# --- formatting, as the worker's Ruby did it value by value ----------------------------------


def _date(value: dt.date | None) -> str:
    return "" if value is None else value.isoformat()


def _score(value: Decimal | None) -> str:
    if value is None:
        return ""
    text = format(value.normalize(), "f")
    return "0" if text == "-0" else text


def pain_treatment(functional_treatment: str, year: int) -> str:
    """The worker's gsub chain, year-conditional since the 2025 fix."""
    if year >= 2025:
        return (
            functional_treatment.replace("MSK02", "MSK07")
            .replace("MSK01", "MSK06")
            .replace("MSK03", "MSK08")
            .replace("MSK04", "MSK09")
            .replace("MSK05", "MSK10")
        )
    return (
        functional_treatment.replace("MSK02", "MSK12")
        .replace("MSK01", "MSK11")
        .replace("MSK03", "MSK13")
        .replace("MSK04", "MSK14")
        .replace("MSK05", "MSK15")
    )


def latest_forms(forms: list[dict]) -> dict[int, dict]:
    """Each appointment's form: the latest completed_at, then the highest id."""
    latest: dict[int, dict] = {}
    for form in forms:
        current = latest.get(form["appointment_id"])
        if current is None or (form["completed_at"], form["id"]) > (
            current["completed_at"],
            current["id"],
        ):
            latest[form["appointment_id"]] = form
    return latest


def merge_appointments_data_with_outcomes_data(
    appointments: list[dict], forms: dict[int, dict], year: int
) -> list[dict]:
    rows = []
    for appointment in appointments:
        base = {
            "Practice TIN": appointment["tin"],
            "Provider NPI": appointment["npi"],
            "Patient ID": str(appointment["patient_id"]),
            "Patient Date Of Birth": _date(appointment["date_of_birth"]),
            "Patient Sex": SEXES.get((appointment["sex"] or "").strip().lower(), "U"),
            "Payer": PAYERS.get(appointment["payer_type"], appointment["payer_type"]),
            "Episode ID": str(appointment["care_plan_id"]),
            "Episode Start Date": _date(appointment["start_date"]),
            "Episode End Date": _date(appointment["end_date"]),
            "Surgical": "Y" if appointment["surgical"] else "N",
            "Symptom Onset Date": _date(appointment["onset_date"]),
            "Body Part": appointment["body_part"],
            "Visit ID": str(appointment["appointment_id"]),
            "Date Of Service": _date(appointment["date_of_service"]),
            "Visit Type": (appointment["visit_type"] or "").upper(),
        }
        form = forms.get(appointment["appointment_id"])
        functional_treatment = appointment["functional_treatment"]

        result_functional = dict(base)
        result_functional["Treatment"] = functional_treatment
        result_functional["Instrument"] = ""
        result_functional["Score"] = ""
        if form is not None and form["functional_score"] is not None:
            result_functional["Instrument"] = form["instrument"]
            result_functional["Score"] = _score(form["functional_score"])

        result_nprs = dict(base)
        result_nprs["Instrument"] = ""
        result_nprs["Score"] = ""
        if functional_treatment:
            result_nprs["Treatment"] = pain_treatment(functional_treatment, year)
        if form is not None and form["nprs_score"] is not None:
            result_nprs["Instrument"] = "NPRS"
            result_nprs["Score"] = _score(form["nprs_score"])

        result_length_of_stay = dict(base)
        result_length_of_stay["Treatment"] = "LOS"
        result_length_of_stay["Instrument"] = ""
        result_length_of_stay["Score"] = str(
            (appointment["date_of_service"] - appointment["start_date"]).days
        )

        rows += [result_functional, result_nprs, result_length_of_stay]
    return rows


def get_sftp_filename(registrations: dict, year: int, state: str, today: dt.date) -> str:
    registration_id, integration_key = registrations.get(
        (year, state),
        (f"UNKNOWN-{year}-REGISTRATION-ID", f"UNKNOWN-{year}-INTEGRATION-KEY"),
    )
    date_string = today.strftime("%Y%m%d") if year == 2023 else None
    parts = ["Quality", registration_id, integration_key, date_string]
    return "_".join(p for p in parts if p is not None) + ".csv"


def read_registrations(path: Path) -> dict[tuple[int, str], tuple[str, str]]:
    """The case statement of `get_sftp_filename`, filled from the registration sheet."""
    with open(path, newline="", encoding="utf-8") as handle:
        return {
            (int(row["performance_year"]), row["state_code"]): (
                row["registration_id"],
                row["integration_key"],
            )
            for row in csv.DictReader(handle)
        }


def _digest(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


# --- the worker -------------------------------------------------------------------------------


class YearDataWriter:
    """One run of the complete-data worker: a year worker per configured year, in turn.

    `config` (JSON from the harness): conninfo, app_schema, forms_schema, today, s3_bucket and
    s3_prefix (or s3_dir for a local stand-in), sftp {host, port, user, key_file, known_hosts,
    dir} or null, registrations_csv, work_dir, keep_dir (copy every CSV there, for diffs).
    """

    def __init__(self, conn, config: dict, sftp):
        self.conn = conn
        self.config = config
        self.app = config.get("app_schema", "app")
        self.forms = config.get("forms_schema") or self.app
        self.today = dt.date.fromisoformat(config["today"])
        self.registrations = read_registrations(Path(config["registrations_csv"]))
        self.sftp = sftp
        self._s3 = None
        # Hashing and keeping copies serve the comparison, not the job: timed apart.
        self.comparison_seconds = 0.0
        # Where its time goes: the visits queries, the forms queries (Athena in production).
        self.steps = {"visits_queries": 0, "visits_seconds": 0.0}
        self.steps.update({"forms_queries": 0, "forms_seconds": 0.0})

    # Setting.load_safe
    def load_setting(self, key: str) -> str | None:
        found = self.conn.execute(
            f"select value from {self.app}.settings where key = %s", (key,)
        ).fetchone()
        return None if found is None else found[0]

    def load_boolean(self, key: str) -> bool:
        value = self.load_setting(key)
        return value is not None and value.strip().lower() in TRUE_WORDS

    def get_years(self) -> list[int]:
        """The complete-data worker spawns a year worker for every year from 2022 on."""
        rows = self.conn.execute(
            f"select key from {self.app}.settings where key ~ '^healthmonix_[0-9]{{4}}_states$'"
        ).fetchall()
        return sorted(int(key.split("_")[1]) for (key,) in rows)

    def get_states(self, year: int) -> list[str]:
        value = self.load_setting(f"healthmonix_{year}_states") or ""
        codes = []
        for code in value.split(","):
            code = code.strip().upper()
            if code and code not in codes:
                codes.append(code)
        known = {
            code
            for (code,) in self.conn.execute(
                f"select postal_abbreviation from {self.app}.states"
            ).fetchall()
        }
        return sorted(code for code in codes if code in known)

    def query(self, year: int, state: str, strict: bool) -> list[dict]:
        from psycopg.rows import dict_row

        started = time.monotonic()
        with self.conn.cursor(row_factory=dict_row) as cursor:
            cursor.execute(
                VISITS_QUERY.format(app=self.app, time_zone=TIME_ZONE),
                {"year": year, "state": state, "strict": strict},
            )
            rows = cursor.fetchall()
        self.steps["visits_queries"] += 1
        self.steps["visits_seconds"] += time.monotonic() - started
        return rows

    def care_plan_completed_forms_data(self, care_plan_ids: list[int]) -> dict[int, dict]:
        from psycopg.rows import dict_row

        started = time.monotonic()
        with self.conn.cursor(row_factory=dict_row) as cursor:
            cursor.execute(FORMS_QUERY.format(forms=self.forms), {"care_plan_ids": care_plan_ids})
            forms = cursor.fetchall()
        self.steps["forms_queries"] += 1
        self.steps["forms_seconds"] += time.monotonic() - started
        return latest_forms(forms)

    def process_queue(self, queue: dict[int, list[dict]], year: int) -> list[dict]:
        forms = self.care_plan_completed_forms_data(list(queue))
        processed = []
        for appointments in queue.values():
            processed += merge_appointments_data_with_outcomes_data(appointments, forms, year)
        return processed

    def create_dataset(self, year: int, state: str, strict: bool) -> list[dict]:
        appointment_data = self.query(year, state, strict)
        processed_result: list[dict] = []
        queue: dict[int, list[dict]] = {}
        for appointment in appointment_data:
            care_plan_id = appointment["care_plan_id"]
            if care_plan_id not in queue and len(queue) == BATCH_CARE_PLANS:
                processed_result += self.process_queue(queue, year)
                queue = {}
            queue.setdefault(care_plan_id, []).append(appointment)
        if queue:
            processed_result += self.process_queue(queue, year)
        return processed_result

    @property
    def s3(self):
        if self._s3 is None:
            import boto3

            endpoint = os.environ.get("MIPS_S3_ENDPOINT_URL") or None
            self._s3 = boto3.client("s3", endpoint_url=endpoint)
        return self._s3

    def write_data_to_s3(self, year: int, state: str, strict: bool, work: Path):
        dataset = self.create_dataset(year, state, strict)
        snapshot = "2022-12-31" if year == 2022 else self.today.isoformat()
        key = f"{year}/{state}/{snapshot}/data.csv"
        # upload_stream: the CSV is generated into the upload; here into a file, then uploaded.
        path = work / f"{year}-{state}.csv"
        with open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(HEADER)
            writer.writerows([row[column] for column in HEADER] for row in dataset)
        rows = len(dataset)
        del dataset
        if self.config.get("s3_bucket"):
            prefix = self.config.get("s3_prefix") or ""
            full_key = f"{prefix}/{key}" if prefix else key
            self.s3.upload_file(str(path), self.config["s3_bucket"], full_key)
        else:
            target = Path(self.config["s3_dir"]) / key
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)
            path = target
        return key, path, rows

    def read_csv_tempfile(self, key: str, path: Path, work: Path) -> Path:
        if not self.config.get("s3_bucket"):
            return path
        download = work / "download.csv"
        prefix = self.config.get("s3_prefix") or ""
        full_key = f"{prefix}/{key}" if prefix else key
        self.s3.download_file(self.config["s3_bucket"], full_key, str(download))
        return download

    def perform(self, year: int, work: Path) -> list[dict]:
        enabled = self.load_boolean(f"healthmonix_{year}_integration_enabled")
        strict = self.load_boolean(f"healthmonix_{year}_strictly_contained")
        results = []
        for state in self.get_states(year):
            key, path, rows = self.write_data_to_s3(year, state, strict, work)
            sftp_name = None
            if enabled and self.sftp is not None:
                tempfile_path = self.read_csv_tempfile(key, path, work)
                sftp_name = get_sftp_filename(self.registrations, year, state, self.today)
                self.sftp.put(str(tempfile_path), f"{self.config['sftp']['dir']}/{sftp_name}")
                if tempfile_path != path:
                    tempfile_path.unlink()
            comparison_started = time.monotonic()
            digest, size = _digest(path)
            if self.config.get("keep_dir"):
                kept = Path(self.config["keep_dir"]) / f"{year}-{state}.csv"
                kept.parent.mkdir(parents=True, exist_ok=True)
                kept.write_bytes(path.read_bytes())
            self.comparison_seconds += time.monotonic() - comparison_started
            if self.config.get("s3_bucket"):
                path.unlink()
            results.append(
                {
                    "performance_year": year,
                    "state_code": state,
                    "rows": rows,
                    "bytes": size,
                    "sha256": digest,
                    "s3_key": key,
                    "sftp_file_name": sftp_name,
                }
            )
        return results


def sftp_session(settings: dict):
    import paramiko

    client = paramiko.SSHClient()
    client.load_host_keys(settings["known_hosts"])
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(
        settings["host"],
        port=settings["port"],
        username=settings["user"],
        key_filename=settings["key_file"],
        allow_agent=False,
        look_for_keys=False,
    )
    return client


def run(config: dict) -> dict:
    """The whole daily run; the report's seconds exclude the hashing done for the comparison."""
    import psycopg

    started = time.monotonic()
    client = sftp_session(config["sftp"]) if config.get("sftp") else None
    sftp = client.open_sftp() if client is not None else None
    results = []
    comparison_seconds = 0.0
    steps: dict = {}
    try:
        with (
            psycopg.connect(config["conninfo"], autocommit=True) as conn,
            tempfile.TemporaryDirectory(prefix="worker-replica-", dir=config.get("work_dir")) as w,
        ):
            worker = YearDataWriter(conn, config, sftp)
            for year in worker.get_years():
                results += worker.perform(year, Path(w))
            comparison_seconds = worker.comparison_seconds
            steps = worker.steps
    finally:
        if sftp is not None:
            sftp.close()
        if client is not None:
            client.close()
    return {
        "seconds": time.monotonic() - started - comparison_seconds,
        "comparison_seconds": comparison_seconds,
        "steps": steps,
        "deliveries": results,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True, help="JSON written by the harness")
    args = parser.parse_args()
    config = json.loads(args.config.read_text())
    print(json.dumps(run(config)))


if __name__ == "__main__":
    main()
