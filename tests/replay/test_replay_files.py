from __future__ import annotations

import json
import zipfile
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest

from signalguard.replay.series import (
    Bar,
    CandleFileError,
    load_files,
    parse_csv,
    parse_json,
    price_tick,
    to_document,
)

MINUTE = 60_000
T0 = 1_704_067_200_000  # 2024-01-01T00:00:00Z


def csv_row(i: int, close: str = "101.5", unit: int = 1, high: str = "102.0") -> str:
    t = (T0 + i * MINUTE) * unit
    close_time = t + MINUTE * unit - 1
    return f"{t},100.0,{high},99.5,{close},12.5,{close_time},1250.0,42,6.0,600.0,0\n"


def json_row(i: int) -> list[object]:
    fields: list[object] = list(csv_row(i).strip().split(","))
    for k in (0, 6, 8):
        fields[k] = int(str(fields[k]))
    return fields


def json_doc(interval: str, rows: list[list[object]]) -> str:
    return json.dumps({"interval": interval, "symbols": {"BTCUSDT": rows}})


HEADER = (
    "open_time,open,high,low,close,volume,close_time,quote_volume,count,"
    "taker_buy_volume,taker_buy_quote_volume,ignore\n"
)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_csv_without_header() -> None:
    series = parse_csv(csv_row(0) + csv_row(1), symbol="BTCUSDT")
    assert series.interval == "1m"
    assert series.bars == {
        "BTCUSDT": [Bar("100.0", "102.0", "99.5", "101.5", "12.5", "1250.0", 42, "6.0", "600.0")] * 2
    }


def test_csv_with_header_and_microseconds_and_gaps(tmp_path: Path) -> None:
    # The 2025+ spot dumps carry a header and microsecond times; a gap is fine (times are re-stamped).
    path = write(tmp_path, "ETHUSDT-1m-2025-01.csv", HEADER + csv_row(0, unit=1000) + csv_row(5, unit=1000))
    series = load_files([path])
    assert series.interval == "1m"
    assert series.symbols == ["ETHUSDT"]
    assert len(series.bars["ETHUSDT"]) == 2


def test_zipped_csv_and_json_merge(tmp_path: Path) -> None:
    archive = tmp_path / "BTCUSDT-1m-2024-01-01.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("BTCUSDT-1m-2024-01-01.csv", csv_row(0) + csv_row(1) + csv_row(2))
    other = parse_csv(csv_row(0, close="100.25"), symbol="SOLUSDT")
    doc = write(tmp_path, "more.json", json.dumps(to_document(other)))
    series = load_files([archive, doc])
    assert series.symbols == ["BTCUSDT", "SOLUSDT"]
    assert [len(b) for b in series.bars.values()] == [3, 1]
    assert series.bars["SOLUSDT"][0].close == "100.25"


def test_json_round_trip() -> None:
    series = parse_csv(csv_row(0) + csv_row(1, close="99.75"), symbol="XRPUSDT")
    document = to_document(series)
    rows = document["symbols"]["XRPUSDT"]  # type: ignore[index]
    assert rows[0] == [
        T0,
        "100.0",
        "102.0",
        "99.5",
        "101.5",
        "12.5",
        T0 + MINUTE - 1,
        "1250.0",
        42,
        "6.0",
        "600.0",
        "0",
    ]
    assert parse_json(json.dumps(document)) == series


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        (
            "BTCUSDT-1m.csv",
            csv_row(0) + csv_row(1, high="101.0"),
            "BTCUSDT-1m.csv:2: high 101.0 and low 99.5 do not enclose",
        ),
        ("BTCUSDT-1m.csv", HEADER + csv_row(0) + "1,2,3\n", "BTCUSDT-1m.csv:3: expected 12 fields, got 3"),
        ("BTCUSDT-1m.csv", csv_row(1) + csv_row(0), "BTCUSDT-1m.csv:2: open_time 1704067200000 is not after"),
        ("BTCUSDT-1m.csv", csv_row(0, close="NaN"), "BTCUSDT-1m.csv:1: close: expected a decimal number"),
        ("BTCUSDT-1m.csv", csv_row(0, close="-1"), "BTCUSDT-1m.csv:1: close: expected a decimal number"),
        (
            "BTCUSDT-1m.csv",
            csv_row(0).replace(f",{T0 + MINUTE - 1},", f",{T0 + MINUTE - 2},"),
            "BTCUSDT-1m.csv:1: close_time",
        ),
        (
            "BTCUSDT-1m.csv",
            csv_row(0) + csv_row(1).replace(f",{T0 + 2 * MINUTE - 1},", f",{T0 + MINUTE + 299_999},"),
            "BTCUSDT-1m.csv:2: a 5m candle in a 1m series",
        ),
        ("BTCUSDT-1m.csv", "", "BTCUSDT-1m.csv: no candles"),
        ("candles.csv", csv_row(0), "candles.csv: cannot tell symbol and interval"),
        ("BTCUSDT-5m-2024-01.csv", csv_row(0), "BTCUSDT-5m-2024-01.csv:1: a 1m candle in a 5m series"),
        ("x.json", '{"interval": "1m",\n "symbols": {"BTCUSDT": [[1, 2,]]}}', "x.json:2: not valid JSON"),
        ("x.json", '{"interval": "1M", "symbols": {}}', "x.json: interval: unsupported interval '1M'"),
        (
            "x.json",
            '{"interval": "1m", "symbols": {"BTCUSDT": [[0]]}}',
            "x.json: symbols.BTCUSDT[0]: expected 12 fields",
        ),
        (
            "x.json",
            json_doc("1m", [json_row(0), [*json_row(1)[:1], 100.0, *json_row(1)[2:]]]),
            "x.json: symbols.BTCUSDT[1]: open: expected a decimal number as a string, got 100.0",
        ),
        (
            "x.json",
            json_doc("5m", [json_row(0)]),
            "x.json: symbols.BTCUSDT[0]: a 1m candle in a 5m series",
        ),
    ],
)
def test_bad_files_name_file_and_line(tmp_path: Path, name: str, text: str, expected: str) -> None:
    path = write(tmp_path, name, text)
    with pytest.raises(CandleFileError) as info:
        load_files([path])
    assert str(info.value).startswith(f"{path.parent}/{expected}"), str(info.value)


def test_files_must_agree(tmp_path: Path) -> None:
    one = write(tmp_path, "BTCUSDT-1m.csv", csv_row(0))
    again = write(tmp_path, "BTCUSDT-1m-2.csv", csv_row(0))
    with pytest.raises(CandleFileError, match="BTCUSDT was already loaded"):
        load_files([one, again])
    five = write(tmp_path, "ETHUSDT-5m.csv", f"{T0},1,1,1,1,1,{T0 + 299_999},1,1,1,1,0\n")
    with pytest.raises(CandleFileError, match=r"ETHUSDT-5m\.csv: 5m candles, but the other files have 1m"):
        load_files([one, five])
    with pytest.raises(CandleFileError, match="cannot read"):
        load_files([tmp_path / "missing.csv"])


def test_forming_candle_moves_on_the_price_grid_inside_the_final_candle() -> None:
    bar = Bar(
        "100.00000000",
        "103.50000000",
        "98.00000000",
        "103.00000000",
        "10.00000",
        "1000.0",
        10,
        "4.0",
        "400.0",
    )
    updates = [bar.forming(Fraction(j, 4), Decimal("0.01")) for j in (1, 2, 3)]
    assert [u.close for u in updates] == ["100.75000000", "101.50000000", "102.25000000"]
    assert [u.volume for u in updates] == ["2.50000", "5.00000", "7.50000"]
    assert [u.trades for u in updates] == [2, 5, 7]
    for u in updates:
        assert Decimal(bar.low) <= Decimal(u.low) <= Decimal(u.close) <= Decimal(u.high) <= Decimal(bar.high)
        assert u.open == bar.open
    # A falling candle: the low follows the close down, the high stays at the open.
    down = Bar("2.0000", "2.1000", "1.0000", "1.0000", "3", "3", 3, "1", "1").forming(
        Fraction(1, 3), Decimal("0.01")
    )
    assert (down.high, down.low, down.close, down.volume) == ("2.0000", "1.6700", "1.6700", "1")


def test_price_tick_is_the_finest_decimal_in_use() -> None:
    bars = parse_csv(csv_row(0) + csv_row(1, close="101.25"), symbol="BTCUSDT").bars["BTCUSDT"]
    assert price_tick(bars) == Decimal("0.01")
    assert price_tick(bars[:1]) == Decimal("0.1")


def test_open_times_on_interval_boundaries() -> None:
    week, monday = 7 * 86_400_000, T0  # 2024-01-01 was a Monday: Binance's weeks open then
    weekly = "".join(
        f"{monday + i * week},1,1,1,1,1,{monday + (i + 1) * week - 1},1,1,1,1,0\n" for i in range(2)
    )
    assert parse_csv(weekly, symbol="BTCUSDT").interval == "1w"
    off = f"{T0 + 1},1,1,1,1,1,{T0 + MINUTE},1,1,1,1,0\n"
    with pytest.raises(CandleFileError, match=r"^<csv>:1: open_time 1704067200001 is not on a 1m boundary"):
        parse_csv(off, symbol="BTCUSDT")
