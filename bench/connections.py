"""Idle connections: how many waiting patients one server process holds, and at what memory.

Joins N patients over HTTP first (so that the HTTP work does not count), reads the
server's RSS, opens N WebSockets of waiting patients, reads the RSS again once all of
them got `waiting`, then holds them for 60 s and counts how many stayed connected.
The same is done against the bare `websockets` relay for comparison.

    .venv/bin/python bench/connections.py              # 5,000 connections, 60 s
    .venv/bin/python bench/connections.py --quick      # smoke: 100 connections, 3 s
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time

from _common import (
    ProcessProbe,
    common_arguments,
    fmt,
    gather_limited,
    loadavg,
    machine_info,
    print_table,
    raise_fd_limit,
    ratio,
    write_results,
)
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from signaling import BaselineTarget, ProjectTarget, expect, open_socket, start_profiler


async def open_waiting(target, cookies: dict) -> ClientConnection:
    socket = await open_socket(target.port, cookies)
    await expect(socket, "welcome")
    await expect(socket, "waiting")
    return socket


async def hold(socket: ClientConnection) -> str | None:
    """Wait until the socket closes; the close reason, or None if it outlived the hold."""
    try:
        async for _message in socket:
            pass
        return f"closed:{socket.close_code}"
    except ConnectionClosed as exc:
        return f"closed:{exc.rcvd.code if exc.rcvd else 'abnormal'}"


def stop_profiler(profiler) -> None:
    if profiler is not None:
        profiler.send_signal(signal.SIGINT)  # py-spy writes what it has on SIGINT
        profiler.wait(timeout=60)


async def run_target(target, args) -> dict:
    probe = ProcessProbe(target.pid)
    started = time.perf_counter()
    joins = await gather_limited(
        args.concurrency, (target.join(i, "patient") for i in range(args.connections))
    )
    cookies = [c for c in joins if isinstance(c, dict)]
    join_s = time.perf_counter() - started
    await asyncio.sleep(args.settle)
    before = probe.memory()
    probe.mark("open_start")
    profiler = start_profiler(target, args, "open")
    started = time.perf_counter()
    opened = await gather_limited(args.concurrency, (open_waiting(target, c) for c in cookies))
    open_s = time.perf_counter() - started
    stop_profiler(profiler)
    sockets = [s for s in opened if isinstance(s, ClientConnection)]
    failures = [f"{type(f).__name__}: {str(f)[:80]}" for f in opened if isinstance(f, Exception)]
    await asyncio.sleep(args.settle)  # let the server settle (presence writes, buffers)
    after = probe.memory()
    probe.mark("hold_start")
    profiler = start_profiler(target, args, "idle")
    holders = [asyncio.create_task(hold(s)) for s in sockets]
    await asyncio.sleep(args.hold)
    probe.mark("hold_end")
    stop_profiler(profiler)
    dropped = [h.result() for h in holders if h.done()]
    alive = sum(1 for s, h in zip(sockets, holders, strict=True) if not h.done() and s.state == 1)
    final = probe.memory()
    for socket in sockets:
        await socket.close()
    await asyncio.gather(*holders, return_exceptions=True)
    per_connection = (after["rss_kib"] - before["rss_kib"]) / len(sockets) if sockets else None
    return {
        "connections_requested": args.connections,
        "joined_over_http": len(cookies),
        "join_seconds": round(join_s, 2),
        "connected": len(sockets),
        "open_seconds": round(open_s, 2),
        "connect_failures": len(failures),
        "connect_failure_kinds": sorted(set(failures))[:5],
        "rss_before_mib": round(before["rss_kib"] / 1024, 1),
        "rss_connected_mib": round(after["rss_kib"] / 1024, 1),
        "rss_after_hold_mib": round(final["rss_kib"] / 1024, 1),
        "peak_rss_mib": round(final["peak_rss_kib"] / 1024, 1),
        "kib_per_connection": round(per_connection, 1) if per_connection else None,
        "hold_seconds": args.hold,
        "stayed_connected": alive,
        "dropped": len(dropped),
        "drop_reasons": sorted(set(d for d in dropped if d))[:5],
        "server_cpu_s_opening": probe.between("open_start", "hold_start"),
        "server_cpu_s_idle_hold": probe.between("hold_start", "hold_end"),
        # What waiting patients cost while nothing happens (heartbeats, presence refresh).
        "idle_cpu_percent_of_core": round(
            100 * probe.between("hold_start", "hold_end") / args.hold, 1
        ),
        "server_cpu_ms_per_connection_opened": (
            round(1000 * probe.between("open_start", "hold_start") / len(sockets), 2)
            if sockets
            else None
        ),
    }


async def measure(target, args) -> dict:
    target.start(args.connections)
    try:
        result = await run_target(target, args)
    finally:
        errors = target.stop()
    result["server_log_errors"] = errors[:20]
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common_arguments(parser, quick_help="smoke run: 100 connections held for 2 s")
    parser.add_argument("--connections", type=int, default=5000)
    parser.add_argument("--hold", type=float, default=60.0, help="seconds to hold them")
    parser.add_argument("--settle", type=float, default=2.0, help="seconds before reading RSS")
    parser.add_argument("--concurrency", type=int, default=100, help="joins/connects in flight")
    parser.add_argument("--only", choices=["project", "baseline"], help="run one server only")
    parser.add_argument("--settings", help="DJANGO_SETTINGS_MODULE for the project (A/B runs)")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="py-spy profiles of opening and holding into bench/results/profile-*-{open,idle}.txt",
    )
    parser.add_argument(
        "--profile-gil",
        action="store_true",
        help="with --profile: sample only the thread holding the GIL",
    )
    args = parser.parse_args()
    if args.quick:
        args.connections, args.hold, args.settle = 100, 2.0, 0.5
    limit = raise_fd_limit(3 * args.connections + 1024)
    data = {
        "benchmark": "connections",
        "machine": machine_info(),
        "config": {**{k: v for k, v in vars(args).items() if k != "json_path"}, "fd_limit": limit},
        "servers": {},
    }
    targets = []
    if args.only != "baseline":
        targets.append(("project", lambda: ProjectTarget("project", False, False, args.settings)))
    if args.only != "project":
        targets.append(("baseline", BaselineTarget))
    for name, make in targets:
        print(
            f"running {name}: {args.connections} idle connections for {args.hold:g} s", flush=True
        )
        data["servers"][name] = asyncio.run(measure(make(), args))
    servers = data["servers"]
    if "project" in servers and "baseline" in servers:
        data["ratio"] = {
            key: ratio(servers["project"][key], servers["baseline"][key])
            for key in (
                "kib_per_connection",
                "server_cpu_s_opening",
                "server_cpu_s_idle_hold",
                "idle_cpu_percent_of_core",
            )
        }
    data["machine"]["loadavg_at_end"] = loadavg()
    figures = [
        ("connected", "connected"),
        ("stayed connected", "stayed_connected"),
        ("RSS before (MiB)", "rss_before_mib"),
        ("RSS connected (MiB)", "rss_connected_mib"),
        ("KiB per connection", "kib_per_connection"),
        ("peak RSS (MiB)", "peak_rss_mib"),
        ("CPU s opening", "server_cpu_s_opening"),
        ("CPU s idle hold", "server_cpu_s_idle_hold"),
        ("idle CPU (% of a core)", "idle_cpu_percent_of_core"),
        ("CPU ms per connection opened", "server_cpu_ms_per_connection_opened"),
        ("connect failures", "connect_failures"),
    ]
    print_table(
        "idle connections",
        [(label, *(fmt(s[key]) for s in servers.values())) for label, key in figures],
        ("figure", *servers),
    )
    for key, value in data.get("ratio", {}).items():
        print(f"  project / baseline, {key}: {fmt(value, 2)}")
    write_results("connections-quick" if args.quick else "connections", data, args.json_path)
    return 0 if all(s["connected"] for s in servers.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
