"""A throwaway OpenLDAP slapd (shared/research/ldap-lab.md, sections 2.3-2.5).

One directory per instance: ``slapd.d`` (cn=config, written offline by ``slapadd -n 0``), ``db`` (MDB) and
``run`` (pid file, args file, ldapi socket). The server listens on ``ldap://127.0.0.1:<free port>`` and on an
ldapi socket, with the memberof and syncprov overlays on ``dc=example,dc=org``.

    slapd = Slapd()                  # or Slapd(base_dir)
    slapd.load_ldif(text_or_path)    # optional, offline (slapadd), before start()
    slapd.start()
    slapd.add_ldif(text)             # online, as the rootdn (ldapmodify -a: adds, or changetype records)
    slapd.restart()
    slapd.close()                    # stop, and remove the directory if this object created it
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import hashlib
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.parse
import weakref
from pathlib import Path
from types import TracebackType

from harness.net import LOCALHOST, free_port

SUFFIX = "dc=example,dc=org"
ADMIN_DN = f"cn=admin,{SUFFIX}"
ADMIN_PASSWORD = "secret"
BIND_DN = f"cn=syncbot,{SUFFIX}"
BIND_PASSWORD = "syncpw"
LIMITED_DN = f"cn=limited,{SUFFIX}"  # a service account capped at LIMITED_SIZE entries per search
LIMITED_PASSWORD = "limitedpw"
LIMITED_SIZE = 50
PEOPLE_DN = f"ou=people,{SUFFIX}"
GROUPS_DN = f"ou=groups,{SUFFIX}"
PEERCRED_ROOT = "gidNumber=0+uidNumber=0,cn=peercred,cn=external,cn=auth"

_SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin", "/sbin"])
_MODULE_DIRS = ["/usr/lib/ldap", "/usr/lib/x86_64-linux-gnu/ldap", "/usr/lib64/openldap", "/usr/lib/openldap"]
_SCHEMA_DIRS = ["/etc/ldap/schema", "/etc/openldap/schema", "/usr/share/openldap/schema"]
_SCHEMAS = ["core", "cosine", "nis", "inetorgperson"]
_INSTALL_HINT = "install it with: apt-get install slapd ldap-utils (scripts/test does this when run as root)"

START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0

_running: weakref.WeakSet[Slapd] = weakref.WeakSet()


class SlapdError(RuntimeError):
    """slapd or one of the OpenLDAP tools failed."""


class SlapdNotInstalled(SlapdError):
    """The OpenLDAP server or client tools are not installed."""


def ssha(password: str) -> str:
    """``{SSHA}`` hash as written by ``slappasswd -s``."""
    salt = secrets.token_bytes(8)
    digest = hashlib.sha1(password.encode() + salt).digest()  # the LDAP {SSHA} scheme
    return "{SSHA}" + base64.b64encode(digest + salt).decode()


def find_tool(name: str) -> str:
    path = shutil.which(name, path=_SEARCH_PATH)
    if path is None:
        raise SlapdNotInstalled(f"OpenLDAP tool {name!r} not found; {_INSTALL_HINT}")
    return path


def _first_dir(candidates: list[str], marker: str, what: str) -> str:
    for cand in candidates:
        if any(Path(cand).glob(marker)):
            return cand
    raise SlapdNotInstalled(f"OpenLDAP {what} not found in {', '.join(candidates)}; {_INSTALL_HINT}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (no init reaping it) is as good as dead
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


class Slapd:
    """One throwaway slapd instance. Not thread-safe; use one per test (or one per session)."""

    suffix = SUFFIX
    admin_dn = ADMIN_DN
    admin_password = ADMIN_PASSWORD
    bind_dn = BIND_DN
    bind_password = BIND_PASSWORD
    limited_dn = LIMITED_DN
    limited_password = LIMITED_PASSWORD
    limited_size = LIMITED_SIZE
    people_dn = PEOPLE_DN
    groups_dn = GROUPS_DN

    def __init__(self, base_dir: str | os.PathLike[str] | None = None, *, port: int | None = None) -> None:
        self._bin_slapd = find_tool("slapd")
        self._bin_slapadd = find_tool("slapadd")
        self._bin_ldapmodify = find_tool("ldapmodify")
        self._bin_ldapsearch = find_tool("ldapsearch")
        self._module_dir = _first_dir(_MODULE_DIRS, "back_mdb*", "modules (back_mdb)")
        self._schema_dir = _first_dir(_SCHEMA_DIRS, "core.ldif", "schema files (core.ldif)")
        self._owns_dir = base_dir is None
        self.dir = Path(tempfile.mkdtemp(prefix="syncd-slapd-") if base_dir is None else base_dir).resolve()
        self.config_dir = self.dir / "slapd.d"
        self.db_dir = self.dir / "db"
        self.run_dir = self.dir / "run"
        self.pid_file = self.run_dir / "slapd.pid"
        self.ldapi_path = self.run_dir / "ldapi"
        self._short_run_dir: str | None = None
        if len(str(self.ldapi_path).encode()) > 100:  # sun_path is 108 bytes
            self._short_run_dir = tempfile.mkdtemp(prefix="slapd-")
            self.ldapi_path = Path(self._short_run_dir) / "ldapi"
        self.port = port or free_port()
        self._fixed_port = port is not None
        self._initialized = False
        self._pid: int | None = None

    # ---- properties -----------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"ldap://{LOCALHOST}:{self.port}"

    @property
    def ldapi_url(self) -> str:
        return "ldapi://" + urllib.parse.quote(str(self.ldapi_path), safe="")

    @property
    def running(self) -> bool:
        return self._pid is not None and _pid_alive(self._pid)

    @property
    def pid(self) -> int | None:
        return self._pid

    # ---- setup ----------------------------------------------------------------------------------
    def _config_ldif(self) -> str:
        root_pw = ssha(ADMIN_PASSWORD)
        schemas = "\n".join(f"include: file://{self._schema_dir}/{name}.ldif\n" for name in _SCHEMAS)
        indexes = "\n".join(
            f"olcDbIndex: {spec}"
            for spec in [
                "objectClass eq",
                "uid eq",
                "mail eq,sub",
                "cn eq,sub",
                "member eq",
                "memberOf eq",
                "entryUUID eq",
                "entryCSN eq",
                "modifyTimestamp eq",
            ]
        )
        # olcToolThreads 1: with more, slapadd reads LDIF in a second thread and hands entries over
        # through a flag it spins on without a lock (slapadd.c getrec/getrec_thr, 2.5.13). Two clean-clone
        # CI runs failed with MDB_KEYEXIST on the last entry of a file, the mark of an entry put twice.
        # One thread also loads 100k entries faster here (8.1-8.2 s against 9.5-10.0 s).
        return f"""\
dn: cn=config
objectClass: olcGlobal
cn: config
olcPidFile: {self.pid_file}
olcArgsFile: {self.run_dir / "slapd.args"}
olcLogLevel: none
olcToolThreads: 1

dn: cn=module{{0}},cn=config
objectClass: olcModuleList
cn: module{{0}}
olcModulePath: {self._module_dir}
olcModuleLoad: {{0}}back_mdb
olcModuleLoad: {{1}}memberof
olcModuleLoad: {{2}}syncprov

dn: cn=schema,cn=config
objectClass: olcSchemaConfig
cn: schema

{schemas}
dn: olcDatabase={{-1}}frontend,cn=config
objectClass: olcDatabaseConfig
objectClass: olcFrontendConfig
olcDatabase: {{-1}}frontend
olcSizeLimit: 500
olcAccess: {{0}}to * by dn.exact={PEERCRED_ROOT} manage by * break
olcAccess: {{1}}to dn.exact="" by * read
olcAccess: {{2}}to dn.base="cn=Subschema" by * read

dn: olcDatabase={{0}}config,cn=config
objectClass: olcDatabaseConfig
olcDatabase: {{0}}config
olcRootDN: cn=admin,cn=config
olcRootPW: {root_pw}
olcAccess: {{0}}to * by dn.exact={PEERCRED_ROOT} manage by * break

dn: olcDatabase={{1}}mdb,cn=config
objectClass: olcDatabaseConfig
objectClass: olcMdbConfig
olcDatabase: {{1}}mdb
olcDbDirectory: {self.db_dir}
olcSuffix: {SUFFIX}
olcRootDN: {ADMIN_DN}
olcRootPW: {root_pw}
olcDbMaxSize: 8589934592
olcDbNoSync: TRUE
olcDbCheckpoint: 1024 5
{indexes}
olcLimits: {{0}}dn.exact="{ADMIN_DN}" time=unlimited size=unlimited
olcLimits: {{1}}dn.exact="{BIND_DN}" time=unlimited size=unlimited
olcLimits: {{2}}dn.exact="{LIMITED_DN}" time=unlimited size={LIMITED_SIZE}
olcAccess: {{0}}to attrs=userPassword by self write by anonymous auth by * none
olcAccess: {{1}}to * by * read

dn: olcOverlay={{0}}memberof,olcDatabase={{1}}mdb,cn=config
objectClass: olcOverlayConfig
objectClass: olcMemberOf
olcOverlay: {{0}}memberof
olcMemberOfRefInt: TRUE
olcMemberOfGroupOC: groupOfNames
olcMemberOfMemberAD: member
olcMemberOfMemberOfAD: memberOf
olcMemberOfDangling: ignore

dn: olcOverlay={{1}}syncprov,olcDatabase={{1}}mdb,cn=config
objectClass: olcOverlayConfig
objectClass: olcSyncProvConfig
olcOverlay: {{1}}syncprov
olcSpCheckpoint: 100 10
olcSpSessionLog: 100000
"""

    @staticmethod
    def _base_ldif() -> str:
        return f"""\
dn: {SUFFIX}
objectClass: top
objectClass: dcObject
objectClass: organization
dc: example
o: example

dn: {PEOPLE_DN}
objectClass: organizationalUnit
ou: people

dn: {GROUPS_DN}
objectClass: organizationalUnit
ou: groups

dn: {BIND_DN}
objectClass: organizationalRole
objectClass: simpleSecurityObject
cn: syncbot
userPassword: {ssha(BIND_PASSWORD)}

dn: {LIMITED_DN}
objectClass: organizationalRole
objectClass: simpleSecurityObject
cn: limited
userPassword: {ssha(LIMITED_PASSWORD)}
"""

    def _run(self, args: list[str], *, input_text: str | None = None, what: str) -> str:
        proc = subprocess.run(
            args,
            input=input_text,
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
            stdin=subprocess.DEVNULL if input_text is None else None,
        )
        if proc.returncode != 0:
            output = (proc.stderr + proc.stdout).strip()
            raise SlapdError(f"{what} failed (exit {proc.returncode}): {' '.join(args)}\n{output}")
        return proc.stdout

    def _slapadd(self, ldif: str | Path, *extra: str) -> None:
        if isinstance(ldif, Path):
            self._run([self._bin_slapadd, *extra, "-l", str(ldif)], what="slapadd")
        else:
            self._run([self._bin_slapadd, *extra], input_text=ldif, what="slapadd")

    def prepare(self) -> None:
        """Write cn=config and the base entries (idempotent; start() and load_ldif() call it)."""
        if self._initialized:
            return
        for d in (self.config_dir, self.db_dir, self.run_dir):
            d.mkdir(parents=True, exist_ok=True)
        if not any(self.config_dir.iterdir()):
            self._slapadd(self._config_ldif(), "-n", "0", "-F", str(self.config_dir))
            # Not in quick mode (-q): five entries gain nothing from it.
            self._slapadd(self._base_ldif(), "-w", "-F", str(self.config_dir), "-b", SUFFIX)
        self._initialized = True

    def load_ldif(self, ldif: str | os.PathLike[str]) -> None:
        """Bulk-load entries offline with ``slapadd -q -w`` (server stopped).

        ``ldif`` is LDIF text or a path to an LDIF file. slapadd runs no overlays: put ``memberOf`` on users
        yourself. Leave out the base entries (suffix, ou=people, ou=groups, cn=syncbot, cn=limited): they
        exist.
        """
        if self.running:
            raise SlapdError("load_ldif() runs slapadd and needs the server stopped; use add_ldif() online")
        self.prepare()
        if isinstance(ldif, os.PathLike):
            source: str | Path = Path(ldif)
        elif "\n" not in ldif and not ldif.lstrip().lower().startswith("dn:") and Path(ldif).is_file():
            source = Path(ldif)
        else:
            source = ldif
        self._slapadd(source, "-q", "-w", "-F", str(self.config_dir), "-b", SUFFIX)

    # ---- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        """Start slapd and wait until it answers a search (about 0.3 s)."""
        if self.running:
            return
        self.prepare()
        self.pid_file.unlink(missing_ok=True)
        attempts = 1 if self._fixed_port else 3
        for attempt in range(attempts):
            try:
                self._start_once()
                return
            except SlapdError:
                if attempt == attempts - 1:
                    raise
                self.port = free_port()  # most likely the free port was taken meanwhile

    def _start_once(self) -> None:
        args = [self._bin_slapd, "-F", str(self.config_dir), "-h", f"{self.url}/ {self.ldapi_url}"]
        # slapd daemonizes: the command returns once the server has forked into the background. Its output
        # goes to a file, not a pipe, so that nothing waits on a descriptor the daemon might keep.
        log_path = self.run_dir / "slapd.out"
        with log_path.open("wb") as log:
            proc = subprocess.run(
                args, stdin=subprocess.DEVNULL, stdout=log, stderr=log, check=False, timeout=60
            )
        if proc.returncode != 0:
            output = log_path.read_text(errors="replace").strip()
            raise SlapdError(f"slapd start failed (exit {proc.returncode}): {' '.join(args)}\n{output}")
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            pid = self._read_pid()
            if pid is not None and self._answers():
                self._pid = pid
                _running.add(self)
                return
            time.sleep(0.05)
        pid = self._read_pid()
        if pid is not None:
            self._pid = pid
            self.stop()
        raise SlapdError(f"slapd did not answer on {self.url} within {START_TIMEOUT:.0f} s (dir {self.dir})")

    def _read_pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def _answers(self) -> bool:
        proc = subprocess.run(
            [self._bin_ldapsearch, "-x", "-LLL", "-H", self.url, "-s", "base", "-b", "", "namingContexts"],
            capture_output=True,
            stdin=subprocess.DEVNULL,
            check=False,
            timeout=10,
        )
        return proc.returncode == 0

    def stop(self) -> None:
        """SIGTERM the server, wait for it to exit; SIGKILL after 10 s."""
        pid = self._pid if self._pid is not None else self._read_pid()
        self._pid = None
        _running.discard(self)
        if pid is None or not _pid_alive(pid):
            return
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        while _pid_alive(pid):
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                deadline = time.monotonic() + STOP_TIMEOUT
                while _pid_alive(pid) and time.monotonic() < deadline:
                    time.sleep(0.05)
                break
            time.sleep(0.02)
        self.pid_file.unlink(missing_ok=True)

    def restart(self) -> None:
        """Stop and start again on the same port and data."""
        self.stop()
        saved, self._fixed_port = self._fixed_port, True
        try:
            self.start()
        finally:
            self._fixed_port = saved

    def close(self) -> None:
        """Stop, and remove the instance directory if this object created it."""
        self.stop()
        if self._owns_dir:
            shutil.rmtree(self.dir, ignore_errors=True)
        if self._short_run_dir:
            shutil.rmtree(self._short_run_dir, ignore_errors=True)

    def __enter__(self) -> Slapd:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Slapd {self.url} dir={self.dir} pid={self._pid}>"

    # ---- online helpers -------------------------------------------------------------------------
    def add_ldif(self, ldif: str) -> None:
        """Apply LDIF online as the rootdn with ``ldapmodify -a``.

        Records without ``changetype`` are adds; ``changetype: modify/delete/modrdn`` records work too. Do not
        write ``memberOf`` here (the overlay maintains it).
        """
        if not self.running:
            raise SlapdError("add_ldif() needs a running server; use load_ldif() before start()")
        self._run(
            [self._bin_ldapmodify, "-x", "-a", "-H", self.url, "-D", ADMIN_DN, "-w", ADMIN_PASSWORD],
            input_text=ldif,
            what="ldapmodify",
        )

    def ldapsearch(self, base: str = SUFFIX, filterstr: str = "(objectClass=*)", *attrs: str) -> str:
        """Run ``ldapsearch -LLL`` as the rootdn and return the LDIF output (for debugging and assertions)."""
        return self._run(
            [
                self._bin_ldapsearch, "-x", "-LLL", "-o", "ldif-wrap=no", "-H", self.url,
                "-D", ADMIN_DN, "-w", ADMIN_PASSWORD, "-b", base, filterstr, *attrs,
            ],
            what="ldapsearch",
        )  # fmt: skip


@atexit.register
def _stop_leftovers() -> None:
    for instance in list(_running):
        with contextlib.suppress(OSError):
            instance.stop()
