"""Where the data home is: the same place whatever the current directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from bulk_pipeline import config

CHECKOUT = Path(__file__).resolve().parents[1]


def test_the_variable_wins_and_relative_values_are_made_absolute_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(config.HOME_ENV, "elsewhere")
    assert config.data_home() == tmp_path / "elsewhere"
    assert config.data_home_origin() == f"from ${config.HOME_ENV}"


def test_without_the_variable_a_checkout_uses_its_own_data_folder_from_any_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(config.HOME_ENV)
    homes = set()
    for directory in (tmp_path, CHECKOUT / "docs", CHECKOUT):
        monkeypatch.chdir(directory)
        homes.add(config.default_data_home())
    assert homes == {CHECKOUT / "data"}
    assert not (tmp_path / "data").exists()


def test_an_installed_package_uses_the_per_user_data_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert config.user_data_home() == tmp_path / "xdg" / "bulk_pipeline"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert config.user_data_home() == tmp_path / "user" / ".local" / "share" / "bulk_pipeline"
