"""Plain mistakes end in one line on stderr and a non-zero exit, never a traceback; each
case runs the real ``hookline`` command in a subprocess."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import free_port

CLI = [sys.executable, "-m", "hookline.cli.main"]


def hookline(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HOOKLINE_")}
    return subprocess.run(
        [*CLI, *args],
        env={**clean, "COLUMNS": "300", **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def one_line_error(result: subprocess.CompletedProcess[str], code: int = 1) -> str:
    assert result.returncode == code, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.stdout + result.stderr
    return lines[0]


def test_unreachable_database_names_it_without_the_password(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    url = f"postgresql://bob:s3cret-pw@127.0.0.1:{port}/inventory"
    line = one_line_error(hookline(tmp_path, "accounts", "list", HOOKLINE_DATABASE_URL=url))
    assert f"postgresql database inventory on 127.0.0.1:{port} as bob" in line
    assert "s3cret-pw" not in line


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("not a url", "is not a URL"),
        ("postgresql://bob:s3cret-pw@db.internal:five/x", "port of host db.internal is not a"),
        ("mysql://bob:s3cret-pw@db.internal/x", "mysql:// is not supported"),
    ],
)
def test_malformed_database_urls(tmp_path: Path, url: str, expected: str) -> None:
    line = one_line_error(hookline(tmp_path, "migrate", "--database-url", url))
    assert expected in line
    assert "s3cret-pw" not in line


def test_bad_toml_names_file_line_and_column(tmp_path: Path) -> None:
    config = tmp_path / "hookline.toml"
    config.write_text("port = 8000\nhost = \n")
    line = one_line_error(hookline(tmp_path, "info", HOOKLINE_CONFIG=str(config)))
    assert f"{config}, line 2, column 8: invalid TOML" in line


def test_unknown_config_key_suggests_the_right_one(tmp_path: Path) -> None:
    config = tmp_path / "hookline.toml"
    config.write_text('databse_url = "postgresql://db/x"\n')
    line = one_line_error(hookline(tmp_path, "info", HOOKLINE_CONFIG=str(config)))
    assert "unknown setting 'databse_url' (did you mean database_url?)" in line


def test_missing_config_file(tmp_path: Path) -> None:
    line = one_line_error(hookline(tmp_path, "info", HOOKLINE_CONFIG="nowhere.toml"))
    assert "HOOKLINE_CONFIG names nowhere.toml, which does not exist" in line


def test_invalid_setting_value(tmp_path: Path) -> None:
    line = one_line_error(hookline(tmp_path, "info", HOOKLINE_PORT="eighty"))
    assert "invalid setting HOOKLINE_PORT" in line


def test_unknown_variable_is_a_one_line_warning(tmp_path: Path) -> None:
    result = hookline(tmp_path, "info", HOOKLINE_DATABSE_URL="postgresql://db/x")
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip().splitlines() == [
        "warning: unknown variable HOOKLINE_DATABSE_URL (did you mean "
        "HOOKLINE_DATABASE_URL?); it is ignored"
    ]


def test_every_variable_the_project_itself_sets_is_known() -> None:
    """The benchmark and test variables are the project's own: no warning for them."""
    from hookline.config import unknown_variables

    repo = Path(__file__).resolve().parents[2]
    used: set[str] = set()
    for folder in ("src", "bench", "scripts", ".ci"):
        for path in (repo / folder).rglob("*"):
            if path.is_file() and path.suffix in {"", ".py", ".sh"}:
                used |= set(re.findall(r"HOOKLINE_[A-Z][A-Z_]*[A-Z]", path.read_text("utf-8")))
    assert "HOOKLINE_BENCH_ROUTES" in used
    assert unknown_variables(dict.fromkeys(used, "1")) == []


def test_blank_account_name(tmp_path: Path) -> None:
    line = one_line_error(hookline(tmp_path, "accounts", "create", "   "))
    assert "The account name cannot be empty" in line
    account = "0192f3c4-0000-7000-8000-000000000001"
    label = one_line_error(hookline(tmp_path, "accounts", "add-key", account, "--name", " "), 2)
    assert "--name must not be blank" in label


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    result = hookline(tmp_path, "--debug", "accounts", "create", " ")
    assert result.returncode != 0
    assert "Traceback" in result.stdout + result.stderr


def test_commands_in_subfolders_use_the_same_data_directory(tmp_path: Path) -> None:
    created = hookline(tmp_path, "accounts", "create", "Acme", "--json")
    assert created.returncode == 0, created.stderr
    database = tmp_path / ".hookline" / "hookline.db"
    assert created.stderr.strip() == f"database: sqlite {database} (new)"
    nested = tmp_path / "services" / "billing"
    nested.mkdir(parents=True)
    listed = hookline(nested, "accounts", "list")
    assert listed.returncode == 0, listed.stderr
    assert "Acme" in listed.stdout
    assert listed.stderr.strip() == f"database: sqlite {database}"
    assert not (nested / ".hookline").exists()
    shown = hookline(nested, "info")
    assert f"data directory: {tmp_path / '.hookline'}" in shown.stdout
    relative = hookline(nested, "info", HOOKLINE_DATA_DIR="state")
    assert f"data directory: {nested / 'state'}" in relative.stdout
