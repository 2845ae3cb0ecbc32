"""Where each address is probed from: the agent's own network, or inside the container's.

From the agent's namespace only what it reaches directly: an address of its own, or one on a
bridge it has an interface on, with no gateway between. Anything else (macvlan, ipvlan, a
Swarm overlay, an address the host reaches only through its default route) is probed from
inside the container's network namespace, where the address is the container's own. When the
agent cannot enter namespaces, such an address is not probed at all: a probe sent by the
default route would leave the machine, and whatever answered out there would be a lie.
"""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from agent.netns import Namespace, NamespaceError, SocketMaker, entry_denied
from agent.targets import Container, Target
from dockping import logs
from dockping.contract import UNPROBED_NOTE

log = logs.get("dockping.agent.vantage")

# rtnetlink route types (linux/rtnetlink.h).
_RTN_UNICAST = 1
_RTN_LOCAL = 2


class Routes:
    """Route lookups in the agent's own namespace, over netlink, on a thread of their own.

    pyroute2's synchronous IPRoute runs an event loop of its own, which cannot run on the
    agent's; a lookup happens once per address of a new or changed container, so waiting
    for the thread is cheap.
    """

    def __init__(self) -> None:
        self._thread: ThreadPoolExecutor | None = None
        self._netlink: IPRoute | None = None

    def direct(self, ip: str) -> bool:
        """Whether the agent's namespace reaches `ip` itself: its own, or on a bridge of it."""
        if self._thread is None:
            self._thread = ThreadPoolExecutor(1, thread_name_prefix="routes")
        return self._thread.submit(self._direct, ip).result()

    def _direct(self, ip: str) -> bool:
        if self._netlink is None:
            self._netlink = IPRoute()
        try:
            route = self._netlink.route("get", dst=ip)[0]
        except NetlinkError:
            return False  # no route, a blackhole, unreachable or prohibited
        except Exception as exc:  # an address netlink cannot look up is not direct: safe
            log.warning("vantage.route_failed", ip=ip, error=f"{type(exc).__name__}: {exc}")
            return False
        if route["type"] == _RTN_LOCAL:
            return True
        if route["type"] != _RTN_UNICAST or any(
            route.get_attr(name) for name in ("RTA_GATEWAY", "RTA_VIA", "RTA_MULTIPATH")
        ):
            return False
        # A macvlan or ipvlan parent is directly connected to its children's subnet, yet
        # never reaches them: only a bridge (Docker's, Podman's) puts the host beside them.
        # One link asked for by its index (get_links would dump every link, a veth per
        # container, to keep one).
        links = self._netlink.link("get", index=route.get_attr("RTA_OIF"))
        info = links[0].get_attr("IFLA_LINKINFO") if links else None
        return info is not None and info.get_attr("IFLA_INFO_KIND") == "bridge"

    def close(self) -> None:
        """Close the netlink socket and its thread."""
        if self._thread is not None:
            self._thread.submit(self._close).result()
            self._thread.shutdown()
            self._thread = None

    def _close(self) -> None:
        if self._netlink is not None:
            self._netlink.close()
            self._netlink = None


class Vantages:
    """Decides each target's vantage and holds a namespace handle per container probed inside."""

    def __init__(self, enter_namespaces: bool, routes: Routes | None = None) -> None:
        self.denied = (
            "entering namespaces is turned off (agent.enter_namespaces = false)"
            if not enter_namespaces
            else entry_denied()
        )
        """Why containers' namespaces cannot be entered, or None."""
        self.routes = routes or Routes()
        self._maker = SocketMaker()
        self._namespaces: dict[str, Namespace] = {}
        self._told = False

    def place(self, container: Container) -> tuple[Target, ...]:
        """The container's targets, each with its vantage: host, container, or none (unprobed)."""
        direct = {ip: self.routes.direct(ip) for ip in {t.ip for t in container.targets}}
        namespace = None
        if not all(direct.values()):
            namespace = self._namespace(container)
        elif container.id in self._namespaces:
            self.forget(container.id)  # every address is direct now
        placed: list[Target] = []
        for target in container.targets:
            if direct[target.ip]:
                placed.append(dataclasses.replace(target, vantage="host"))
            elif namespace is not None:
                placed.append(dataclasses.replace(target, vantage="container", netns=namespace))
            else:
                placed.append(dataclasses.replace(target, vantage="none"))
        return tuple(placed)

    def _namespace(self, container: Container) -> Namespace | None:
        if self.denied is not None:
            if not self._told:
                self._told = True
                log.warning("vantage.no_entry", reason=self.denied, note=UNPROBED_NOTE)
            return None
        held = self._namespaces.get(container.id)
        if held is not None and held.pid == container.pid:
            return held
        self.forget(container.id)
        if container.pid <= 0:
            log.warning("vantage.no_pid", container=container.name)
            return None
        try:
            namespace = Namespace(container.pid, self._maker)
        except NamespaceError as exc:
            log.warning("vantage.netns_unavailable", container=container.name, error=str(exc))
            return None
        self._namespaces[container.id] = namespace
        return namespace

    def forget(self, container_id: str) -> None:
        """Close the container's namespace handle, if one is held (the container stopped)."""
        namespace = self._namespaces.pop(container_id, None)
        if namespace is not None:
            namespace.close()

    @property
    def held(self) -> int:
        """Namespace handles held now."""
        return len(self._namespaces)

    def close(self) -> None:
        """Close every handle and the netlink socket."""
        for container_id in list(self._namespaces):
            self.forget(container_id)
        self.routes.close()
