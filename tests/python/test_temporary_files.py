"""The test run's temporary files: on the RAM disk when it has room, one directory per checkout,
never shared by two runs at once (tests/support/temporary_files.py)."""

from __future__ import annotations

import shutil

from tests.support.temporary_files import ram_basetemp


def test_each_checkout_has_its_own_directory_held_by_one_run_at_a_time(tmp_path, monkeypatch):
    monkeypatch.delenv("MIPS_TEST_BASETEMP", raising=False)
    ram_disk, one, other = tmp_path / "shm", tmp_path / "one", tmp_path / "other"
    ram_disk.mkdir()
    chosen = ram_basetemp(one, ram_disk, room=0)
    assert chosen is not None and chosen.path.parent == ram_disk
    assert chosen.path.name.startswith("healthmonix-mips-tests-")
    # another checkout: another directory, free to use meanwhile
    beside = ram_basetemp(other, ram_disk, room=0)
    assert beside is not None and beside.path != chosen.path
    # a second run of the same checkout: its directory is taken, pytest's default then
    assert ram_basetemp(one, ram_disk, room=0) is None
    chosen.lock.close()
    again = ram_basetemp(one, ram_disk, room=0)
    assert again is not None and again.path == chosen.path
    again.lock.close()
    beside.lock.close()


def test_no_ram_disk_no_room_or_asked_for_disk_is_pytests_default(tmp_path, monkeypatch):
    monkeypatch.delenv("MIPS_TEST_BASETEMP", raising=False)
    assert ram_basetemp(tmp_path, tmp_path / "no-such-dir", room=0) is None
    free = shutil.disk_usage(tmp_path).free
    assert ram_basetemp(tmp_path, tmp_path, room=free + 2**40) is None
    monkeypatch.setenv("MIPS_TEST_BASETEMP", "disk")
    assert ram_basetemp(tmp_path, tmp_path, room=0) is None
