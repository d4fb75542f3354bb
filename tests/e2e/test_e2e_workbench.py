"""The trader workbench in Chromium: make a trader from a template, edit it, save it, see it generate.

The module's replay serves BTCUSDT and ETHUSDT on ``1s`` (conftest's ``fast_replay``), so a trader
saved on that stream signals within seconds. What the page checks is the core's own validator;
what it saves, the database checks again.
"""

from __future__ import annotations

import json
import re
from typing import Any

import psycopg
import pytest
from e2ekit import FAST_TRADER, AppPage, Browsers, Watch, cloud_worker, fresh_user, wait_until
from playwright.sync_api import Locator, expect

from signalguard.devstack.stack import LocalStack
from signalguard.replay.server import ReplayServer

pytestmark = pytest.mark.stack


def traders_of(stack: LocalStack, uid: str) -> dict[str, dict[str, Any]]:
    """The user's traders by name: id, definition, enabled."""
    with stack.connect() as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        cur.execute("select id, name, definition, enabled from public.traders where user_id = %s", (uid,))
        return {str(r["name"]): r for r in cur.fetchall()}


def signal_traders(stack: LocalStack, uid: str) -> set[str]:
    with stack.connect() as conn:
        rows = conn.execute("select distinct trader_id from public.signals where user_id = %s", (uid,))
        return {str(r[0]) for r in rows.fetchall()}


def labels_of(stack: LocalStack, uid: str) -> set[str]:
    """Every matched condition of the user's signals, as recorded (``RSI(2) 31.4 < 45``)."""
    with stack.connect() as conn:
        rows = conn.execute(
            "select distinct unnest(matched_conditions) from public.signals where user_id = %s", (uid,)
        )
        return {str(r[0]) for r in rows.fetchall()}


def field(tab: AppPage, path: str) -> Locator:
    return tab.page.get_by_test_id("editor").get_by_test_id(f"field-{path}")


def error_of(tab: AppPage, path: str) -> Locator:
    return tab.page.locator(f"#editor [data-testid='field-error'][data-for='{path}']")


def row_of(tab: AppPage, name: str) -> Locator:
    return tab.page.get_by_test_id("trader-row").filter(has_text=name)


def context(tabs: Browsers) -> tuple[Any, Watch]:
    """A browser profile whose pages may be refused history the module's replay does not have.

    The templates' 15m and 1h candles are not in the replay (1s only): the preview's request for them
    is refused, as Binance refuses an unknown stream, and the browser logs that.
    """
    ctx, watch = tabs.context()
    watch.allow(r"status of 400 .*/api/v3/klines\?symbol=\w+&interval=(?!1s&)\w+")
    return ctx, watch


def user(stack: LocalStack, *, machine: bool = False) -> tuple[str, str]:
    return fresh_user(stack, machine=machine, definition=FAST_TRADER, name="Fast RSI")


def test_a_trader_made_from_a_template_generates(fast_stack: LocalStack, fast_tabs: Browsers) -> None:
    email, uid = user(fast_stack)
    ctx, watch = context(fast_tabs)
    tab = fast_tabs.tab(ctx, watch).open().sign_in(email)
    expect(tab.badge).to_have_attribute("data-mode", "browser")
    page = tab.page
    editor = page.get_by_test_id("editor")
    expect(editor).to_be_hidden()

    page.get_by_test_id("trader-new").click()
    expect(editor).to_be_visible()
    templates = page.get_by_test_id("editor-template")
    expect(templates).to_have_count(4)
    templates.filter(has_text="EMA cross").click()
    expect(field(tab, "name")).to_have_value("EMA cross")
    templates.filter(has_text="RSI oversold").click()
    expect(field(tab, "name")).to_have_value("RSI oversold")
    expect(field(tab, "conditions[0].indicator")).to_have_value("rsi")

    # Tune it to the module's fast stream: one symbol, 1s candles, a threshold that triggers often.
    field(tab, "name").fill("Quick RSI")
    symbols = page.get_by_test_id("editor-symbol")
    expect(symbols).to_have_count(2)
    symbols.filter(has_text="ETHUSDT").get_by_test_id("editor-symbol-remove").click()
    expect(symbols).to_have_count(1)
    # The picker searches the market data's own list (the replay serves two symbols).
    page.get_by_test_id("editor-symbol-search").fill("eth")
    suggestion = page.get_by_test_id("editor-suggestion")
    expect(suggestion).to_have_text(["ETHUSDT"])
    suggestion.click()
    expect(symbols).to_have_count(2)
    symbols.filter(has_text="ETHUSDT").get_by_test_id("editor-symbol-remove").click()
    expect(symbols).to_have_count(1)
    field(tab, "interval").select_option("1s")
    field(tab, "conditions[0].period").fill("2")
    field(tab, "conditions[0].value").fill("60")
    field(tab, "cooldown_candles").fill("0")
    expect(page.get_by_test_id("editor-summary")).to_contain_text("BTCUSDT · 1s · RSI(2) < 60")
    expect(editor).to_have_attribute("data-valid", "1")

    # The preview runs the same engine over the loaded history, and follows the threshold.
    preview = page.get_by_test_id("editor-preview")
    expect(preview).to_have_attribute("data-state", "ready", timeout=15_000)
    expect(page.get_by_test_id("editor-preview-headline")).to_contain_text("closed 1s candles of BTCUSDT")
    at_60 = int(preview.get_attribute("data-signals") or -1)
    assert at_60 > 0
    expect(page.get_by_test_id("preview-win-rate")).to_be_visible()
    chart = page.get_by_test_id("chart")
    expect(chart).to_have_attribute("data-symbol", "BTCUSDT")
    expect(chart).not_to_have_attribute("data-markers-preview", "0", timeout=15_000)
    field(tab, "conditions[0].value").fill("10")
    expect(preview).not_to_have_attribute("data-signals", str(at_60))
    assert int(preview.get_attribute("data-signals") or -1) < at_60
    field(tab, "conditions[0].value").fill("60")
    expect(preview).to_have_attribute("data-signals", str(at_60))

    # An invalid value: the core's message beside the field, and no saving.
    field(tab, "conditions[0].period").fill("1")
    expect(error_of(tab, "conditions[0].period")).to_have_text("must be an integer between 2 and 500")
    expect(page.get_by_test_id("editor-save")).to_be_disabled()
    field(tab, "conditions[0].value").fill("abc")
    expect(error_of(tab, "conditions[0].value")).to_have_text("must be a number between 0 and 100")
    field(tab, "conditions[0].period").fill("2")
    field(tab, "conditions[0].value").fill("60")
    expect(error_of(tab, "conditions[0].period")).to_be_hidden()
    expect(page.get_by_test_id("editor-save")).to_be_enabled()

    page.get_by_test_id("editor-save").click()
    expect(editor).to_be_hidden(timeout=10_000)
    expect(row_of(tab, "Quick RSI")).to_contain_text("BTCUSDT · 1s · RSI(2) < 60")
    stored = traders_of(fast_stack, uid)["Quick RSI"]
    assert stored["enabled"] is True
    assert stored["definition"]["symbols"] == ["BTCUSDT"]
    assert stored["definition"]["conditions"] == [{"indicator": "rsi", "period": 2, "op": "<", "value": 60}]
    assert stored["definition"]["trade"]["side"] == "long"

    # The generating tab runs it from the next candles on.
    new_id = str(stored["id"])
    wait_until("signals of the new trader", lambda: new_id in signal_traders(fast_stack, uid), timeout=40)
    watch.assert_clean()


def test_an_edit_in_one_tab_shows_in_another_and_a_draft_survives_a_reload(
    fast_stack: LocalStack, fast_tabs: Browsers
) -> None:
    email, uid = user(fast_stack)
    ctx, watch = context(fast_tabs)
    first = fast_tabs.tab(ctx, watch).open().sign_in(email)
    expect(first.badge).to_have_attribute("data-mode", "browser")
    second = fast_tabs.tab(ctx, watch).open().wait_ready()
    expect(second.badge).to_have_attribute("data-mode", "standby")

    # The other tab may look but not change: the editor opens read-only, saying why.
    row_of(second, "Fast RSI").get_by_test_id("trader-edit").click()
    expect(second.page.get_by_test_id("editor")).to_have_attribute("data-read-only", "1")
    expect(second.page.get_by_test_id("editor-note")).to_contain_text("another tab or device is generating")
    expect(field(second, "conditions[0].value")).to_be_disabled()
    second.page.get_by_test_id("editor-cancel").click()

    # The generating tab edits the threshold and saves; the other tab shows it within 5 s.
    row_of(first, "Fast RSI").get_by_test_id("trader-edit").click()
    expect(first.page.get_by_test_id("editor-title")).to_have_text("Edit Fast RSI")
    field(first, "conditions[0].value").fill("45")
    first.page.get_by_test_id("editor-save").click()
    expect(first.page.get_by_test_id("editor")).to_be_hidden(timeout=10_000)
    expect(row_of(second, "Fast RSI")).to_contain_text("RSI(2) < 45", timeout=7_000)
    assert traders_of(fast_stack, uid)["Fast RSI"]["definition"]["conditions"][0]["value"] == 45
    # The generating tab runs the new definition from the next closed candles on.
    wait_until(
        "a signal of the edited definition",
        lambda: any(re.fullmatch(r"RSI\(2\) \d+\.\d < 45", t) for t in labels_of(fast_stack, uid)) or None,
        timeout=30,
    )

    # A half-edited trader survives a reload of the tab; nothing of it was saved.
    first.page.get_by_test_id("trader-new").click()
    field(first, "name").fill("Half done")
    field(first, "conditions[0].period").fill("7")
    expect(first.page.get_by_test_id("editor-status")).to_contain_text("kept in this browser")
    first.page.reload()
    first.wait_ready()
    editor = first.page.get_by_test_id("editor")
    expect(editor).to_be_visible()
    expect(first.page.get_by_test_id("editor-status")).to_contain_text("restored")
    expect(field(first, "name")).to_have_value("Half done")
    expect(field(first, "conditions[0].period")).to_have_value("7")
    assert "Half done" not in traders_of(fast_stack, uid)
    first.page.get_by_test_id("editor-cancel").click()
    expect(first.page.get_by_test_id("editor")).to_be_hidden()
    # Cancel forgets the kept draft (the browser's store answers asynchronously).
    key = f"trader-draft:{uid}"
    wait_until(
        "the draft forgotten",
        lambda: first.page.evaluate("(k) => globalThis.signalguard.storeGet(k)", key) == "" or None,
        timeout=5,
    )
    first.page.reload()
    first.wait_ready()
    expect(first.page.get_by_test_id("editor")).to_be_hidden()
    watch.assert_clean()


def test_the_editor_is_read_only_while_the_cloud_generates(
    fast_stack: LocalStack, fast_replay: ReplayServer, fast_tabs: Browsers
) -> None:
    email, uid = user(fast_stack, machine=True)
    with cloud_worker(fast_stack, fast_replay.url, email):
        ctx, watch = context(fast_tabs)
        tab = fast_tabs.tab(ctx, watch).open().sign_in(email)
        expect(tab.badge).to_have_attribute("data-mode", "cloud", timeout=40_000)
        tab.page.get_by_test_id("trader-new").click()
        editor = tab.page.get_by_test_id("editor")
        expect(editor).to_have_attribute("data-read-only", "1")
        expect(tab.page.get_by_test_id("editor-note")).to_contain_text("cloud machine is generating")
        expect(field(tab, "name")).to_be_disabled()
        expect(tab.page.get_by_test_id("editor-save")).to_be_disabled()
        assert list(traders_of(fast_stack, uid)) == ["Fast RSI"]
        watch.assert_clean()


def test_the_database_refuses_what_the_core_refuses_naming_the_field(
    fast_stack: LocalStack, fast_tabs: Browsers
) -> None:
    email, uid = user(fast_stack)
    ctx, watch = context(fast_tabs)
    tab = fast_tabs.tab(ctx, watch).open().sign_in(email)
    # The browser logs the API's 400 answers itself.
    watch.allow(r"status of 400 .*/rest/v1/traders")
    bad = {**FAST_TRADER, "conditions": [{"indicator": "rsi", "period": 1, "op": "<", "value": 50}]}
    # Through the page's own client (the signed-in user's session), around the editor.
    insert = tab.page.evaluate(
        "(d) => globalThis.signalguard.from('traders')"
        ".insert({name: 'Sneaky', definition: d}).select('id').execute()",
        bad,
    )
    assert insert["status"] == 400 and insert["error"]["code"] == "SG009"
    assert insert["error"]["message"] == (
        "invalid_argument: definition.conditions[0].period: must be an integer between 2 and 500"
    )
    trader = str(traders_of(fast_stack, uid)["Fast RSI"]["id"])
    update = tab.page.evaluate(
        "([id, d]) => globalThis.signalguard.from('traders').update({definition: d}).eq('id', id).execute()",
        [trader, {**FAST_TRADER, "interval": "2m"}],
    )
    assert update["status"] == 400 and update["error"]["message"].startswith(
        'invalid_argument: definition.interval: must be one of "1s", "1m"'
    )
    # Nothing changed.
    stored = traders_of(fast_stack, uid)
    assert list(stored) == ["Fast RSI"] and stored["Fast RSI"]["definition"] == FAST_TRADER
    watch.assert_clean()


def test_duplicate_the_json_view_and_delete(fast_stack: LocalStack, fast_tabs: Browsers) -> None:
    email, uid = user(fast_stack)
    ctx, watch = context(fast_tabs)
    tab = fast_tabs.tab(ctx, watch).open().sign_in(email)
    expect(tab.badge).to_have_attribute("data-mode", "browser")
    page = tab.page
    row_of(tab, "Fast RSI").get_by_test_id("trader-duplicate").click()
    expect(field(tab, "name")).to_have_value("Fast RSI (copy)")

    # The JSON view: text that does not parse is kept and explained, and the form keeps the last good
    # definition; an object that parses becomes the form.
    page.locator("#editor details summary").click()
    json_view = page.get_by_test_id("editor-json")
    json_view.fill('{"version": 1,')
    expect(page.get_by_test_id("editor-json-error")).to_contain_text("not valid JSON")
    expect(page.get_by_test_id("editor-save")).to_be_disabled()
    json_view.fill(json.dumps({**FAST_TRADER, "match": "any", "cooldown_candles": 3}))
    expect(page.get_by_test_id("editor-json-error")).to_be_hidden()
    expect(field(tab, "match")).to_have_value("any")
    expect(field(tab, "cooldown_candles")).to_have_value("3")
    json_view.fill(json.dumps({**FAST_TRADER, "interval": "2m"}))
    expect(error_of(tab, "interval")).to_contain_text('must be one of "1s"')
    json_view.fill(json.dumps({**FAST_TRADER, "cooldown_candles": 3}))
    page.get_by_test_id("editor-save").click()
    expect(row_of(tab, "Fast RSI (copy)")).to_be_visible(timeout=10_000)
    assert traders_of(fast_stack, uid)["Fast RSI (copy)"]["definition"]["cooldown_candles"] == 3

    # Delete asks first; dismissed, nothing happens; accepted, the trader is gone.
    row_of(tab, "Fast RSI (copy)").get_by_test_id("trader-edit").click()
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.get_by_test_id("editor-delete").click()
    expect(page.get_by_test_id("editor")).to_be_visible()
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_test_id("editor-delete").click()
    expect(page.get_by_test_id("editor")).to_be_hidden(timeout=10_000)
    expect(row_of(tab, "Fast RSI (copy)")).to_have_count(0)
    assert list(traders_of(fast_stack, uid)) == ["Fast RSI"]
    watch.assert_clean()
