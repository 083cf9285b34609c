"""moto's Athena and S3 as the loader's Athena tests use them: credentials, target settings."""

from __future__ import annotations

REGION = "us-east-1"
CREDENTIALS = {
    "aws_access_key_id": "testing",
    "aws_secret_access_key": "testing",
    "region_name": REGION,
}
RESULTS_BUCKET = "athena-results"
SETTINGS = {
    "type": "athena",
    "s3_staging_dir": f"s3://{RESULTS_BUCKET}/staging/",
    "region_name": REGION,
    "database": "awsdatacatalog",
    "schema": "mips",
    "work_group": "mips",
}
