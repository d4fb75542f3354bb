"""The cloud machine in the page: register it, make its keys, see them used, revoke them.

A key is what the user's cloud machine runs with (``SIGNALGUARD_MACHINE_KEY``): the database makes it
(``create_machine_key``), keeps only its hash, and judges it on every request the machine makes, so
nothing here needs the project's JWT secret, which a hosted project does not hand out. What the panel
does:

- **register** the machine by its Fly name (``create_cloud_machine``; one per user), checked here with
  the database's rule first;
- **make a key** with a label saying where it goes. The answer is the only place the key ever appears:
  it is shown once, in the panel, until the user says it is copied; it is kept in no storage and never
  drawn again. Making another is how a lost key is replaced;
- **list** the keys: label, the first characters (to tell them apart), when made, when last used (the
  machine's heartbeat marks it, at most once a minute) and when revoked;
- **revoke** one: the machine's next request with it is refused, and a machine holding the lease with
  it loses the lease at once, so this browser (or the machine with a new key) takes over.

The panel shows only while the database has the ``machine_keys`` component.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Final

from signalguard.browser.formats import Formats
from signalguard.browser.ports import ApiResult, Backend, Spawn
from signalguard.core.candles import timestamp_us

__all__ = ["KEY_COLUMNS", "MachineKey", "MachinePanel", "MachineView", "key_rows", "machine_name_problem"]

#: What the panel reads of the keys (never the hash: no role may read it).
KEY_COLUMNS: Final = "id,label,key_hint,created_at,last_used_at,revoked_at"
#: The keys listed at most (the database allows 5 in use; revoked ones stay as a record).
KEYS_SHOWN: Final = 20
#: A Fly machine name, as ``create_cloud_machine`` checks it.
_MACHINE_NAME: Final = re.compile(r"[a-z0-9][a-z0-9-]{2,62}")
_REGION: Final = re.compile(r"[a-z0-9-]{1,32}")


def machine_name_problem(name: str, region: str) -> str | None:
    """Why the database would refuse to register ``name`` in ``region`` ("" region: none), or None."""
    if not _MACHINE_NAME.fullmatch(name):
        return (
            "the machine name is 3 to 63 lower-case letters, digits and '-', beginning with a letter or "
            "a digit (as Fly names machines)"
        )
    if region and not _REGION.fullmatch(region):
        return "the region is 1 to 32 lower-case letters, digits and '-' (a Fly region such as fra)"
    return None


@dataclass(frozen=True, slots=True)
class MachineKey:
    """One of the machine's keys, as listed."""

    id: str
    label: str
    #: The key's first characters, ``sgm_1a2b3c``, followed by an ellipsis when drawn.
    hint: str
    #: When it was made, last used ("" never) and revoked ("" in use), written in the page's zone.
    made: str
    used: str
    revoked: str


@dataclass(frozen=True, slots=True)
class MachineView:
    """The machine panel as drawn."""

    #: Whether the database has machine keys (otherwise the panel is hidden).
    available: bool
    #: The registered machine's name ("" none yet: the register form shows) and its status.
    machine: str = ""
    status: str = ""
    keys: tuple[MachineKey, ...] = ()
    #: The key just made, shown once until the user says it is copied ("" none).
    new_key: str = ""
    #: Why the last action was refused, or a read failed ("" none).
    error: str = ""
    #: Whether an action is under way (its buttons wait).
    busy: bool = False


def _when(value: object, fmt: Formats) -> str:
    us = timestamp_us(value)
    return fmt.time(us // 1000) if us is not None else ""


def key_rows(rows: object, fmt: Formats) -> tuple[MachineKey, ...]:
    """The keys as listed (newest first, as read); malformed rows are skipped."""
    keys = []
    for row in rows if isinstance(rows, list) else ():
        if not isinstance(row, Mapping) or not isinstance(row.get("id"), str):
            continue
        keys.append(
            MachineKey(
                id=str(row["id"]),
                label=str(row.get("label") or ""),
                hint=str(row.get("key_hint") or ""),
                made=_when(row.get("created_at"), fmt),
                used=_when(row.get("last_used_at"), fmt),
                revoked=_when(row.get("revoked_at"), fmt),
            )
        )
    return tuple(keys)


class MachinePanel:
    """The page's cloud machine and its keys (see the module documentation)."""

    def __init__(
        self,
        backend: Backend,
        spawn: Spawn,
        *,
        show: Callable[[MachineView], None],
        formats: Callable[[], Formats],
        available: Callable[[], bool],
    ) -> None:
        """Draw with ``show``; ``formats`` writes times; ``available`` says whether the database has keys."""
        self._backend = backend
        self._spawn = spawn
        self._show = show
        self._formats = formats
        self._available = available
        self._view = MachineView(available=False)
        self._stopped = False

    @property
    def view(self) -> MachineView:
        """The panel as last drawn."""
        return self._view

    def _draw(self, **changes: Any) -> None:
        self._view = replace(self._view, **changes)
        if not self._stopped:
            self._show(self._view)

    async def load(self) -> None:
        """Read the machine and its keys, and draw them."""
        if not self._available():
            self._draw(available=False)
            return
        machine = await self._backend.select("cloud_machines", "machine_id,status", limit=1)
        keys = await self._backend.select(
            "machine_keys", KEY_COLUMNS, order="created_at", descending=True, limit=KEYS_SHOWN
        )
        if self._stopped:
            return
        for result, what in ((machine, "the machine"), (keys, "its keys")):
            if result.error is not None:
                self._draw(available=True, error=f"Could not read {what}: {result.error}")
                return
        rows = machine.data if isinstance(machine.data, list) else []
        row = rows[0] if rows and isinstance(rows[0], Mapping) else {}
        self._draw(
            available=True,
            machine=str(row.get("machine_id") or ""),
            status=str(row.get("status") or ""),
            keys=key_rows(keys.data, self._formats()),
        )

    def refresh(self) -> None:
        """Read and draw again (in the background)."""
        self._spawn(self.load())

    def register(self, name: str, region: str) -> None:
        """Register the user's cloud machine by its Fly name (and region, optional)."""
        name, region = name.strip(), region.strip()
        problem = machine_name_problem(name, region)
        if problem is not None:
            self._draw(error=f"Not registered: {problem}.")
            return
        args: dict[str, object] = {"p_machine_id": name}
        if region:
            args["p_region"] = region
        self._act("Not registered", "create_cloud_machine", args)

    def make_key(self, label: str) -> None:
        """Make a key for the machine; it is shown once."""
        label = label.strip()
        if not 1 <= len(label) <= 60:
            self._draw(error="No key made: give it a label of 1 to 60 characters (say where it goes).")
            return
        self._act("No key made", "create_machine_key", {"p_label": label}, shows_key=True)

    def revoke(self, key_id: str) -> None:
        """Revoke a key (already confirmed by the user)."""
        self._act("Not revoked", "revoke_machine_key", {"p_id": key_id})

    def dismiss_key(self) -> None:
        """The user has copied the new key: it is not shown again, anywhere."""
        self._draw(new_key="")

    def _act(self, refused: str, rpc: str, args: Mapping[str, object], *, shows_key: bool = False) -> None:
        # One action at a time: a second click while one is under way sends nothing.
        if self._view.busy:
            return
        self._draw(busy=True, error="", new_key="")
        self._spawn(self._answer(refused, rpc, args, shows_key))

    async def _answer(self, refused: str, rpc: str, args: Mapping[str, object], shows_key: bool) -> None:
        result: ApiResult = await self._backend.rpc(rpc, args)
        key = result.data.get("key") if isinstance(result.data, Mapping) else None
        self._draw(
            busy=False,
            error=(
                f"{refused}: {result.error.message.removeprefix('invalid_argument: ')}"
                if result.error is not None
                else ""
            ),
            new_key=str(key) if shows_key and result.error is None and isinstance(key, str) else "",
        )
        await self.load()

    def stop(self) -> None:
        """Signed out: draw nothing more (and forget a key still shown)."""
        self._view = MachineView(available=False)
        self._stopped = True
