"""Configuration as hostile input: the page's ``config.json`` and the worker's environment.

Both readers promise one error type (``ConfigError``) naming the setting at fault, and a configuration
they accept must be usable: absolute http(s) (or ws(s)) URLs with a host, a valid port and no query,
fragment, whitespace or control characters, and the ids of the machine token as canonical UUIDs. Each
case changes one setting of a valid configuration (or breaks the whole document), so a refusal must name
that setting.

The runs found nine ways the readers failed that promise (deep JSON, unusable URLs, values echoed whole,
a wrong-typed setting silently replaced); each is kept as a regression test at the end of this file.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from typing import Any
from urllib.parse import urlsplit

import pytest
from fuzzkit import (
    MAX_MESSAGE,
    STYLES,
    UNDECODABLE,
    WRONG_TYPES,
    Tally,
    assert_clear,
    core_cases,
    fuzz_settings,
    nested,
    pick,
    render,
    with_duplicate,
    with_fragment,
)
from hypothesis import given
from hypothesis import strategies as st

from signalguard.browser.config import CONFIG_PATH, AppConfig
from signalguard.browser.config import ConfigError as PageConfigError
from signalguard.cloud.config import ConfigError as WorkerConfigError
from signalguard.cloud.config import WorkerConfig, load_config

CASES = core_cases()
_CONTROL = re.compile(r"[\x00-\x20\x7f-\x9f]")

# -- URLs, valid and not --------------------------------------------------------------------------

SCHEMES = ["http://", "https://", "HTTPS://", "ws://", "wss://", "ftp://", "javascript:", "data:,", "//", ""]
HOSTS = [
    "127.0.0.1",
    "abcd.supabase.co",
    "localhost:54321",
    "h:8000",
    "[::1]",
    "[::1]:80",
    "user:pw@h",
    "例え.jp",
    "h:99999",
    "h:abc",
    "[::1",
    "h]",
    "ex℀ample.com",
    "ｈｏｓｔ：80",
    "a\tb",
    "a b",
    "a\nb",
    "a\x00b",
    "a\x7fb",
    "<script>",
    "",
]
TAILS = ["", "/", "/rest/v1/", "?x=1", "#top", "/a b", "/\u202e", "//", ":", "/" + "x" * 3000, "\n", " "]


@st.composite
def urls(draw: st.DrawFn) -> str:
    if draw(st.integers(0, 9)) == 0:
        return draw(st.text(max_size=30))
    return pick(draw, SCHEMES) + pick(draw, HOSTS) + pick(draw, TAILS)


def usable_url(url: str, schemes: tuple[str, ...]) -> str | None:
    """Why ``url`` is not a usable absolute URL of one of ``schemes`` (None: it is)."""
    if _CONTROL.search(url):
        return "has whitespace or control characters"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f"does not parse ({exc})"
    if parts.scheme.lower() not in schemes:
        return f"has scheme {parts.scheme!r}"
    if not parts.hostname:
        return "has no host"
    if parts.query or parts.fragment or url.endswith("/"):
        return "has a query, fragment or trailing slash"
    if port is not None and not 0 < port < 65536:
        return "has port 0"
    return None


# -- the page's config.json ---------------------------------------------------------------------

ORIGINS = ["http://127.0.0.1:8000", "https://app.example.com"]
ANON = "eyJhbGciOiJIUzI1NiJ9.eyJyb2xlIjoiYW5vbiJ9.c2lnbmF0dXJl"
PAGE_KEYS = ("supabase_anon_key", "supabase_url", "market_data_url")
ANON_VALUES = [
    ANON,
    "a.b.c",
    "a.b",
    "a..c",
    "a.b.c.d",
    " a.b.c",
    "a.b.c\n",
    "a.b.c=",
    "é.b.c",
    "x" * 5000 + ".b.c",
]


def page_doc(seed: int) -> dict[str, Any]:
    doc: dict[str, Any] = {"supabase_anon_key": ANON}
    if seed % 2:
        doc["supabase_url"] = [
            "https://abcd.supabase.co",
            "http://127.0.0.1:54321/",
            "https://x.example/base/",
        ][seed % 3]
    if seed % 3:
        doc["market_data_url"] = ["http://127.0.0.1:9443", "https://api.binance.com/"][seed % 2]
    if seed % 5 == 0:
        doc["stack"] = "local-dev"
    return doc


class PageCase:
    def __init__(self, kind: str, text: str, origin: str, key: str | None) -> None:
        self.kind = kind
        self.text = text
        self.origin = origin
        #: The setting changed (a refusal must name it), or None for the whole document.
        self.key = key

    def __repr__(self) -> str:
        return f"PageCase({self.kind!r}, {self.text!r:.400}, origin={self.origin!r})"


@st.composite
def page_cases(draw: st.DrawFn) -> PageCase:
    doc = page_doc(draw(st.integers(0, 10**6)))
    origin = pick(draw, ORIGINS)
    kind = pick(draw, ["same", "same", "value", "value", "wrong", "undecodable", "nested", "dup", "doc"])
    if kind == "same":
        doc["unknown_setting"] = pick(draw, [1, None, "x", [], {"a": "<b>"}])
        return PageCase(kind, render(doc, pick(draw, STYLES)), origin, None)
    key = pick(draw, PAGE_KEYS)
    doc.setdefault(key, ANON if key == "supabase_anon_key" else "https://present.example")
    if kind == "value":
        value = pick(draw, ANON_VALUES) if key == "supabase_anon_key" else draw(urls())
        if draw(st.integers(0, 5)) == 0 and key != "supabase_anon_key":
            value = None  # optional settings may be null
        return PageCase(kind, with_fragment(doc, (key,), json.dumps(value)), origin, key)
    if kind == "wrong":
        _, fragment, _ = pick(draw, WRONG_TYPES)
        return PageCase(kind, with_fragment(doc, (key,), fragment), origin, key)
    if kind == "undecodable":
        _, fragment = pick(draw, UNDECODABLE)
        return PageCase(kind, with_fragment(doc, (key,), fragment), origin, key)
    if kind == "nested":
        depth = draw(st.one_of(st.integers(1, 40), st.sampled_from([500, 5000, 50_000])))
        text = with_fragment(doc, (key,), nested(json.dumps(doc[key]), depth, objects=draw(st.booleans())))
        return PageCase(f"nested {depth}", text, origin, key)
    if kind == "dup":
        second = json.dumps(pick(draw, [ANON, "https://second.example", "not a url", None, 7]))
        return PageCase(kind, with_duplicate(doc, (key,), second), origin, key)
    text = render(doc, STYLES[0])
    how = pick(draw, ["truncated", "trailing", "bom", "array", "string", "empty", "html"])
    broken = {
        "truncated": text[: draw(st.integers(0, len(text) - 1))],
        "trailing": text + " x",
        "bom": "\ufeff" + text,
        "array": f"[{text}]",
        "string": json.dumps(text),
        "empty": "",
        "html": "<!doctype html><title>404</title>",
    }[how]
    return PageCase(f"doc:{how}", broken, origin, None)


def judge_page(case: PageCase, tally: Tally) -> None:
    try:
        config = AppConfig.from_json(case.text, origin=case.origin)
    except PageConfigError as exc:
        message = str(exc)
        assert_clear(message, [CONFIG_PATH])
        if case.key is not None:
            assert case.key in message or "is not JSON" in message, f"{case}: {message!r} names no setting"
        tally.reject(case.kind)
        return
    # Accepted: it must be the document's settings (the last of a repeated key, as json.loads reads it).
    data = json.loads(case.text)
    assert isinstance(data, dict), f"{case}: accepted a document that is not an object"
    key = data.get("supabase_anon_key")
    assert config.supabase_anon_key == key and isinstance(key, str)
    if not re.fullmatch(r"[\w-]+\.[\w-]+\.[\w-]+", key):
        raise AssertionError(f"{case}: accepted the anon key {key!r:.80}")
    url = data.get("supabase_url")
    assert url is None or isinstance(url, str), f"{case}: accepted supabase_url {url!r:.80}"
    assert config.supabase_url == (url or case.origin).rstrip("/")
    market = data.get("market_data_url")
    assert config.market_data_url == (None if market is None else str(market).rstrip("/"))
    for value in (config.supabase_url, config.market_data_url):
        if value is None:
            continue
        problem = usable_url(value, ("http", "https"))
        if problem is not None:
            raise AssertionError(f"{case}: accepted {value!r}, which {problem}")
    tally.accept()


def test_page_config_is_accepted_or_refused_by_setting() -> None:
    tally = Tally()

    @fuzz_settings(CASES)
    @given(page_cases())
    def run(case: PageCase) -> None:
        tally.judge(lambda: judge_page(case, tally))

    run()
    print(f"\nconfig.json: {tally.summary()}")
    tally.check(CASES)


# -- the worker's environment -------------------------------------------------------------------

OWNER = "0b6f3c4e-2f1e-4f56-9d3a-1c2b3a4d5e6f"
MACHINE = "7d2e9a10-55b4-4c1e-8f0a-9b8c7d6e5f40"
URL_VARS = ("SIGNALGUARD_SUPABASE_URL", "SIGNALGUARD_MARKET_DATA_URL", "SIGNALGUARD_MARKET_STREAM_URL")
TOKEN = "SIGNALGUARD_MACHINE_TOKEN"
VARIABLES = (
    *URL_VARS,
    "SIGNALGUARD_SUPABASE_ANON_KEY",
    TOKEN,
    "SIGNALGUARD_LOG_LEVEL",
)
REQUIRED = ("SIGNALGUARD_SUPABASE_URL", "SIGNALGUARD_SUPABASE_ANON_KEY", TOKEN)
LEVELS = [
    "debug",
    "INFO",
    " warn ",
    "Warning",
    "ERROR",
    "critical",
    "",
    "LOUD",
    "ınfo",
    "ＤＥＢＵＧ",
    "x" * 3000,
]
ANON_KEYS = ["eyJ.anon.key", "k", "a b", "a\tb", " k ", "é", "x" * 5000]


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def token(
    payload: str | bytes, header: str = '{"alg": "HS256", "typ": "JWT"}', signature: str = "c2ln"
) -> str:
    raw = payload.encode("utf-8", "surrogatepass") if isinstance(payload, str) else payload
    return f"{b64(header.encode())}.{b64(raw)}.{signature}"


CLAIMS = {"role": "authenticated", "sub": OWNER, "machine_id": MACHINE, "aud": "authenticated"}
CLAIM_VALUES = [
    OWNER.upper(),
    "{" + MACHINE + "}",
    "urn:uuid:" + OWNER,
    OWNER.replace("-", ""),
    "not-a-uuid",
    "",
    None,
    0,
    10**30,
    1.5,
    True,
    [OWNER],
    {"id": OWNER},
    "anon",
    "service_role",
    "authenticated",
    "Authenticated",
    "x" * 3000,
]


@st.composite
def tokens(draw: st.DrawFn) -> str:
    how = draw(st.integers(0, 7))
    if how == 0:
        parts = draw(st.lists(st.text(alphabet="abcXYZ09-_=!é.", max_size=12), min_size=0, max_size=5))
        return ".".join(parts)
    if how == 1:
        return token(draw(st.binary(max_size=40)))
    if how == 2:
        claims = dict(CLAIMS)
        claim = pick(draw, ["role", "sub", "machine_id"])
        if draw(st.booleans()):
            del claims[claim]
        else:
            claims[claim] = pick(draw, CLAIM_VALUES)
        return token(json.dumps(claims))
    if how == 3:
        body = json.dumps(CLAIMS)
        fragment = pick(draw, [*(f for _, f in UNDECODABLE), "[]", '"x"', "null", "1"])
        return token(pick(draw, [fragment, body[:-1] + ', "x": ' + fragment + "}"]))
    if how == 4:
        depth = draw(st.one_of(st.integers(1, 40), st.sampled_from([5000, 50_000])))
        return token(json.dumps({**CLAIMS, "extra": "SLOT"}).replace('"SLOT"', nested("1", depth)))
    if how == 5:
        second = json.dumps(pick(draw, [OWNER, "x", None]))
        return token(with_duplicate(CLAIMS, ("sub",), second))
    if how == 6:
        return token(json.dumps(CLAIMS), header=pick(draw, ['{"alg": "none"}', "nope", ""]), signature="")
    return pick(
        draw, ["", " ", "a.b", "..", "a.!!!.c", "a.é.c", "a.\udcff.c", "Bearer " + token(json.dumps(CLAIMS))]
    )


def env_doc(seed: int) -> dict[str, str]:
    env = {
        "SIGNALGUARD_SUPABASE_URL": ["https://abcd.supabase.co/", "http://127.0.0.1:54321"][seed % 2],
        "SIGNALGUARD_SUPABASE_ANON_KEY": "eyJ.anon.key",
        TOKEN: token(json.dumps(CLAIMS)),
        "PATH": "/usr/bin",
    }
    if seed % 3 == 0:
        env["SIGNALGUARD_MARKET_DATA_URL"] = "http://127.0.0.1:9443"
    if seed % 4 == 0:
        env["SIGNALGUARD_MARKET_STREAM_URL"] = "wss://stream.example:9443"
    if seed % 5 == 0:
        env["SIGNALGUARD_LOG_LEVEL"] = "debug"
    return env


class EnvCase:
    def __init__(self, kind: str, env: dict[str, str], variable: str | None) -> None:
        self.kind = kind
        self.env = env
        self.variable = variable

    def __repr__(self) -> str:
        shown = {k: (v if len(v) < 200 else v[:200] + "...") for k, v in self.env.items()}
        return f"EnvCase({self.kind!r}, {shown!r}, variable={self.variable!r})"


@st.composite
def env_cases(draw: st.DrawFn) -> EnvCase:
    env = env_doc(draw(st.integers(0, 10**6)))
    kind = pick(draw, ["same", "unset", "value", "value", "value", "token", "token"])
    if kind == "same":
        for name in draw(st.lists(st.sampled_from(VARIABLES), max_size=3, unique=True)):
            if name in env:
                tail = pick(draw, ["", " ", "/"] if name in URL_VARS else ["", " "])
                env[name] = pick(draw, [" ", "\t", "\n"]) + env[name] + tail
        env[pick(draw, ["SIGNALGUARD_UNKNOWN", "HOME", "signalguard_log_level"])] = pick(draw, ["x", "", "é"])
        return EnvCase(kind, env, None)
    if kind == "unset":
        name = pick(draw, VARIABLES)
        env.pop(name, None)
        env_value = pick(draw, [None, "", "   ", "\n"])
        if env_value is not None:
            env[name] = env_value
        return EnvCase(kind, env, name)
    if kind == "token":
        env[TOKEN] = draw(tokens())
        return EnvCase(kind, env, TOKEN)
    name = pick(draw, [*VARIABLES[:4], "SIGNALGUARD_LOG_LEVEL"])
    if name in URL_VARS:
        value = draw(urls())
    elif name == "SIGNALGUARD_LOG_LEVEL":
        value = pick(draw, LEVELS) if draw(st.booleans()) else draw(st.text(max_size=10))
    else:
        value = pick(draw, ANON_KEYS)
    env[name] = value.replace("\x00", "\x01")  # an environment cannot hold NUL
    return EnvCase(kind, env, name)


def read_ids(raw: str) -> tuple[uuid.UUID, uuid.UUID]:
    """The token's (sub, machine_id) read independently: the accepted ids must be these."""
    claims = json.loads(base64.urlsafe_b64decode(raw.split(".")[1] + "=" * (-len(raw.split(".")[1]) % 4)))
    assert claims["role"] == "authenticated"
    return uuid.UUID(str(claims["sub"])), uuid.UUID(str(claims["machine_id"]))


def judge_env(case: EnvCase, tally: Tally) -> None:
    try:
        config = load_config(case.env)
    except WorkerConfigError as exc:
        message = str(exc)
        assert_clear(message, [exc.variable])
        assert message.startswith(f"{exc.variable} ") and exc.problem
        assert case.variable is not None, f"{case}: refused a valid configuration: {message}"
        blamed = case.variable
        if blamed == TOKEN and not case.env.get(TOKEN, "").strip():
            # No token at all: the worker asks for the machine's credential by its preferred name.
            blamed = "SIGNALGUARD_MACHINE_KEY"
        assert exc.variable == blamed, f"{case}: {message!r} blames {exc.variable}, not {blamed}"
        secret = case.env.get(TOKEN, "").strip()
        assert len(secret) < 16 or secret not in message, f"the machine token is in {message!r}"
        tally.reject(case.kind)
        return
    assert isinstance(config, WorkerConfig)
    env = case.env
    assert config.supabase_url == env["SIGNALGUARD_SUPABASE_URL"].strip().rstrip("/")
    assert config.anon_key == env["SIGNALGUARD_SUPABASE_ANON_KEY"].strip()
    assert config.anon_key and not any(c.isspace() for c in config.anon_key)
    assert (uuid.UUID(config.owner_id), uuid.UUID(config.machine_id)) == read_ids(env[TOKEN].strip())
    assert (
        str(uuid.UUID(config.owner_id)) == config.owner_id
        and str(uuid.UUID(config.machine_id)) == config.machine_id
    )
    assert config.log_level in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
    for value, schemes in (
        (config.supabase_url, ("http", "https")),
        (config.market_data_url, ("http", "https")),
        (config.market_stream_url, ("ws", "wss")),
    ):
        problem = usable_url(value, schemes)
        if problem is not None:
            raise AssertionError(f"{case}: accepted {value!r}, which {problem}")
    tally.accept()


def test_worker_environment_is_accepted_or_refused_by_variable() -> None:
    tally = Tally()

    @fuzz_settings(CASES)
    @given(env_cases())
    def run(case: EnvCase) -> None:
        tally.judge(lambda: judge_env(case, tally))

    run()
    print(f"\nworker environment: {tally.summary()}")
    tally.check(CASES)


# -- regressions: the bugs the runs above found, one test each ------------------------------------

GOOD_ENV = env_doc(1)


def page(doc: dict[str, Any]) -> AppConfig:
    return AppConfig.from_json(json.dumps(doc), origin=ORIGINS[0])


def test_page_config_deeply_nested_is_a_config_error() -> None:
    # In Pyodide the same input exhausts the JavaScript stack: the page cannot even show why it stopped.
    with pytest.raises(PageConfigError, match=r"config\.json"):
        AppConfig.from_json('{"supabase_anon_key": ' + nested("1", 100_000) + "}", origin=ORIGINS[0])


def test_page_config_long_url_is_refused_in_a_short_message() -> None:
    with pytest.raises(PageConfigError) as info:
        page({"supabase_anon_key": ANON, "supabase_url": "ftp://" + "x" * 10_000})
    assert len(str(info.value)) <= MAX_MESSAGE


def test_page_config_wrong_typed_supabase_url_is_refused() -> None:
    # false, 0, [] and {} are silently replaced by the page's origin.
    for value in (False, 0, [], {}):
        with pytest.raises(PageConfigError, match="supabase_url"):
            page({"supabase_anon_key": ANON, "supabase_url": value})


def test_page_config_unusable_url_is_refused() -> None:
    # Control characters, an authority without a host, a bad port, and (`$` matches before a final
    # newline) a trailing newline are all accepted; fetch() then fails far from the setting.
    for url in (
        "http://a\x00b",
        "http://a\x7fb/",
        "http://host\n",
        "http://:",
        "https://user@",
        "http://h:99999",
    ):
        with pytest.raises(PageConfigError, match="supabase_url"):
            page({"supabase_anon_key": ANON, "supabase_url": url})


def test_page_config_anon_key_with_trailing_newline_is_refused() -> None:
    # Accepted as is: every request's apikey header then carries the newline.
    with pytest.raises(PageConfigError, match="supabase_anon_key"):
        page({"supabase_anon_key": "a.b.c\n"})


def test_worker_unsplittable_url_is_a_config_error() -> None:
    for url in ("http://[::1", "https://ex\u2100ample.com", "http://\uff48\uff4f\uff53\uff54\uff1a80"):
        with pytest.raises(WorkerConfigError) as info:
            load_config({**GOOD_ENV, "SIGNALGUARD_SUPABASE_URL": url})
        assert info.value.variable == "SIGNALGUARD_SUPABASE_URL"


def test_worker_unusable_url_is_refused() -> None:
    # A port out of range or not a number, and a tab or newline inside (urlsplit drops them, the
    # returned value keeps them), are accepted.
    for url in ("http://h:99999", "http://h:abc", "http://h\t:8000", "http://h\n.example"):
        with pytest.raises(WorkerConfigError) as info:
            load_config({**GOOD_ENV, "SIGNALGUARD_MARKET_DATA_URL": url})
        assert info.value.variable == "SIGNALGUARD_MARKET_DATA_URL"


def test_worker_deeply_nested_token_is_a_config_error() -> None:
    deep = token('{"role": "authenticated", "x": ' + nested("1", 100_000) + "}")
    with pytest.raises(WorkerConfigError) as info:
        load_config({**GOOD_ENV, TOKEN: deep})
    assert info.value.variable == TOKEN


def test_worker_long_values_are_refused_in_a_short_message() -> None:
    for change in (
        {TOKEN: token(json.dumps({**CLAIMS, "role": "x" * 3000}))},
        {"SIGNALGUARD_LOG_LEVEL": "x" * 3000},
    ):
        with pytest.raises(WorkerConfigError) as info:
            load_config({**GOOD_ENV, **change})
        assert len(str(info.value)) <= MAX_MESSAGE
