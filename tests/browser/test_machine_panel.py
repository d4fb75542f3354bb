"""The page's cloud machine panel: register, a key shown once, the list, revoking."""

from __future__ import annotations

from collections.abc import Mapping

from signalguard.browser.formats import Formats
from signalguard.browser.machine import MachinePanel, MachineView, key_rows, machine_name_problem
from signalguard.browser.testing import FakeBackend, FakeTasks, ok, on_loop, refused

KEY = "sgm_" + "ab" * 32


class Page:
    def __init__(self, *, available: bool = True) -> None:
        self.backend = FakeBackend()
        self.tasks = FakeTasks()
        self.views: list[MachineView] = []
        self.panel = MachinePanel(
            self.backend,
            self.tasks.spawn,
            show=self.views.append,
            formats=Formats,
            available=lambda: available,
        )

    @property
    def view(self) -> MachineView:
        return self.views[-1]

    def machine(self, name: str = "sg-7f3a", status: str = "stopped") -> None:
        self.backend.tables["cloud_machines"] = [{"machine_id": name, "status": status}]

    def key_row(self, key_id: str, label: str, **extra: object) -> dict[str, object]:
        row: dict[str, object] = {
            "id": key_id,
            "label": label,
            "key_hint": KEY[:10],
            "created_at": "2025-12-06T10:15:00+00:00",
            "last_used_at": None,
            "revoked_at": None,
        }
        row.update(extra)
        self.backend.tables.setdefault("machine_keys", []).append(row)
        return row


@on_loop
async def test_hidden_without_the_component_and_registering_is_checked_first() -> None:
    absent = Page(available=False)
    await absent.panel.load()
    assert absent.view.available is False and absent.backend.selects == []

    page = Page()
    await page.panel.load()
    assert page.view.available and page.view.machine == ""  # the register form shows
    page.panel.register("Not A Name", "")
    assert "machine name is 3 to 63" in page.view.error and page.backend.names() == []
    page.panel.register("sg-7f3a", "Frankfurt")
    assert "region" in page.view.error and page.backend.names() == []

    def registered(args: Mapping[str, object]) -> object:
        page.machine(str(args["p_machine_id"]))
        return ok({"machine_id": args["p_machine_id"], "created": True})

    page.backend.handlers["create_cloud_machine"] = registered
    page.panel.register("  sg-7f3a ", " fra ")
    await page.tasks.settle()
    assert page.backend.args_of("create_cloud_machine") == [{"p_machine_id": "sg-7f3a", "p_region": "fra"}]
    assert page.view.machine == "sg-7f3a" and page.view.status == "stopped" and page.view.error == ""


@on_loop
async def test_the_database_refusal_is_shown_as_it_words_it() -> None:
    page = Page()
    page.backend.answer(
        "create_cloud_machine",
        refused("SG009", message="invalid_argument: machine name: sg-7f3a is taken; choose another"),
    )
    page.panel.register("sg-7f3a", "")
    await page.tasks.settle()
    assert page.view.error == "Not registered: machine name: sg-7f3a is taken; choose another"
    assert not page.view.busy


@on_loop
async def test_a_new_key_is_shown_once_until_it_is_copied() -> None:
    page = Page()
    page.machine()
    page.panel.make_key("   ")
    assert "label of 1 to 60" in page.view.error and page.backend.names() == []

    def made(args: Mapping[str, object]) -> object:
        page.key_row("k1", str(args["p_label"]))
        return ok({"id": "k1", "key": KEY, "key_hint": KEY[:10], "label": args["p_label"]})

    page.backend.handlers["create_machine_key"] = made
    page.panel.make_key(" fly fra ")
    await page.tasks.settle()
    assert page.backend.args_of("create_machine_key") == [{"p_label": "fly fra"}]
    assert page.view.new_key == KEY
    # The periodic re-read keeps it shown; nothing else in the view holds it.
    await page.panel.load()
    assert page.view.new_key == KEY
    assert [k.label for k in page.view.keys] == ["fly fra"]
    assert KEY not in repr(page.view.keys)
    page.panel.dismiss_key()
    assert page.view.new_key == ""
    await page.panel.load()
    assert all(KEY not in repr(v.keys) for v in page.views) and page.view.new_key == ""


@on_loop
async def test_a_refused_key_shows_no_key_and_the_reason() -> None:
    page = Page()
    page.machine()
    page.backend.answer(
        "create_machine_key",
        refused("SG009", message="invalid_argument: machine key: at most 5 keys in use; revoke one first"),
    )
    page.panel.make_key("sixth")
    await page.tasks.settle()
    assert page.view.new_key == ""
    assert page.view.error == "No key made: machine key: at most 5 keys in use; revoke one first"


@on_loop
async def test_revoking_and_the_list() -> None:
    page = Page()
    page.machine(status="running")
    page.key_row("k2", "fly", last_used_at="2025-12-06T11:00:30+00:00")
    page.key_row("k1", "old", revoked_at="2025-12-06T10:30:00+00:00")
    await page.panel.load()
    used, revoked = page.view.keys
    assert (used.id, used.hint, used.revoked) == ("k2", KEY[:10], "")
    assert used.used and used.made and revoked.revoked
    page.backend.answer("revoke_machine_key", ok({"id": "k2", "revoked_at": "2025-12-06T11:01:00+00:00"}))
    page.panel.revoke("k2")
    page.panel.revoke("k2")  # a second click while the first is under way sends nothing
    await page.tasks.settle()
    assert page.backend.args_of("revoke_machine_key") == [{"p_id": "k2"}]


def test_rows_and_names() -> None:
    assert key_rows([{"label": "no id"}, "garbage", {"id": "k", "label": "ok"}], Formats()) == key_rows(
        [{"id": "k", "label": "ok"}], Formats()
    )
    assert key_rows(None, Formats()) == ()
    assert machine_name_problem("vyx-63eea370", "") is None
    assert machine_name_problem("vyx-63eea370", "ams") is None
    for bad in ("ab", "-ab", "AB-cd", "a" * 64, "x y z"):
        assert machine_name_problem(bad, "") is not None
