from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from signalguard.cli import main


def test_replay_command_serves_until_interrupted() -> None:
    command = [
        sys.executable,
        "-m",
        "signalguard",
        "replay",
        "--synthetic",
        "--port",
        "0",
        "--candles",
        "300",
    ]
    with subprocess.Popen([*command, "--history", "100"], stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if "Press Ctrl-C" in line:
                break
        banner = "".join(lines)
        try:
            rest = re.search(r"REST base:\s+(\S+)", banner)
            ws = re.search(r"WS base:\s+(\S+)", banner)
            assert rest and ws, banner
            assert ws[1] == rest[1].replace("http://", "ws://")
            assert rest[1].startswith("http://127.0.0.1:")
            assert "BTCUSDT, ETHUSDT on 1m: 300 candles, 100 of them history; speed 1" in banner
            assert "Planted setups:" in banner
            rows = httpx.get(
                f"{rest[1]}/api/v3/klines", params={"symbol": "ETHUSDT", "interval": "1m"}
            ).json()
            assert len(rows) == 100
        finally:
            proc.send_signal(signal.SIGINT)
            out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0
    assert "stopping" in out


def test_bad_input_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", "--file", str(tmp_path / "BTCUSDT-1m-x.csv")]) == 2
    assert main(["replay", "--synthetic", "--candles", "300", "--history", "301"]) == 2
    err = capsys.readouterr().err
    assert "BTCUSDT-1m-x.csv: cannot read" in err
    assert "history must be 0..300" in err
