"""Markup in the user's data is shown as text on the real page, never run and never parsed.

A user's traders are named with HTML and script payloads, one trader's definition carries a payload as
an unknown key (its refusal, "invalid definition — definition[...]: unknown field", quotes the key on
the page), and a stored signal carries payloads in its matched conditions. Symbols cannot carry markup
(the database checks ``^[A-Z0-9]{2,20}$``). The page must show every payload literally, no element may
come from one, nothing may run (``window.__xss`` stays undefined) and nothing may be logged.
"""

from __future__ import annotations

import json

import psycopg
import pytest
from e2ekit import DEFINITION, Browsers, fresh_user
from playwright.sync_api import expect

from signalguard.devstack.stack import LocalStack

pytestmark = pytest.mark.stack

NAMES = [
    '<img src=x onerror="window.__xss=1">',
    "<script>window.__xss=2</script>",
    '"><svg onload=window.__xss=3>',
    '</span><iframe srcdoc="<script>parent.__xss=4</script>"></iframe>',
    "&lt;b&gt;entity&lt;/b&gt; &amp; <b onmouseover=window.__xss=5>bold</b>",
]
#: Keys of a trader definition that the page quotes in its refusal (at most 40 characters are shown).
BAD_KEY = "<img src=x onerror=window.__xss=6>"
BAD_CONDITION_KEY = "<script>window.__xss=7</script>"
LABELS = ['<img src=x onerror="window.__xss=8">', "<script>window.__xss=9</script>"]

#: Watches the document from before the first script: an element inserted with a payload as a handler,
#: source or script is recorded, wherever it is inserted and however (innerHTML, insertAdjacentHTML, ...).
#: (A payload inside an attribute value that is text, like the toggle's aria-label, is fine.)
WATCH_INSERTIONS = """
window.__xssElements = [];
new MutationObserver((records) => {
  for (const record of records) {
    for (const node of record.addedNodes) {
      if (node.nodeType !== Node.ELEMENT_NODE) continue;
      const found = [node, ...node.querySelectorAll('*')].filter(
        (el) => [...el.attributes].some(
                  (a) => (a.name.startsWith('on') || a.name === 'src' || a.name === 'srcdoc') &&
                         a.value.includes('__xss')) ||
                (el.tagName === 'SCRIPT' && el.textContent.includes('__xss')));
      for (const el of found) window.__xssElements.push(el.outerHTML.slice(0, 200));
    }
  }
}).observe(document, {childList: true, subtree: true});
"""


def seed(stack: LocalStack) -> tuple[str, str]:
    """A user whose traders and stored signal carry the payloads; (email, user id)."""
    email, uid = fresh_user(stack, name=NAMES[0])
    invalid = dict(DEFINITION) | {BAD_KEY: 1}
    invalid_condition = dict(DEFINITION) | {
        "conditions": [{**DEFINITION["conditions"][0], BAD_CONDITION_KEY: 1}]
    }
    with stack.connect() as conn:
        for name, definition in [
            *[(n, DEFINITION) for n in NAMES[1:]],
            ("Invalid on purpose", invalid),
            (NAMES[1] + " (bad condition)", invalid_condition),
        ]:
            conn.execute(
                "insert into public.traders (user_id, name, definition) values (%s, %s, %s)",
                (uid, name, psycopg.types.json.Jsonb(definition)),
            )
        trader = conn.execute(
            "select id from public.traders where user_id = %s and name = %s", (uid, NAMES[0])
        ).fetchone()
        assert trader is not None
        # A stored signal (maintenance writes are not fenced); its epoch is a made-up one.
        conn.execute(
            "insert into public.signals (trader_id, user_id, symbol, interval, candle_open_time, price, "
            "matched_conditions, source, epoch) values (%s, %s, 'BTCUSDT', '1m', "
            "date_trunc('minute', now()) - interval '10 minutes', 101.5, %s, 'local', 1)",
            (trader[0], uid, LABELS),
        )
    return email, uid


def test_markup_in_names_definitions_and_labels_is_shown_as_text(
    stack: LocalStack, browsers: Browsers
) -> None:
    email, _ = seed(stack)
    ctx, watch = browsers.context()
    ctx.add_init_script(WATCH_INSERTIONS)
    tab = browsers.tab(ctx, watch).open().sign_in(email)
    page = tab.page
    rows = page.get_by_test_id("trader-row")
    expect(rows).to_have_count(len(NAMES) + 2)
    expect(page.get_by_test_id("signal-row")).to_have_count(1)
    page.wait_for_timeout(1_000)  # let anything that would run, run

    # Every name is the text of its row, exactly; the toggle's label quotes it as an attribute value.
    names = page.eval_on_selector_all(
        "[data-testid='trader-row'] .name", "els => els.map(e => e.textContent)"
    )
    assert sorted(names) == sorted([*NAMES, "Invalid on purpose", NAMES[1] + " (bad condition)"])
    labels = page.eval_on_selector_all(
        "[data-testid='trader-toggle']", "els => els.map(e => e.getAttribute('aria-label'))"
    )
    assert sorted(labels) == sorted(f"Enable {n}" for n in names)
    # The refusals quote the keys literally (as JSON strings inside the path).
    row = rows.filter(has_text="Invalid on purpose")
    what = row.locator(".what").text_content() or ""
    assert what.startswith(f"invalid definition — definition[{json.dumps(BAD_KEY)}]: unknown field"), what
    bad_condition = rows.filter(has_text="(bad condition)").locator(".what").text_content() or ""
    assert f"conditions[0][{json.dumps(BAD_CONDITION_KEY)}]: unknown field" in bad_condition

    # Nothing was made of the markup: the list holds only its own elements, no element anywhere carries
    # a payload, and nothing ran.
    tags = page.eval_on_selector_all("#traders *", "els => [...new Set(els.map(e => e.tagName))]")
    assert set(tags) <= {"LI", "INPUT", "SPAN", "BUTTON", "LABEL"}, tags
    alert_labels = page.eval_on_selector_all(
        "[data-testid='trader-alert-notify']", "els => els.map(e => e.getAttribute('aria-label'))"
    )
    assert sorted(alert_labels) == sorted(f"Browser notification for {n}" for n in names)
    assert page.evaluate("window.__xssElements") == []
    assert page.evaluate("typeof window.__xss") == "undefined"
    assert (
        page.evaluate("document.querySelectorAll('[onerror], [onload], [onmouseover], iframe').length") == 0
    )
    assert page.evaluate("[...document.scripts].filter(s => s.textContent.includes('__xss')).length") == 0
    body = page.evaluate("document.body.innerText")
    for payload in NAMES:
        assert payload in body

    # The editor shows a hostile trader as values and text too: the name in the field, the bad key in
    # the message, the JSON view as the textarea's value.
    for payload in NAMES[:2]:
        rows.filter(has_text=payload).first.get_by_test_id("trader-edit").click()
        expect(page.get_by_test_id("editor")).to_be_visible()
        expect(page.get_by_test_id("field-name")).to_have_value(payload)
        expect(page.get_by_test_id("editor-title")).to_have_text(f"Edit {payload}")
        page.get_by_test_id("editor-cancel").click()
    rows.filter(has_text="Invalid on purpose").get_by_test_id("trader-edit").click()
    expect(page.get_by_test_id("editor-error")).to_contain_text(
        f"definition[{json.dumps(BAD_KEY)}]: unknown field"
    )
    assert BAD_KEY in page.get_by_test_id("editor-json").input_value()
    page.get_by_test_id("editor-cancel").click()
    assert page.evaluate("window.__xssElements") == []
    assert page.evaluate("typeof window.__xss") == "undefined"
    # No console error and no page error from any of it (checked again when the context closes).
    watch.assert_clean()
