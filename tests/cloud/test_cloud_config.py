"""``signalguard cloud``'s configuration: every variable checked up front, one line on stderr, exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from typing import Any

import pytest
from cloudkit import unsigned_token

from signalguard.cli import main
from signalguard.cloud.config import ConfigError, derive_stream_url, load_config, read_machine_token

OWNER = str(uuid.uuid4())
MACHINE = str(uuid.uuid4())


MACHINE_TOKEN = unsigned_token(
    {"role": "authenticated", "sub": OWNER, "machine_id": MACHINE, "aud": "authenticated"}
)
MACHINE_KEY = "sgm_" + "0123456789abcdef" * 4
GOOD = {
    "SIGNALGUARD_SUPABASE_URL": "https://abcd.supabase.co/",
    "SIGNALGUARD_SUPABASE_ANON_KEY": "eyJ.anon.key",
    "SIGNALGUARD_MACHINE_TOKEN": MACHINE_TOKEN,
}


def test_good_configuration_and_defaults() -> None:
    config = load_config(GOOD)
    assert config.supabase_url == "https://abcd.supabase.co"
    assert (config.owner_id, config.machine_id) == (OWNER, MACHINE)
    assert config.market_data_url == "https://api.binance.com"
    assert config.market_stream_url == "wss://stream.binance.com:9443"
    assert config.log_level == "INFO"
    assert MACHINE_TOKEN not in repr(config) and "anon.key" not in repr(config)


def test_a_machine_key_instead_of_a_token() -> None:
    env = {k: v for k, v in GOOD.items() if k != "SIGNALGUARD_MACHINE_TOKEN"}
    config = load_config({**env, "SIGNALGUARD_MACHINE_KEY": f"  {MACHINE_KEY}\n"})
    assert config.machine_key == MACHINE_KEY and config.machine_token == ""
    # Whose machine it is, the database says when the worker starts.
    assert (config.owner_id, config.machine_id) == ("", "")
    assert MACHINE_KEY not in repr(config)


def test_market_urls_and_log_level() -> None:
    config = load_config(
        {**GOOD, "SIGNALGUARD_MARKET_DATA_URL": "http://127.0.0.1:9443", "SIGNALGUARD_LOG_LEVEL": "debug"}
    )
    assert config.market_stream_url == "ws://127.0.0.1:9443" and config.log_level == "DEBUG"
    assert derive_stream_url("https://replay.example.com:8443/") == "wss://replay.example.com:8443"
    explicit = load_config({**GOOD, "SIGNALGUARD_MARKET_STREAM_URL": "wss://stream.binance.us:9443"})
    assert explicit.market_stream_url == "wss://stream.binance.us:9443"


@pytest.mark.parametrize(
    ("change", "variable", "problem"),
    [
        ({"SIGNALGUARD_SUPABASE_URL": None}, "SIGNALGUARD_SUPABASE_URL", "is not set"),
        ({"SIGNALGUARD_SUPABASE_URL": "  "}, "SIGNALGUARD_SUPABASE_URL", "is not set"),
        (
            {"SIGNALGUARD_SUPABASE_URL": "abcd.supabase.co"},
            "SIGNALGUARD_SUPABASE_URL",
            "must be a http or https URL",
        ),
        ({"SIGNALGUARD_SUPABASE_ANON_KEY": None}, "SIGNALGUARD_SUPABASE_ANON_KEY", "is not set"),
        (
            {"SIGNALGUARD_SUPABASE_ANON_KEY": "a b"},
            "SIGNALGUARD_SUPABASE_ANON_KEY",
            "must not contain whitespace",
        ),
        ({"SIGNALGUARD_MACHINE_TOKEN": None}, "SIGNALGUARD_MACHINE_KEY", "is not set: make a key"),
        (
            {"SIGNALGUARD_MACHINE_TOKEN": None, "SIGNALGUARD_MACHINE_KEY": "sgm_" + "A" * 64},
            "SIGNALGUARD_MACHINE_KEY",
            "is not a machine key",
        ),
        (
            {"SIGNALGUARD_MACHINE_TOKEN": None, "SIGNALGUARD_MACHINE_KEY": MACHINE_TOKEN},
            "SIGNALGUARD_MACHINE_KEY",
            "set it as SIGNALGUARD_MACHINE_TOKEN",
        ),
        ({"SIGNALGUARD_MACHINE_KEY": MACHINE_KEY}, "SIGNALGUARD_MACHINE_KEY", "are both set"),
        ({"SIGNALGUARD_MACHINE_TOKEN": "not-a-jwt"}, "SIGNALGUARD_MACHINE_TOKEN", "is not a JWT"),
        ({"SIGNALGUARD_MACHINE_TOKEN": "a.!!!.c"}, "SIGNALGUARD_MACHINE_TOKEN", "not base64url-encoded JSON"),
        (
            {"SIGNALGUARD_MACHINE_TOKEN": unsigned_token({"role": "authenticated", "sub": OWNER})},
            "SIGNALGUARD_MACHINE_TOKEN",
            "has no 'machine_id' claim (the cloud_machines.id) (is this a user token",
        ),
        (
            {"SIGNALGUARD_MACHINE_TOKEN": unsigned_token({"role": "anon"})},
            "SIGNALGUARD_MACHINE_TOKEN",
            "must have role 'authenticated', not 'anon'",
        ),
        (
            {
                "SIGNALGUARD_MACHINE_TOKEN": unsigned_token(
                    {"role": "authenticated", "sub": "x", "machine_id": MACHINE}
                )
            },
            "SIGNALGUARD_MACHINE_TOKEN",
            "has a 'sub' claim that is not a uuid",
        ),
        (
            {"SIGNALGUARD_MARKET_DATA_URL": "ftp://x"},
            "SIGNALGUARD_MARKET_DATA_URL",
            "must be a http or https URL",
        ),
        (
            {"SIGNALGUARD_MARKET_STREAM_URL": "https://x"},
            "SIGNALGUARD_MARKET_STREAM_URL",
            "must be a ws or wss URL",
        ),
        ({"SIGNALGUARD_LOG_LEVEL": "LOUD"}, "SIGNALGUARD_LOG_LEVEL", "must be one of DEBUG, INFO"),
    ],
)
def test_bad_configuration_names_the_variable(
    change: dict[str, str | None], variable: str, problem: str
) -> None:
    env = {k: v for k, v in {**GOOD, **change}.items() if v is not None}
    with pytest.raises(ConfigError) as info:
        load_config(env)
    assert info.value.variable == variable
    assert str(info.value).startswith(f"{variable} ") and problem in str(info.value)
    assert MACHINE_TOKEN not in str(info.value)


def test_the_token_is_read_not_verified() -> None:
    # The signature is garbage; the database verifies it, the worker only needs the ids.
    assert read_machine_token(MACHINE_TOKEN) == (OWNER, MACHINE)


def test_cli_bad_configuration_exits_2_with_one_line(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    for name in [n for n in os.environ if n.startswith("SIGNALGUARD_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("SIGNALGUARD_SUPABASE_URL", "https://abcd.supabase.co")
    assert main(["cloud"]) == 2
    err = capsys.readouterr().err
    assert err == "signalguard cloud: SIGNALGUARD_SUPABASE_ANON_KEY is not set\n"


def test_python_m_signalguard_cloud_exits_2_without_configuration() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNALGUARD_")}
    done = subprocess.run(
        [sys.executable, "-m", "signalguard", "cloud"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert done.stderr == "signalguard cloud: SIGNALGUARD_SUPABASE_URL is not set\n" and done.stdout == ""


def test_cli_help_lists_the_environment(capsys: Any) -> None:
    with pytest.raises(SystemExit) as info:
        main(["cloud", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for name in (
        "SIGNALGUARD_SUPABASE_URL",
        "SIGNALGUARD_MACHINE_TOKEN",
        "SIGNALGUARD_LOG_LEVEL",
        "exit codes",
    ):
        assert name in out
