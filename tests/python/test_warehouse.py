"""The loader renders profiles.yml without dbt; it must agree with dbt's own rendering."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
from conftest import PROJECT_DIR

from loader.warehouse import ProjectOptions, WarehouseConfigError, render_target

ENVIRONMENT = {
    "MIPS_PG_SOCKET_DIR": "/tmp/socket-dir",
    "MIPS_PG_HOST": "db.internal",
    "MIPS_PG_PORT": "6543",
    "MIPS_PG_USER": "0123",
    "MIPS_PG_PASSWORD": "s3cr3t",
    "MIPS_PG_DATABASE": "warehouse",
    "MIPS_ATHENA_S3_STAGING_DIR": "s3://results/staging/",
}


def dbt_rendering(profiles_dir, target: str) -> dict:
    from dbt.config.profile import Profile, read_profile
    from dbt.config.renderer import ProfileRenderer
    from dbt_common.context import set_invocation_context

    set_invocation_context(dict(os.environ))
    raw = read_profile(str(profiles_dir))["healthmonix_mips"]
    return Profile.render_profile(raw, "healthmonix_mips", target, ProfileRenderer({}))[1]


@pytest.mark.parametrize("target", ["dev", "postgres", "athena"])
def test_rendering_matches_dbt(tmp_path, monkeypatch, target):
    shutil.copy(PROJECT_DIR / "profiles.example.yml", tmp_path / "profiles.yml")
    for key, value in ENVIRONMENT.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("MIPS_DEV_SCHEMA", raising=False)
    ours = render_target(ProjectOptions(PROJECT_DIR, tmp_path, target)).settings
    assert ours == dbt_rendering(tmp_path, target)
    if target == "postgres":
        assert ours["port"] == 6543 and ours["user"] == "0123"


def test_missing_variable_names_the_setting(tmp_path, monkeypatch):
    shutil.copy(PROJECT_DIR / "profiles.example.yml", tmp_path / "profiles.yml")
    monkeypatch.delenv("MIPS_PG_HOST", raising=False)
    with pytest.raises(WarehouseConfigError, match=r"outputs\.postgres\.host.*MIPS_PG_HOST"):
        render_target(ProjectOptions(PROJECT_DIR, tmp_path, "postgres"))


def test_the_export_path_does_not_import_dbt():
    code = (
        "import sys; import loader.cli, loader.export, loader.status, loader.slices; "
        "print(any(m == 'dbt' or m.startswith('dbt.') for m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr
