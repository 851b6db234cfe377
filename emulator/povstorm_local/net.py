"""Ports and HTTP probes on the local stack's host: choosing free ports,
checking that configured ones are free, and asking a server whether it answers.
No proxy is ever consulted: everything here talks to ``HOST``."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from collections.abc import Mapping

from povstorm.core.errors import StackError

from .state import HOST


def check_ports(ports: Mapping[str, int]) -> None:
    for name, port in ports.items():
        if not port_free(int(port)):
            raise StackError(
                f"port {port} for {name} is already in use: free it or choose another "
                f"(--port {name}=N)"
            )


def port_free(port: int) -> bool:
    # SO_REUSEADDR as the servers set it: a port in TIME_WAIT is free, a listener is not.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A port nothing listens on now (the kernel's choice)."""
    return choose_ports(["port"], {})["port"]


def answers(url: str) -> bool:
    """Whether a server answers ``url`` at all (any HTTP status)."""
    return http_ok(url, any_status=True)[0]


def choose_ports(names: list[str], configured: dict[str, int]) -> dict[str, int]:
    """Configured ports as given, the others picked by the kernel. All sockets
    stay bound until every port is chosen so that no two components get the
    same one; several stacks (tests, other users) can run side by side."""
    chosen = {n: int(configured[n]) for n in names if n in configured}
    held = []
    try:
        for name in names:
            if name in chosen:
                continue
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((HOST, 0))
            held.append(s)
            chosen[name] = s.getsockname()[1]
    finally:
        for s in held:
            s.close()
    return chosen


_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_ok(url: str, *, any_status: bool) -> tuple[bool, str]:
    """(answered as wanted, what it said): a 2xx, or any HTTP status with
    ``any_status``; no proxy, 2 s timeout."""
    try:
        with _NO_PROXY.open(url, timeout=2) as resp:
            return True, f"HTTP {resp.status}"
    except urllib.error.HTTPError as exc:
        return any_status, f"HTTP {exc.code}"
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return False, f"not answering ({reason})"
