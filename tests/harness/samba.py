"""A throwaway Samba Active Directory domain controller on 127.0.0.1 (shared/research/ldap-lab.md, section 8).

    dc = SambaDC(base_dir)     # provisions LAB.EXAMPLE.ORG into base_dir (about 5 s)
    dc.start()                 # `samba -i -M single`, LDAP only, until it answers on 127.0.0.1:389
    dc.stop()

It must run as root and takes port 389 (Samba has no setting for another LDAP port) of a loopback address
configured on ``lo`` (Samba listens on no other): 127.0.0.1 or ::1. So that test runs sharing a machine
don't collide, a DC holds an exclusive lock per address (``LOCK_DIR/syncd-test-samba-<address>.lock``)
from creation to ``close()``, takes the first address whose lock is free and whose port 389 is free,
and waits for one up to :data:`LOCK_WAIT` seconds. The samba process gets SIGTERM if the test process
dies (``PR_SET_PDEATHSIG``), so an interrupted run leaves no DC behind. Provisioning writes only below
``base_dir``; ``smb.conf`` is patched after provisioning because ``samba-tool domain provision --option``
does not keep most options.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import IO

REALM = "LAB.EXAMPLE.ORG"
DOMAIN = "LAB"
BASE_DN = "DC=lab,DC=example,DC=org"
ADMIN = f"Administrator@{REALM.lower()}"
ADMIN_PASSWORD = "Passw0rd!Lab2024"
ADDRESSES = ("127.0.0.1", "::1")
PORT = 389
LOCK_DIR = Path(tempfile.gettempdir())
LOCK_WAIT = 1200.0
START_TIMEOUT = 60.0
_INSTALL_HINT = "install it with: apt-get install samba samba-ad-dc samba-ad-provision samba-dsdb-modules"


class SambaUnavailable(RuntimeError):
    """Samba is not installed, we are not root, port 389 is taken, or the DC did not start."""


def _tool(name: str) -> str:
    path = shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/bin"]))
    if path is None:
        raise SambaUnavailable(f"{name} not found; {_INSTALL_HINT}")
    return path


def _port_taken(host: str) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, PORT)) == 0


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the process that started us dies (Linux prctl)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class SambaDC:
    """One provisioned, startable Samba AD DC."""

    base_dn = BASE_DN
    admin = ADMIN
    admin_password = ADMIN_PASSWORD

    def __init__(self, base_dir: Path) -> None:
        if os.geteuid() != 0:
            raise SambaUnavailable("a Samba AD DC must run as root (it binds ports 389 and 88)")
        self._samba = _tool("samba")
        self._samba_tool = _tool("samba-tool")
        self._lock: IO[bytes] | None = None
        self.host = self._take_address()
        self.url = f"ldap://[{self.host}]:{PORT}" if ":" in self.host else f"ldap://{self.host}:{PORT}"
        self.dir = Path(base_dir).resolve()
        self.conf = self.dir / "etc" / "smb.conf"
        self._proc: subprocess.Popen[bytes] | None = None

    def provision(self) -> None:
        args = [
            self._samba_tool, "domain", "provision", "--use-rfc2307", f"--realm={REALM}",
            f"--domain={DOMAIN}", "--server-role=dc", "--dns-backend=NONE", f"--adminpass={ADMIN_PASSWORD}",
            f"--targetdir={self.dir}", "--host-name=dc1", "--host-ip=127.0.0.1", "--host-ip6=::1",
            f"--option=interfaces={self.host}", "--option=bind interfaces only=yes",
        ]  # fmt: skip
        proc = subprocess.run(
            args, capture_output=True, text=True, check=False, timeout=300, stdin=subprocess.DEVNULL
        )
        if proc.returncode != 0:
            raise SambaUnavailable(
                f"samba-tool domain provision failed:\n{(proc.stderr + proc.stdout)[-3000:]}"
            )
        (self.dir / "log").mkdir(exist_ok=True)
        (self.dir / "run").mkdir(exist_ok=True)
        text = self.conf.read_text()
        extra = (
            f"\tldap server require strong auth = no\n\tpid directory = {self.dir / 'run'}\n"
            "\tdisable netbios = yes\n"
        )
        text = re.sub(r"\tserver services = .*\n", "\tserver services = ldap\n", text)
        text = re.sub(r"\tlog file = .*\n", f"\tlog file = {self.dir / 'log'}/%m.log\n", text)
        text = text.replace(f"\tinterfaces = {self.host}\n", f"\tinterfaces = {self.host}\n{extra}")
        self.conf.write_text(text)

    def _take_address(self) -> str:
        deadline = time.monotonic() + LOCK_WAIT
        while True:
            for address in ADDRESSES:
                lock = (LOCK_DIR / f"syncd-test-samba-{address.replace(':', '_')}.lock").open("ab")
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    lock.close()
                    continue
                if _port_taken(address):  # something outside our locks (another server) is there
                    fcntl.flock(lock, fcntl.LOCK_UN)
                    lock.close()
                    continue
                self._lock = lock
                return address
            if time.monotonic() > deadline:
                raise SambaUnavailable(
                    f"port 389 of {' and '.join(ADDRESSES)} stayed taken for {LOCK_WAIT:.0f} s"
                )
            time.sleep(2)

    def _release_address(self) -> None:
        lock, self._lock = self._lock, None
        if lock is not None:
            fcntl.flock(lock, fcntl.LOCK_UN)
            lock.close()

    def start(self) -> None:
        self._start()

    def _start(self) -> None:
        if _port_taken(self.host):
            raise SambaUnavailable(f"{self.host}:{PORT} is taken: another directory server runs here")
        log = (self.dir / "log" / "samba.stdout").open("wb")
        self._proc = subprocess.Popen(
            [self._samba, "-i", "-M", "single", "-s", str(self.conf)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - no threads start samba
        )
        log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                output = (self.dir / "log" / "samba.stdout").read_text(errors="replace")[-3000:]
                raise SambaUnavailable(f"samba exited with {self._proc.returncode}:\n{output}")
            if _port_taken(self.host) and self._answers():
                return
            time.sleep(0.2)
        self.stop()
        raise SambaUnavailable(f"samba did not answer on {self.url} within {START_TIMEOUT:.0f} s")

    def _answers(self) -> bool:
        proc = subprocess.run(
            ["ldapsearch", "-x", "-H", self.url, "-s", "base", "-b", "", "defaultNamingContext"],
            capture_output=True,
            check=False,
            timeout=10,
            stdin=subprocess.DEVNULL,
        )
        return proc.returncode == 0

    def create_user(self, name: str, password: str) -> str:
        """A user with a password (``samba-tool user create``; LDAP would need TLS for unicodePwd).
        Returns its bind name ``name@realm``."""
        proc = subprocess.run(
            [self._samba_tool, "user", "create", name, password, "-s", str(self.conf)],
            capture_output=True, text=True, check=False, timeout=120, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        if proc.returncode != 0:
            raise SambaUnavailable(f"samba-tool user create {name} failed: {proc.stderr.strip()}")
        return f"{name}@{REALM.lower()}"

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def close(self) -> None:
        self.stop()
        self._release_address()
        shutil.rmtree(self.dir, ignore_errors=True)
