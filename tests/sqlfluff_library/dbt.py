"""Stand-ins for dbt's cross-database macros (`dbt.type_string()` ...) when sqlfluff renders
the models with its jinja templater. They render the PostgreSQL form, which is the dialect
sqlfluff lints in; dbt itself never reads this file.
"""


def type_string():
    return "varchar"


def type_bigint():
    return "bigint"


def type_int():
    return "integer"


def type_numeric():
    return "numeric(28, 6)"


def type_timestamp():
    return "timestamp"


def dateadd(datepart, interval, from_date_or_timestamp):
    return f"{from_date_or_timestamp} + ((interval '1 {datepart}') * ({interval}))"


def datediff(first_date, second_date, datepart):
    return f"(({second_date})::date - ({first_date})::date)"


def concat(fields):
    return " || ".join(fields)


def safe_cast(field, type_name):
    return f"cast({field} as {type_name})"


def split_part(string_text, delimiter_text, part_number):
    return f"split_part({string_text}, {delimiter_text}, {part_number})"
