"""The benchmark: ``python -m tests.bench.run [--quick]``.

Prints one table: medians, p99 and every figure as a ratio to FLOOR measured in the same
run, interleaved with the agent's own path; the wire-time limit of each exchange at 9600
and 115200 baud 8N1; the frame codec; whole-process figures; the daemon at steady state.
It reports; it never fails on a slow machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tests.bench.harness import SimProcess, Variant, measure, median_us, p99_us, ratio, wire_ms

EXCHANGES = {  # label: (sim URL, bytes out, bytes in)
    "printer status DLE EOT 1": ("sim://escpos", 3, 1),
    "UPS Q1": ("sim://megatec", 3, 47),
    "card-reader echo, 64-byte payload": ("sim://card-reader", 69, 70),
}


def machine() -> str:
    cpu = "?"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            cpu = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), "?")
    except OSError:
        pass
    return (f"{os.cpu_count()} CPUs ({cpu}), Linux {platform.release()}, Python {platform.python_version()}, "
            f"{time.strftime('%Y-%m-%d')}")


def exchange_rows(quick: bool, state_dir: str) -> list[str]:
    from tests.bench import exchanges as ex

    rounds, n = (4, 300) if quick else (10, 2000)
    rows: list[str] = []
    builders: dict[str, Callable[[str, str, str], dict[str, Callable[[], object]]]] = {
        "printer status DLE EOT 1": ex.printer_variants,
        "UPS Q1": ex.ups_variants,
        "card-reader echo, 64-byte payload": ex.reader_variants,
    }
    for label, (sim_url, out_b, in_b) in EXCHANGES.items():
        with SimProcess(sim_url) as sim:
            fns = builders[label](sim.path, sim.url, state_dir)
            slow = {k: v for k, v in fns.items() if "naive" in k or "readline" in k}
            fast = [Variant(k, v, n) for k, v in fns.items() if k not in slow]
            measure(fast, rounds)
            # readline() waits out its 0.1 s timeout on every call: a few calls say enough.
            slow_v = [Variant(k, v, 5 if "readline" in k else max(20, n // 20)) for k, v in slow.items()]
            floor = fast[0]
            if slow_v:
                # Slow variants get fewer exchanges, interleaved with a matching FLOOR.
                floor2 = Variant("FLOOR", floor.fn, max(20, n // 20))
                measure([floor2, *slow_v], rounds)
            for v in fast:
                rows.append(_row(label, v, floor))
            for v in slow_v:
                rows.append(_row(label, v, floor2))
            if label.startswith("printer"):
                lib, close_lib = ex.escpos_library(sim.path)
                lib_v = [Variant(k, f, 2 if quick else 3) for k, f in lib.items()]
                measure(lib_v, 1)
                close_lib()
                for v in lib_v:
                    rows.append(f"| {label} | {v.label} | {median_us(v):,.0f} | {p99_us(v):,.0f} | "
                                f"{median_us(v) / median_us(floor):,.0f} |")
        rows.append(f"| {label} | wire limit at 9600 / 115200 baud 8N1 | {wire_ms(out_b, in_b, 9600) * 1000:,.0f} / "
                    f"{wire_ms(out_b, in_b, 115200) * 1000:,.0f} | | |")
    return rows


def guest_rows(quick: bool, state_dir: str) -> list[str]:
    """A whole status read of a printer shared with the POS application (share = "guest")."""
    from tests.bench import exchanges as ex

    rounds, n = (4, 100) if quick else (10, 500)
    label = "printer status as a guest, DLE EOT 1-4"
    # The lock directory on tmpfs, as /run/lock is on Debian and every systemd distribution
    # (where there is none, the figures include the disk's metadata writes).
    shm = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    before = os.environ.get("POSAGENT_LOCK_DIR")
    try:
        with SimProcess("sim://escpos") as sim, \
                tempfile.TemporaryDirectory(prefix="posagent-lock-", dir=shm) as lock_dir:
            variants = [Variant(k, f, n) for k, f in ex.guest_variants(sim.path, sim.url, state_dir, lock_dir).items()]
            measure(variants, rounds)
    finally:  # the lock directory was this run's alone
        if before is None:
            os.environ.pop("POSAGENT_LOCK_DIR", None)
        else:
            os.environ["POSAGENT_LOCK_DIR"] = before
    floor = variants[0]
    return [f"| {label} | {v.label} | {median_us(v):,.1f} | {p99_us(v):,.1f} | {ratio(v, floor):.2f} |"
            for v in variants]


def _row(label: str, v: Variant, floor: Variant) -> str:
    from tests.bench.exchanges import STATUS_LABEL

    exchanges = 4 if v.label == STATUS_LABEL else 1  # status() is four DLE EOT exchanges
    return (f"| {label} | {v.label} | {median_us(v):,.1f} | {p99_us(v):,.1f} | "
            f"{ratio(v, floor) / exchanges:.2f} |")


def codec_rows(quick: bool) -> list[str]:
    from posagent.drivers.cardreader import frames

    p = frames.get_profile("generic-len")
    payload = bytes(range(4, 68))

    def naive_encode(data: bytes) -> bytes:
        out = [p.stx, len(data)]
        for b in data:
            out.append(b)
        out.append(p.etx)
        lrc = 0
        for b in out[1:]:
            lrc ^= b
        out.append(lrc)
        return bytes(out)

    def naive_decode(frame: bytes) -> bytes:
        if frame[0] != p.stx or frame[-2] != p.etx:
            raise ValueError("framing")
        lrc = 0
        for b in frame[1:-1]:
            lrc ^= b
        if lrc != frame[-1] or frame[1] != len(frame) - 4:
            raise ValueError("lrc")
        out = bytearray()
        for b in frame[2:-2]:
            out.append(b)
        return bytes(out)

    assert naive_decode(naive_encode(payload)) == payload == frames.decode(frames.encode(payload, p), p)
    assert naive_encode(payload) == frames.encode(payload, p)
    n = 20_000 if quick else 100_000

    def rate(fn: Callable[[], object]) -> float:
        best = []
        for _ in range(5):
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            best.append(n / (time.perf_counter() - t0))
        return statistics.median(best)

    agent = rate(lambda: frames.decode(frames.encode(payload, p), p))
    naive = rate(lambda: naive_decode(naive_encode(payload)))
    return [f"| frame codec (encode + decode, 64-byte payload, LRC) | agent: drivers.frames | {agent:,.0f} ops/s | | "
            f"{agent / naive:.2f} x the per-byte loop |",
            f"| frame codec | plain per-byte Python loop | {naive:,.0f} ops/s | | 1.00 |"]


def process_rows(quick: bool) -> list[str]:
    from tests.bench.processes import time_command

    runs = 3 if quick else 7
    rows = []
    for label, args in (("posagent --version", ["--version"]),
                        ("posagent selftest --sim --level internal", ["selftest", "--sim", "--level", "internal"]),
                        ("posagent selftest --sim --level external", ["selftest", "--sim", "--level", "external"])):
        f = time_command(label, args, runs, env={"NO_COLOR": "1"})
        rows.append(f"| process | {label} (exit {','.join(map(str, sorted(set(f.returncodes))))}) | "
                    f"{f.median_ms:,.0f} ms wall | {max(f.wall_ms):,.0f} ms max | peak RSS {f.rss_mb:.1f} MB |")
    return rows


def daemon_rows(seconds: float, state_dir: str) -> list[str]:
    from tests.bench.daemon_bench import run_daemon_bench

    rows = []
    figures = {}
    for share in ("owner", "guest"):
        d = figures[share] = run_daemon_bench(seconds, state_dir, share)
        rows.append(f"| daemon, 5 simulated devices + system, 1 s heartbeat, {d.seconds:.0f} s | posagent run, "
                    f"printer and reader share = {share} | CPU {d.cpu_pct:.2f} % of one core | | "
                    f"RSS {d.rss_mb:.1f} MB, {d.heartbeats} heartbeats delivered |")
    owner, guest = figures["owner"].cpu_pct, figures["guest"].cpu_pct
    if owner > 0:
        rows.append(f"| daemon | CPU as guest / as owner | {guest / owner:.2f} x | | |")
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="fewer rounds and a 10 s daemon run (for CI)")
    ap.add_argument("--daemon-seconds", type=float, help="steady-state duration (default 60, quick 10)")
    ap.add_argument("--no-clean-install", action="store_true",
                    help="run the process figures from this environment instead of a fresh venv")
    ap.add_argument("--skip", default="", help="comma-separated sections to skip: exchanges,guest,codec,process,daemon")
    args = ap.parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))
    print(f"Machine: {machine()}")
    print("| exchange | variant | median us | p99 us | x FLOOR |")
    print("| --- | --- | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory(prefix="posagent-bench-") as state:
        if not args.no_clean_install and not {"process", "daemon"} <= skip:
            from tests.bench.processes import use_clean_install

            print(f"Note: {use_clean_install(state, str(Path(__file__).resolve().parents[2]))}", flush=True)
        sections: list[tuple[str, Callable[[], list[str]]]] = [
            ("exchanges", lambda: exchange_rows(args.quick, state)),
            ("guest", lambda: guest_rows(args.quick, state)),
            ("codec", lambda: codec_rows(args.quick)),
            ("process", lambda: process_rows(args.quick)),
            ("daemon", lambda: daemon_rows(args.daemon_seconds or (10.0 if args.quick else 60.0), state)),
        ]
        for name, section in sections:
            if name in skip:
                continue
            for row in section():
                print(row, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
