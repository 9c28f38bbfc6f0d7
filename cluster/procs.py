"""Processes of the test cluster: pid files, ownership, listening sockets, stopping.

A pid file alone is not proof: after a reboot the pid may belong to anything. A process counts as
ours only if its command line carries this run dir's marker (``-Dwasure.cluster=<dir>``) and the
component's main class. Listening sockets are read from /proc (what ``ss -ltnp`` shows), so
``status`` and the tests can check that nothing listens beyond 127.0.0.1.
"""
from __future__ import annotations

import ipaddress
import os
import signal
import socket
import time
from pathlib import Path


def marker(run_dir: Path) -> str:
    return f"-Dwasure.cluster={run_dir}"


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def is_ours(pid: int, run_dir: Path, main_class: str) -> bool:
    args = cmdline(pid)
    return marker(run_dir) in args and main_class in args


def read_pid(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None


def children(pid: int) -> list[int]:
    """Every descendant of ``pid`` (a worker's executors and their Python workers)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # the command name (field 2) may contain spaces: the ppid follows the last ')'
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _decode_address(hex_address: str) -> str:
    raw = bytes.fromhex(hex_address)
    if len(raw) == 4:
        return str(ipaddress.IPv4Address(raw[::-1]))
    # /proc/net/tcp6 prints the address as four host-order (little-endian) 32-bit words
    address = ipaddress.IPv6Address(b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4)))
    return str(address.ipv4_mapped or address)


def _listening_by_inode() -> dict[str, str]:
    found = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] != "0A":        # TCP_LISTEN
                continue
            address, port = fields[1].split(":")
            found[fields[9]] = f"{_decode_address(address)}:{int(port, 16)}"
    return found


def listening(pids: list[int]) -> dict[int, list[str]]:
    """``ip:port`` of every listening TCP socket each process holds."""
    by_inode = _listening_by_inode()
    result = {}
    for pid in pids:
        addresses = set()
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:[") and target[8:-1] in by_inode:
                addresses.add(by_inode[target[8:-1]])
        result[pid] = sorted(addresses)
    return result


def port_holder(host: str, port: int) -> str | None:
    """None if ``host:port`` can be bound; else who holds it (pid and command, when visible)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # like the servers themselves: a closed connection in TIME_WAIT does not block the port
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
            return None
        except OSError:
            pass
    pids = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]
    for pid, addresses in listening(pids).items():
        if any(a.endswith(f":{port}") for a in addresses):
            return f"pid {pid}: {' '.join(cmdline(pid))[:120]}"
    return "another program"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie (exited child not yet reaped) is not running
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def stop(pids: list[int], grace_seconds: float = 30.0) -> list[int]:
    """SIGTERM each pid, SIGKILL what is left after the grace period; returns the pids killed hard."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace_seconds
    while time.monotonic() < deadline and any(alive(pid) for pid in pids):
        time.sleep(0.2)
    killed = [pid for pid in pids if alive(pid)]
    for pid in killed:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return killed
