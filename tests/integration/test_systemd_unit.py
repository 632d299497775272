"""The systemd files: the unit passes ``systemd-analyze verify`` with no output at all (it
exits 0 on warnings such as a misspelt key, so any stderr fails the test) and scores at most
1.5 in ``systemd-analyze security``; its hardening keeps what the drivers need (a UUCP lock's
holder is still seen alive behind ProtectProc=invisible and a user namespace); sysusers and
tmpfiles snippets apply to a scratch root; the udev rules are well formed."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.conftest import REPO, need_binary

SYSTEMD = REPO / "systemd"
UNIT = SYSTEMD / "posagent.service"


def unit_keys(text: str) -> dict[str, list[str]]:
    keys: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")) and "=" in line:
            k, v = line.split("=", 1)
            keys.setdefault(k.strip(), []).append(v.strip())
    return keys


def verify(analyze: str, unit: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([analyze, "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=120,
                          cwd=unit.parent)


def runnable_copy(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at a binary that exists here (verify checks that)."""
    text = UNIT.read_text(encoding="utf-8")
    exe = shutil.which("posagent") or shutil.which("true") or "/bin/true"
    copy = tmp_path / "posagent.service"
    copy.write_text(text.replace("ExecStart=/usr/bin/posagent run", f"ExecStart={exe} run"), encoding="utf-8")
    return copy


def test_unit_verifies_without_any_warning(tmp_path: Path) -> None:
    analyze = need_binary("systemd-analyze", "systemd")
    result = verify(analyze, runnable_copy(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr
    assert result.stdout.strip() == "", result.stdout


def test_the_check_catches_a_misspelt_key(tmp_path: Path) -> None:
    """What the test above relies on: a bad key exits 0 but prints a warning."""
    analyze = need_binary("systemd-analyze", "systemd")
    copy = runnable_copy(tmp_path)
    copy.write_text(copy.read_text().replace("WatchdogSec=", "WatchDogSec="), encoding="utf-8")
    result = verify(analyze, copy)
    assert "Unknown key" in result.stderr and "WatchDogSec" in result.stderr


def test_unit_has_what_the_design_asks() -> None:
    keys = unit_keys(UNIT.read_text(encoding="utf-8"))
    one = {k: v[-1] for k, v in keys.items()}
    assert one["Type"] == "notify" and one["ExecStart"] == "/usr/bin/posagent run"
    assert one["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert one["WatchdogSec"] and one["User"] == "posagent"
    assert set(one["SupplementaryGroups"].split()) == {"dialout", "lp", "input"}
    assert one["StateDirectory"] == "posagent" and one["ConfigurationDirectory"] == "posagent"
    # the token from its file; MQTT's password from systemd's credential store, where a missing
    # one is no error (an absolute path that does not exist stops the unit: 243/CREDENTIALS)
    creds = dict(v.split(":", 1) for v in keys["LoadCredential"])
    assert creds == {"upstream-token": "/etc/posagent/token", "upstream-password": "posagent.upstream-password"}
    assert one["LimitCORE"] == "0"  # a core dump could hold card data
    for key, value in {"ProtectSystem": "strict", "ProtectHome": "yes", "NoNewPrivileges": "yes",
                       "PrivateTmp": "yes", "DevicePolicy": "closed"}.items():
        assert one[key] == value, key
    assert "AF_INET" in one["RestrictAddressFamilies"] and "AF_UNIX" in one["RestrictAddressFamilies"]
    allowed = " ".join(keys["DeviceAllow"])
    for group in ("char-ttyS", "char-ttyUSB", "char-ttyACM", "char-usb_device", "char-input"):
        assert group in allowed
    # char-ttyUSB is only allowed if usbserial is loaded before the unit starts
    assert "modprobe@usbserial.service" in keys["Wants"] and "modprobe@usbserial.service" in keys["After"]
    # the textfile dir the docs name, writable despite ProtectSystem=strict, ignored if absent
    assert "-/var/lib/prometheus/node-exporter" in keys["ReadWritePaths"]
    # share = "guest" takes UUCP lock files; share = "proxy" makes a pty behind /run/posagent
    assert "-/run/lock" in keys["ReadWritePaths"] and one["RuntimeDirectory"] == "posagent"
    assert "char-pts" in allowed and "/dev/ptmx" in allowed


MAX_EXPOSURE = 1.5


def exposure(analyze: str, unit: Path) -> tuple[float, str]:
    r = subprocess.run([analyze, "security", "--offline=true", "--no-pager", str(unit)], capture_output=True,
                       text=True, timeout=120, cwd=unit.parent)
    assert r.returncode == 0, r.stderr
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d)", r.stdout)
    assert m, r.stdout + r.stderr
    return float(m.group(1)), r.stdout


def test_exposure_is_at_most_1_5(tmp_path: Path) -> None:
    analyze = need_binary("systemd-analyze", "systemd")
    figure, report = exposure(analyze, runnable_copy(tmp_path))
    open_items = "\n".join(line for line in report.splitlines() if line.startswith("✗"))
    assert figure <= MAX_EXPOSURE, f"exposure {figure} > {MAX_EXPOSURE}; what is still open:\n{open_items}"


def test_the_exposure_check_catches_a_weaker_unit(tmp_path: Path) -> None:
    """What the test above relies on: dropping two settings raises the figure."""
    analyze = need_binary("systemd-analyze", "systemd")
    copy = runnable_copy(tmp_path)
    hardened, _ = exposure(analyze, copy)
    weaker = "\n".join(line for line in copy.read_text().splitlines()
                       if not line.startswith(("PrivateUsers=", "ProtectProc=")))
    copy.write_text(weaker + "\n", encoding="utf-8")
    assert exposure(analyze, copy)[0] > hardened


def test_hardening_keeps_what_the_drivers_need() -> None:
    keys = unit_keys(UNIT.read_text(encoding="utf-8"))
    one = {k: v[-1] for k, v in keys.items()}
    for key, value in {"ProtectProc": "invisible", "PrivateUsers": "yes", "PrivateMounts": "yes",
                       "RemoveIPC": "yes", "UMask": "0077", "SystemCallErrorNumber": "EPERM",
                       "CapabilityBoundingSet": "", "RestrictNamespaces": "yes"}.items():
        assert one.get(key) == value, key
    filters = keys["SystemCallFilter"]
    assert filters[0] == "@system-service" and "~@privileged @resources" in filters
    # share = "proxy": the pty's slave goes to group posagent (fchown), the one call taken back
    assert filters[-1] == "fchown"
    # psutil reads /proc/stat and /proc/meminfo, the agent /proc/sys/kernel/random/boot_id
    assert "ProcSubset" not in keys
    # libusb (pyusb) fails to start without its netlink uevent socket; pcscd and sd_notify are AF_UNIX
    assert set(one["RestrictAddressFamilies"].split()) == {"AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"}
    assert one.get("PrivateNetwork", "no") == "no" and "IPAddressDeny" not in keys  # the upstream is anywhere
    assert one["Type"] == "notify" and one["NotifyAccess"] == "main" and one["WatchdogSec"]


AGENT_UID = 4242  # the agent's user in the probe: not root, no capabilities, no other process of its own

PROBE = """
import ctypes, json, os, sys
from posagent.drivers.transport.locks import other_openers, pid_alive
pid, path, gone, uid, userns = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5] == "1"
os.setgroups([])
os.setresgid(uid, uid, uid)
os.setresuid(uid, uid, uid)
libc = ctypes.CDLL(None, use_errno=True)
libc.prctl(4, 1)  # PR_SET_DUMPABLE, which the uid change cleared: /proc/self is ours again, as after an exec
if userns:  # PrivateUsers=yes: a user namespace that maps only this user (other users are nobody)
    if libc.unshare(0x10000000) != 0:  # CLONE_NEWUSER
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWUSER)")
    with open("/proc/self/uid_map", "w") as fh:
        fh.write(f"{uid} {uid} 1")
print(json.dumps({"visible": os.path.exists(f"/proc/{pid}"), "alive": pid_alive(pid),
                  "openers": other_openers(path), "gone_alive": pid_alive(gone)}))
"""


def test_a_lock_holder_stays_alive_behind_protect_proc_and_private_users() -> None:
    """ProtectProc=invisible and PrivateUsers=yes, as the kernel applies them: a process of
    another user (the POS application holding LCK..ttyS0) vanishes from /proc, yet the agent
    still judges it alive (kill(pid, 0) answers EPERM, not ESRCH) and sees the same openers
    of the port as without them (another user's /proc/PID/fd was never readable)."""
    if os.geteuid() != 0:
        pytest.skip("needs root: mounts a /proc with hidepid=invisible in a private mount namespace")
    unshare = need_binary("unshare", "util-linux")
    setpriv = need_binary("setpriv", "util-linux")
    workdir = Path(tempfile.mkdtemp(prefix="posagent-hidepid-"))
    try:
        workdir.chmod(0o755)
        port = workdir / "ttyS0"
        port.write_text("")
        port.chmod(0o644)
        # the POS application: another user, with the "port" open
        with port.open("rb") as fh:
            holder = subprocess.Popen([setpriv, "--reuid=65534", "--regid=65534", "--clear-groups",
                                       "sleep", "60"], stdin=fh)
        gone = subprocess.Popen(["true"])
        gone.wait()
        try:
            args = [sys.executable, "-c", PROBE, str(holder.pid), str(port), str(gone.pid), str(AGENT_UID)]
            env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
            plain = subprocess.run([*args, "0"], capture_output=True, text=True, timeout=60, env=env)
            assert plain.returncode == 0, plain.stderr
            hidden = subprocess.run(
                [unshare, "--mount", "--propagation", "private", "sh", "-c",
                 'mount -t proc -o hidepid=invisible proc /proc && exec "$@"', "sh", *args, "1"],
                capture_output=True, text=True, timeout=60, env=env)
            if hidden.returncode != 0 and ("mount:" in hidden.stderr or "unshare:" in hidden.stderr
                                           or "CLONE_NEWUSER" in hidden.stderr):
                pytest.skip(f"this machine does not allow the namespaces: {hidden.stderr.strip()}")
            assert hidden.returncode == 0, hidden.stderr
        finally:
            holder.kill()
            holder.wait()
        seen, unseen = json.loads(plain.stdout), json.loads(hidden.stdout)
        assert seen["visible"] and not unseen["visible"]  # hidepid took effect
        assert seen["alive"] and unseen["alive"]  # the lock's holder is alive either way
        assert not seen["gone_alive"] and not unseen["gone_alive"]  # a stale lock is still stale
        assert seen["openers"] == unseen["openers"] == []
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def test_the_unit_groups_are_the_sysusers_groups() -> None:
    keys = unit_keys(UNIT.read_text(encoding="utf-8"))
    sysusers = (SYSTEMD / "posagent.sysusers").read_text(encoding="utf-8")
    member_of = {line.split()[2] for line in sysusers.splitlines() if line.startswith("m posagent ")}
    assert set(keys["SupplementaryGroups"][-1].split()) == member_of


def test_the_docs_and_the_example_config_agree_with_the_unit() -> None:
    from posagent.config.loader import load_config

    unit = unit_keys(UNIT.read_text(encoding="utf-8"))
    example = load_config(str(REPO / "config" / "example.toml"))
    docs = (REPO / "docs" / "daemon.md").read_text(encoding="utf-8")
    textfile_dir = unit["ReadWritePaths"][0].lstrip("-")
    assert textfile_dir in (REPO / "config" / "example.toml").read_text(encoding="utf-8")
    assert textfile_dir in docs and "ReadWritePaths" in docs
    assert example.schedule.status_poll > 0 and "status_poll" in docs
    # the install steps end with the binary where ExecStart= looks for it, and never a bare system pip
    exe = unit["ExecStart"][-1].split()[0]
    assert exe in docs and "python3 -m venv" in docs
    assert "`pip install .`" not in docs  # Debian 12's system pip refuses it (EXTERNALLY-MANAGED)


def test_sysusers_and_tmpfiles_apply_to_a_scratch_root(tmp_path: Path) -> None:
    sysusers = need_binary("systemd-sysusers", "systemd")
    tmpfiles = need_binary("systemd-tmpfiles", "systemd")
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (root / "etc/group").write_text("root:x:0:\ndialout:x:20:\nlp:x:7:\ninput:x:101:\n")
    r = subprocess.run([sysusers, f"--root={root}", str(SYSTEMD / "posagent.sysusers")],
                       capture_output=True, text=True, timeout=60)
    if r.returncode != 0 and "Permission denied" in r.stderr:
        pytest.skip(f"systemd-sysusers needs root to write a scratch /etc: {r.stderr.strip()}")
    assert r.returncode == 0, r.stderr
    passwd = (root / "etc/passwd").read_text()
    assert re.search(r"^posagent:x:\d+:\d+:.*:/var/lib/posagent:/usr/sbin/nologin$", passwd, re.M), passwd
    groups = {line.split(":")[0]: line.split(":")[3] for line in (root / "etc/group").read_text().splitlines()}
    assert all("posagent" in groups[g] for g in ("dialout", "lp", "input")), groups
    r = subprocess.run([tmpfiles, f"--root={root}", "--create", str(SYSTEMD / "posagent.tmpfiles")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert (root / "etc/posagent").is_dir()


RULE_KEYS = {"SUBSYSTEM", "KERNEL", "ATTRS{idVendor}", "ATTRS{idProduct}", "ATTR{idVendor}", "ENV{DEVTYPE}",
             "SYMLINK", "GROUP", "MODE"}
PAIR = re.compile(r'^\s*([A-Z]+(?:\{[A-Za-z_]+\})?)\s*(==|!=|\+=|=|:=)\s*"([^"]*)"\s*$')


def test_udev_rules_are_well_formed() -> None:
    text = (SYSTEMD / "60-posagent.rules").read_text(encoding="utf-8")
    rules = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert rules
    names = set()
    for rule in rules:
        pairs = [PAIR.match(p) for p in rule.split(",")]
        assert all(pairs), rule
        fields = {m.group(1): (m.group(2), m.group(3)) for m in pairs if m}
        assert set(fields) <= RULE_KEYS, rule
        assert fields["SUBSYSTEM"][0] == "=="
        assert fields["GROUP"][1] in {"dialout", "lp", "input"}, rule  # the service's groups
        assert re.fullmatch(r"06[0-6]0", fields["MODE"][1]), rule  # never world-accessible
        if "SYMLINK" in fields:
            op, link = fields["SYMLINK"]
            assert op == "+=" and link.startswith("posagent/"), rule
            names.add(link)
    assert {"posagent/printer", "posagent/ups", "posagent/card-reader", "posagent/keypad"} <= names
    udevadm = shutil.which("udevadm")
    if udevadm:  # `udevadm verify` exists from systemd 254 on; use it where it does
        help_text = subprocess.run([udevadm, "--help"], capture_output=True, text=True, timeout=30).stdout
        if " verify " in help_text:
            r = subprocess.run([udevadm, "verify", str(SYSTEMD / "60-posagent.rules")], capture_output=True,
                               text=True, timeout=30)
            assert r.returncode == 0, r.stderr + r.stdout
