"""Settings: one frozen tree from settings.toml and DOCKPING_* variables; bad input exits 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dockping.settings import Duration, Settings, SettingsError, format_duration, load

ROOT = Path(__file__).parent.parent


def test_the_shipped_settings_file_loads_with_the_documented_defaults() -> None:
    """settings.toml at the top of the repo holds the issue's defaults."""
    settings = load(ROOT / "settings.toml", {})
    assert settings.data_dir == ".data"
    assert (settings.ingest.host, settings.ingest.port) == ("127.0.0.1", 8080)
    assert (settings.query.host, settings.query.port) == ("127.0.0.1", 8081)
    assert settings.agent.probe_interval == 20.0
    assert settings.agent.probe_timeout == 2.0
    assert settings.agent.concurrency == 256
    assert settings.agent.ingest_url == "http://127.0.0.1:8080"


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    """DOCKPING_<SECTION>__<KEY> and DOCKPING_DATA_DIR win over the file."""
    path = tmp_path / "s.toml"
    path.write_text('[query]\nport = 9000\n[agent]\nprobe_interval = "5s"\n')
    settings = load(
        path,
        {
            "DOCKPING_QUERY__PORT": "18081",
            "DOCKPING_DATA_DIR": "/x",
            "DOCKPING_AGENT__RESYNC_INTERVAL": "1m",
        },
    )
    assert settings.query.port == 18081
    assert settings.data_dir == "/x"
    assert settings.agent.probe_interval == 5.0
    assert settings.agent.resync_interval == 60.0


def test_settings_are_frozen() -> None:
    """No code can change a setting after load."""
    settings = load(None, {})
    with pytest.raises(AttributeError):
        settings.query.port = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("toml", "environ", "named"),
    [
        ("[query]\nprot = 1\n", {}, "query.prot"),
        ("colour = 1\n", {}, "colour"),
        ('[query]\nport = "high"\n', {}, "query.port"),
        ("[query]\nport = 70000\n", {}, "query.port"),
        ('[agent]\nprobe_interval = "soon"\n', {}, "agent.probe_interval"),
        ('[agent]\nprobe_interval = "0s"\n', {}, "agent.probe_interval"),
        ('[log]\nlevel = "loud"\n', {}, "log.level"),
        ("", {"DOCKPING_QUERY__PROT": "1"}, "query.prot"),
        ("", {"DOCKPING_NOPE__PORT": "1"}, "nope"),
        ("", {"DOCKPING_AGENT__CONCURRENCY": "many"}, "agent.concurrency"),
        ("[query\n", {}, "not valid TOML"),
        ('[database]\npartition_interval = "90m"\n', {}, "database.partition_interval"),
        ('[database]\nrollup_interval = "0s"\n', {}, "database.rollup_interval"),
    ],
)
def test_bad_settings_name_the_key(
    tmp_path: Path, toml: str, environ: dict[str, str], named: str
) -> None:
    """An unknown key, a bad value or a bad duration is an error naming the key."""
    path = tmp_path / "s.toml"
    path.write_text(toml)
    with pytest.raises(SettingsError) as caught:
        load(path, environ)
    assert named in str(caught.value)


def test_the_command_exits_2_on_bad_settings(tmp_path: Path) -> None:
    """`dockping` prints the bad key and exits with code 2, without a traceback."""
    path = tmp_path / "s.toml"
    path.write_text('[agent]\nprobe_timeout = "2 fortnights"\n')
    done = subprocess.run(
        [sys.executable, "-m", "dockping", "--settings", str(path), "migrate"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "agent.probe_timeout" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_missing_settings_file_exits_2(tmp_path: Path) -> None:
    """--settings naming a file that is not there is a settings error."""
    done = subprocess.run(
        [sys.executable, "-m", "dockping", "--settings", str(tmp_path / "none.toml"), "migrate"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "not found" in done.stderr


@given(
    st.integers(min_value=1, max_value=10**7),
    st.sampled_from(["us", "ms", "s", "m", "h", "d", "w"]),
)
def test_durations_parse_and_print_back(count: int, unit: str) -> None:
    """A duration written back and parsed again is the same length of time."""
    parsed = Duration.parse(f"{count}{unit}")
    assert Duration.parse(format_duration(parsed)) == pytest.approx(parsed, rel=1e-9)


def test_every_key_is_documented_with_its_variable() -> None:
    """`dockping settings` lists each key with its environment variable."""
    done = subprocess.run(
        [sys.executable, "-m", "dockping", "settings"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=ROOT,
    )
    for section in ("log", "database", "ingest", "query", "agent"):
        kind = msgspec.structs.fields(Settings)
        names = next(f for f in kind if f.name == section).type.__struct_fields__
        for name in names:
            assert f"DOCKPING_{section.upper()}__{name.upper()}" in done.stdout
