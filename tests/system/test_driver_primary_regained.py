"""Regaining primary means read, diff and repair, like a reconnect (issue 18,
P4Runtime item 3): the agent's switch driver against the softswitch daemon,
while another controller takes primary, changes the switch and leaves."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from control import tables as T
from control.config import SwitchConfig
from control.driver import SwitchDriver
from control.p4rt import DELETE, MODIFY, Exact, P4Info, P4RuntimeClient, TableEntry, Update
from tests.system.softswitch_proc import Softswitch
from tests.system.test_agent_flow import fabric_entities
from tests.system.test_agent_support import COMPILED

INFO = P4Info.load(COMPILED[0])


async def until(pred: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not pred():
        assert loop.time() < end, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


def test_agent_repairs_what_another_primary_changed_when_it_is_primary_again() -> None:
    with Softswitch() as sw:

        async def scenario() -> None:
            cfg = SwitchConfig(sw.address, COMPILED[0], COMPILED[1], device_id=1, election_id=10)
            driver = SwitchDriver(cfg, fabric_entities, reconnect=0.2)
            driver.start()
            try:
                await driver.wait_synced(20)
                expected = {INFO.canonical(e) for e in fabric_entities()}
                assert await driver.read_switch() == expected
                # another controller with a higher election id becomes primary ...
                other = await P4RuntimeClient.connect(sw.address, INFO, 1, 20)
                try:
                    await other.wait_primary(5)
                    await until(lambda: not driver.connected, "the agent demoted")
                    # ... changes one entry and deletes another
                    port = TableEntry(
                        T.FABRIC_PORT, {"ingress_port": Exact(1)}, T.A_SET_FABRIC_PORT
                    )
                    (underlay,) = [
                        e
                        for e in expected
                        if isinstance(e, TableEntry) and e.table == INFO.full_name(T.UNDERLAY)
                    ]
                    cfg_entry = TableEntry(
                        T.FABRIC_CONFIG,
                        action=T.A_SET_FABRIC_CONFIG,
                        params={"my_ipv4": 0xC0000263, "mtu": 9000},
                        is_default=True,
                    )
                    res = await other.write(
                        [Update(DELETE, INFO.canonical(port)), Update(MODIFY, cfg_entry)]
                    )
                    res.raise_on_error()
                    (await other.write([Update(DELETE, underlay)])).raise_on_error()
                    # a change of the agent's desired state meanwhile is not written
                    driver.kick()
                finally:
                    await other.close()  # ... and leaves
                # the agent is primary again and repairs the switch
                await until(lambda: driver.connected, "primary again")
                loop = asyncio.get_running_loop()
                end = loop.time() + 10
                while await driver.read_switch() != expected:
                    assert loop.time() < end, "the switch was not repaired"
                    await asyncio.sleep(0.05)
                await driver.wait_synced(20)
                assert driver.stats.connects == 1  # the same connection throughout
                assert (driver.stats.primary_lost, driver.stats.primary_regained) == (1, 1)
                assert driver.stats.last_reconcile_diff == 3
                assert await driver.diff() == []
                assert await driver.read_switch() == expected
            finally:
                await driver.close()

        asyncio.run(scenario())
