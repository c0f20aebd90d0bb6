"""Build the five images, and boot them the way the chart runs them.

    python3 k8s/images/images.py build [--engine E] [--python-image IMG] [--wheels DIR]... [NAME...]
    python3 k8s/images/images.py base  [--engine E]          # a local Debian base, by debootstrap
    .venv/bin/python k8s/images/images.py smoke [--keep]    # base if needed, build, boot, check

`make images`, `make images-base` and `make images-smoke` (k8s/images/images.mk) run these; the
commands, what the smoke checks and what it does not are in k8s/README.md. `build` and `base` need
only the standard library; `smoke` runs as root on Linux, with buildah, unshare and mount, in the
project's venv (grpc, PyYAML) next to a `make install`.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("gateway", "guardrails", "retrieval", "generation")
MODEL_SERVER = "model-server"
NAMES = (*SERVICES, MODEL_SERVER)
SERVICE_DOCKERFILE = "services/Dockerfile"
MODEL_SERVER_DOCKERFILE = "k8s/images/model-server/Dockerfile"
REGISTRY = "ghcr.io/llmsuite"
LOCAL_BASE = "localhost/llmsuite-base:bookworm"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
# What the Dockerfiles need of a base besides Debian's minimal system: Python 3.11 as `python`,
# its venv module (with ensurepip), and CA certificates for pip's index.
BASE_PACKAGES = ("python3", "python3-venv", "python-is-python3", "ca-certificates")
BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
SCRATCH = Path("/var/tmp/llmsuite-images")
# The chart's component for each image (k8s/manifests/<component>.yaml).
COMPONENTS = {**{s: s for s in SERVICES}, MODEL_SERVER: "inference"}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def app_version() -> str:
    for line in (ROOT / "k8s/charts/llmsuite/Chart.yaml").read_text().splitlines():
        if line.startswith("appVersion:"):
            return line.split(":", 1)[1].strip().strip('"')
    raise SystemExit("k8s/charts/llmsuite/Chart.yaml has no appVersion")


# --- engines -------------------------------------------------------------------------------------


@dataclass
class Engine:
    """A container engine's command line: docker, podman or buildah (daemonless)."""

    name: str
    prefix: list[str] = field(default_factory=list)  # global flags, e.g. buildah's storage

    @property
    def argv(self) -> list[str]:
        return [self.name, *self.prefix]

    def build_argv(self) -> list[str]:
        return [*self.argv, "bud" if self.name == "buildah" else "build"]

    def run(self, *args: str, capture: bool = False, check: bool = True) -> str:
        done = subprocess.run(
            [*self.argv, *args], check=check, text=True, stdout=subprocess.PIPE if capture else None
        )
        return done.stdout or ""

    def has_image(self, ref: str) -> bool:
        verb = ["inspect", "--type", "image"] if self.name == "buildah" else ["image", "inspect"]
        done = subprocess.run([*self.argv, *verb, ref], capture_output=True, check=False)
        return done.returncode == 0

    def image_size(self, ref: str) -> str:
        """The engine's own figure: the unpacked size of every layer."""
        if self.name == "buildah":
            images = json.loads(self.run("images", "--json", ref, capture=True) or "[]")
            return str(images[0]["size"]) if images else "?"
        size = int(self.run("image", "inspect", "--format", "{{.Size}}", ref, capture=True).strip() or 0)
        return f"{size / 1e6:.0f} MB"


def _works(argv: list[str]) -> bool:
    if not shutil.which(argv[0]):
        return False
    return subprocess.run(argv, capture_output=True, check=False).returncode == 0


def find_engine(choice: str, store: Path | None) -> Engine:
    """The first engine that works (a Docker daemon, Podman, Buildah), or the one asked for.
    `store`: buildah/podman keep images there (vfs driver), not in their default storage."""
    prefix = (
        ["--storage-driver", "vfs", "--root", str(store / "storage"), "--runroot", str(store / "run")]
        if store
        else []
    )
    candidates = {
        "docker": (["docker", "info"], Engine("docker")),
        "podman": (["podman", *prefix, "info"], Engine("podman", prefix)),
        "buildah": (["buildah", *prefix, "version"], Engine("buildah", prefix)),
    }
    if choice != "auto":
        probe, engine = candidates[choice]
        if not _works(probe):
            raise SystemExit(f"images: {choice} does not work here ({' '.join(probe)} failed)")
        return engine
    for probe, engine in candidates.values():
        if _works(probe):
            return engine
    print(
        "images: no container engine here (docker daemon, podman or buildah); nothing built.", file=sys.stderr
    )
    raise SystemExit(2)


# --- build ---------------------------------------------------------------------------------------


def dockerfile_default(path: str, arg: str) -> str:
    """An ARG's default in a Dockerfile (the pinned base image)."""
    for line in (ROOT / path).read_text().splitlines():
        if line.startswith(f"ARG {arg}="):
            return line.split("=", 1)[1].strip()
    raise SystemExit(f"{path}: no ARG {arg}=")


def requirement_pin(service: str, name: str) -> str | None:
    """`name==version` when requirements/<service>.txt pins it (torch for retrieval)."""
    for line in (ROOT / f"requirements/{service}.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line.startswith(f"{name}=="):
            return line
    return None


def stage_wheels(sources: list[Path], torch_pins: set[str], python: str | None) -> tuple[Path, bool]:
    """Fill the `wheels` build context: every wheel of `sources`, and torch's CPU build as the host's
    pip gets it (its own wheel store or find-links first, then the PyTorch CPU index). Returns the
    directory and whether the CPU torch is in it (then the images take torch from it alone)."""
    out = ROOT / ".data/images/wheels"
    out.mkdir(parents=True, exist_ok=True)
    for source in sources:
        for wheel in sorted(source.glob("*.whl")) if source.is_dir() else []:
            if not (out / wheel.name).exists():
                try:
                    os.link(wheel, out / wheel.name)
                except OSError:  # another filesystem
                    shutil.copy2(wheel, out / wheel.name)
    torch_ready = bool(torch_pins)
    for pin in sorted(torch_pins):
        version = pin.split("==", 1)[1]
        if list(out.glob(f"torch-{version}+cpu-*.whl")):
            continue
        if python is None:
            torch_ready = False
            continue
        log(f"fetching {pin} (CPU build) with the host's pip for the wheels context")
        fetched = subprocess.run(
            [python, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary", ":all:"]
            + ["--python-version", "3.11", "--index-url", TORCH_CPU_INDEX, "--dest", str(out), pin],
            check=False,
        )
        cpu = list(out.glob(f"torch-{version}+cpu-*.whl"))
        for other in out.glob(f"torch-{version}-*.whl"):
            other.unlink()  # not the CPU build: leave it to the index
        if fetched.returncode != 0 or not cpu:
            log(f"no CPU build of {pin} from the host; the image build takes it from {TORCH_CPU_INDEX}")
            torch_ready = False
    return out, torch_ready


@dataclass
class BuildOptions:
    engine: Engine
    registry: str = REGISTRY
    tag: str = ""
    python_image: str = ""
    wheels: list[Path] = field(default_factory=list)
    host_python: str | None = None
    extra: list[str] = field(default_factory=list)


def image_ref(name: str, registry: str, tag: str) -> str:
    return f"{registry}/{name}:{tag}"


def build(names: list[str], opts: BuildOptions) -> dict[str, float]:
    """Builds each image from the repository root; returns seconds per image."""
    tag = opts.tag or app_version()
    torch_pins = {p for n in names if n in SERVICES and (p := requirement_pin(n, "torch"))}
    wheels, torch_local = stage_wheels(opts.wheels, torch_pins, opts.host_python)
    local_base = opts.python_image.startswith("localhost/")
    seconds: dict[str, float] = {}
    for name in names:
        argv = [*opts.engine.build_argv(), "--build-context", f"wheels={wheels}"]
        if name == MODEL_SERVER:
            argv += ["-f", MODEL_SERVER_DOCKERFILE]
        else:
            argv += ["-f", SERVICE_DOCKERFILE, "--build-arg", f"SERVICE={name}", "--target", name]
            if torch_local and requirement_pin(name, "torch"):
                argv += ["--build-arg", "TORCH_INDEX_URL="]
        if opts.python_image:
            argv += ["--build-arg", f"PYTHON_IMAGE={opts.python_image}"]
        if opts.engine.name == "buildah":
            argv += ["--isolation", os.environ.get("BUILDAH_ISOLATION", "chroot")]
        if local_base and opts.engine.name in ("buildah", "podman"):
            argv += ["--pull=never"]
        argv += [*opts.extra, "-t", image_ref(name, opts.registry, tag), "."]
        log(" ".join(shlex.quote(a) for a in argv))
        started = time.monotonic()
        subprocess.run(argv, cwd=ROOT, check=True)
        seconds[name] = time.monotonic() - started
        log(f"built {image_ref(name, opts.registry, tag)} in {seconds[name]:.0f} s")
    return seconds


def print_sizes(engine: Engine, names: list[str], registry: str, tag: str, seconds: dict[str, float]) -> None:
    print(f"\n{'image':<40} {'size':>9} {'build':>7}")
    for name in names:
        ref = image_ref(name, registry, tag)
        took = f"{seconds[name]:.0f} s" if name in seconds else "-"
        print(f"{ref:<40} {engine.image_size(ref):>9} {took:>7}")
    print(flush=True)


# --- a local base image --------------------------------------------------------------------------


def make_base(engine: Engine, ref: str = LOCAL_BASE, mirror: str = DEBIAN_MIRROR) -> None:
    """Debian bookworm (debootstrap --variant=minbase) with Python 3.11 and venv, imported as `ref`."""
    if os.geteuid() != 0 or not shutil.which("debootstrap"):
        raise SystemExit("images base: needs root and debootstrap (apt-get install debootstrap)")
    SCRATCH.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=SCRATCH, prefix="base-") as tmp:
        rootfs, archive = Path(tmp) / "rootfs", Path(tmp) / "rootfs.tar"
        log(f"debootstrap --variant=minbase bookworm ({', '.join(BASE_PACKAGES)}) from {mirror}")
        started = time.monotonic()
        subprocess.run(
            ["debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}"]
            + ["bookworm", str(rootfs), mirror],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        # What an image does not need: downloaded packages and package lists (apt-get update
        # fetches them again when a build stage installs something).
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for path in (rootfs / junk).glob("*"):
                if path.is_file():
                    path.unlink()
        for path in (rootfs / "var/cache/apt").glob("*.bin"):
            path.unlink()
        # The certificate authorities this host added (a TLS-inspecting proxy's, a company's):
        # pip in a build stage reaches its index through the same network the host does.
        added = sorted(Path("/usr/local/share/ca-certificates").glob("**/*.crt"))
        if added:
            for cert in added:
                target = rootfs / cert.relative_to("/")
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(cert, target)
            subprocess.run(
                ["chroot", str(rootfs), "update-ca-certificates"], check=True, stdout=subprocess.DEVNULL
            )
            (rootfs / "etc/pip.conf").write_text("[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n")
            log(f"base trusts the host's added certificate authorities: {', '.join(c.name for c in added)}")
        subprocess.run(["tar", "-C", str(rootfs), "--numeric-owner", "-cf", str(archive), "."], check=True)
        if engine.name == "buildah":
            container = engine.run("from", "scratch", capture=True).strip()
            engine.run("add", "--quiet", container, str(archive), "/")
            engine.run("config", "--env", f"PATH={BASE_PATH}", "--cmd", '["python3"]', container)
            engine.run("commit", "--rm", "--quiet", container, ref, capture=True)
        else:
            engine.run("import", "--change", f"ENV PATH={BASE_PATH}", str(archive), ref, capture=True)
        log(f"base image {ref} in {time.monotonic() - started:.0f} s")


# --- smoke: boot each image as the chart runs it -------------------------------------------------


def load_yaml_documents(path: Path) -> list[dict[str, Any]]:
    import yaml

    return [d for d in yaml.safe_load_all(path.read_text()) if d]


@dataclass
class Pod:
    """What the chart's Deployment gives one container, read from k8s/manifests."""

    name: str
    image: str
    command: list[str] | None
    args: list[str] | None
    env: dict[str, str]
    tmpfs: dict[str, str]  # mount path -> size
    secrets: dict[str, dict[str, str]]  # mount path -> {file name: secret key}
    run_as: tuple[int, int, int]  # uid, gid, fsGroup
    read_only_root: bool
    drop_all: bool
    no_new_privs: bool
    probe: dict[str, Any]  # the startup probe
    readiness: dict[str, Any]
    ports: dict[str, int]
    grace: int  # terminationGracePeriodSeconds
    pre_stop: int  # preStop sleep seconds, spent before SIGTERM


def pod_from_manifests(component: str, secret_values: dict[str, str]) -> Pod:
    docs = load_yaml_documents(ROOT / "k8s/manifests" / f"{component}.yaml")
    label = "app.kubernetes.io/component"
    deployment = next(
        d for d in docs if d["kind"] == "Deployment" and d["metadata"]["labels"][label] == component
    )
    configmaps = {d["metadata"]["name"]: d.get("data", {}) for d in docs if d["kind"] == "ConfigMap"}
    spec = deployment["spec"]["template"]["spec"]
    container = spec["containers"][0]
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env |= {k: str(v) for k, v in configmaps[source["configMapRef"]["name"]].items()}
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = str(item["value"])
            continue
        ref = item["valueFrom"]["secretKeyRef"]
        if ref["key"] in secret_values:
            env[item["name"]] = secret_values[ref["key"]]
        elif not ref.get("optional"):
            raise SystemExit(
                f"smoke: {component} needs Secret key {ref['key']}, which the smoke does not set"
            )
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    tmpfs: dict[str, str] = {}
    secrets: dict[str, dict[str, str]] = {}
    for mount in container.get("volumeMounts", []):
        volume = volumes[mount["name"]]
        if "emptyDir" in volume:
            tmpfs[mount["mountPath"]] = str(volume["emptyDir"].get("sizeLimit", "256Mi"))
        elif "secret" in volume:
            items = volume["secret"].get("items", [])
            secrets[mount["mountPath"]] = {i["path"]: i["key"] for i in items}
        else:
            raise SystemExit(f"smoke: {component} mounts a {sorted(volume)} volume the smoke cannot give")
    pod_sc, sc = spec.get("securityContext", {}), container.get("securityContext", {})
    pre_stop = container.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
    return Pod(
        name=component,
        image=container["image"],
        command=container.get("command"),
        args=container.get("args"),
        env=env,
        tmpfs=tmpfs,
        secrets=secrets,
        run_as=(
            int(sc.get("runAsUser", pod_sc.get("runAsUser", 0))),
            int(sc.get("runAsGroup", pod_sc.get("runAsGroup", 0))),
            int(pod_sc.get("fsGroup", 0)),
        ),
        read_only_root=bool(sc.get("readOnlyRootFilesystem")),
        drop_all="ALL" in sc.get("capabilities", {}).get("drop", []),
        no_new_privs=sc.get("allowPrivilegeEscalation") is False,
        probe=container["startupProbe"],
        readiness=container["readinessProbe"],
        ports={p["name"]: int(p["containerPort"]) for p in container.get("ports", [])},
        grace=int(spec.get("terminationGracePeriodSeconds", 30)),
        pre_stop=int(pre_stop),
    )


def _size_bytes(quantity: str) -> str:
    units = {"Ki": "k", "Mi": "m", "Gi": "g"}
    for suffix, unit in units.items():
        if quantity.endswith(suffix):
            return quantity[: -len(suffix)] + unit
    return quantity


# The container side: runs in the new mount and PID namespaces as their PID 1, sets up the
# filesystem the kubelet would, then becomes the image's entrypoint.
PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 24, 38, 47, 4


def exec_container(spec: dict[str, Any]) -> None:
    root = spec["rootfs"]

    def mount(*argv: str) -> None:
        subprocess.run(["mount", *argv], check=True)

    mount("--make-rprivate", "/")
    mount("--bind", root, root)
    mount("-t", "proc", "-o", "nosuid,nodev,noexec", "proc", f"{root}/proc")
    mount("-t", "sysfs", "-o", "ro,nosuid,nodev,noexec", "sysfs", f"{root}/sys")
    # /dev as the kubelet gives it: a small tmpfs with the usual character devices and /dev/shm.
    mount("-t", "tmpfs", "-o", "nosuid,mode=755,size=65536k", "tmpfs", f"{root}/dev")
    for dev in ("null", "zero", "full", "random", "urandom", "tty"):
        Path(f"{root}/dev/{dev}").touch()
        mount("--bind", f"/dev/{dev}", f"{root}/dev/{dev}")
    os.makedirs(f"{root}/dev/shm")
    mount("-t", "tmpfs", "-o", "nosuid,nodev,noexec,mode=1777,size=65536k", "shm", f"{root}/dev/shm")
    for target, size in spec["tmpfs"].items():
        os.makedirs(f"{root}{target}", exist_ok=True)
        mount("-t", "tmpfs", "-o", f"nosuid,nodev,mode=1777,size={size}", "tmpfs", f"{root}{target}")
    for target, source in [*spec["binds"], ("/etc/hosts", spec["hosts"])]:
        path = Path(f"{root}{target}")
        if Path(source).is_dir():
            path.mkdir(parents=True, exist_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
        mount("--bind", source, str(path))
        mount("-o", "remount,bind,ro", str(path))
    if spec["read_only_root"]:
        mount("-o", "remount,bind,ro", root)
    os.chroot(root)
    os.chdir(spec["workdir"] or "/")
    libc = ctypes.CDLL(None, use_errno=True)
    if spec["drop_all"]:
        last = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
        for cap in range(last + 1):
            libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)
        libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    if spec["no_new_privs"] and libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
    uid, gid, fs_group = spec["run_as"]
    os.setgroups([fs_group] if fs_group else [])
    os.setgid(gid)
    os.setuid(uid)  # a non-zero uid without keep-caps: the permitted and effective sets are emptied
    os.execvpe(spec["argv"][0], spec["argv"], spec["env"])


@dataclass
class Booted:
    pod: Pod
    process: subprocess.Popen[bytes]
    container: str
    log_path: Path
    started: float
    ready_after: float | None = None

    def init_pid(self) -> int:
        """The host's pid of the container's PID 1 (the entrypoint), a child of unshare."""
        for task in Path(f"/proc/{self.process.pid}/task").iterdir():
            children = (task / "children").read_text().split()
            if children:
                return int(children[0])
        raise RuntimeError(f"{self.pod.name}: no process in the container")


class Smoke:
    def __init__(self, engine: Engine, work: Path, registry: str, tag: str) -> None:
        self.engine = engine
        self.work = work
        self.registry = registry
        self.tag = tag
        self.results: list[tuple[str, str, str]] = []  # image, check, outcome
        self.failures: list[str] = []
        self.servers: list[subprocess.Popen[bytes]] = []

    def check(self, image: str, what: str, ok: bool, detail: str) -> bool:
        self.results.append((image, what, ("ok  " if ok else "FAIL") + f"  {detail}"))
        log(f"{image}: {what}: {'ok' if ok else 'FAILED'} ({detail})")
        if not ok:
            self.failures.append(f"{image}: {what}: {detail}")
        return ok

    # -- loopback servers the chart's Secret would point at ---------------------------------------

    def start_postgres(self) -> dict[str, str]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs: no XDG_RUNTIME_DIR
            import pgserver  # the wheel make install installs: PostgreSQL 16 with pgvector

        bindir = Path(pgserver.__file__).parent / "pginstall" / "bin"
        data = self.work / "postgres"
        data.mkdir()
        shutil.chown(data, "nobody")
        # PostgreSQL runs as nobody: it must be able to pass through the scratch directories, which
        # mkdtemp (and buildah's store parent) create as 0700.
        for parent in (self.work.parent, self.work):
            parent.chmod(0o711)
        as_nobody = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
        subprocess.run(
            [*as_nobody, str(bindir / "initdb"), "-D", str(data / "data"), "-U", "postgres", "-A", "trust"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        logfile = (data / "server.log").open("ab")
        postgres = subprocess.Popen(
            [*as_nobody, str(bindir / "postgres"), "-D", str(data / "data"), "-p", "5432"]
            + ["-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={data}"],
            stdout=logfile,
            stderr=subprocess.STDOUT,
        )
        self.servers.append(postgres)
        psql = [str(bindir / "psql"), "-h", "127.0.0.1", "-U", "postgres", "-v", "ON_ERROR_STOP=1", "-q"]
        deadline = time.monotonic() + 60
        while subprocess.run([*psql, "-c", "SELECT 1"], capture_output=True, check=False).returncode:
            if time.monotonic() > deadline or postgres.poll() is not None:
                raise SystemExit(f"smoke: PostgreSQL did not start (see {data / 'server.log'})")
            time.sleep(0.3)
        # The services' role owns its databases; pgvector is created by a superuser first.
        statements = [
            "CREATE ROLE llmsuite LOGIN PASSWORD 'smoke'",
            "CREATE DATABASE gateway OWNER llmsuite",
            "CREATE DATABASE retrieval OWNER llmsuite",
        ]
        subprocess.run([*psql, *(f"--command={s}" for s in statements)], check=True)
        subprocess.run([*psql, "-d", "retrieval", "-c", "CREATE EXTENSION vector"], check=True)
        dsn = "postgresql://llmsuite:smoke@127.0.0.1:5432/{}"
        return {
            "gateway-database-url": dsn.format("gateway"),
            "retrieval-database-url": dsn.format("retrieval"),
        }

    def start_redis(self) -> dict[str, str]:
        server = shutil.which("redis-server")
        if not server:
            raise SystemExit("smoke: redis-server not found (make install installs it)")
        redis = subprocess.Popen(
            ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", server]
            + ["--bind", "127.0.0.1", "--port", "6379", "--save", "", "--appendonly", "no"]
            + ["--requirepass", "smoke", "--dir", "/tmp"],
            stdout=subprocess.DEVNULL,
        )
        self.servers.append(redis)
        return {"redis-password": "smoke", "redis-url": "redis://:smoke@127.0.0.1:6379/0"}

    def make_keys(self) -> Path:
        keys = self.work / "keys"
        subprocess.run(
            [sys.executable, "-m", "llmsuite_common.service_keys", "--out", str(keys)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        return keys

    # -- one pod -----------------------------------------------------------------------------------

    def secret_dir(self, pod: Pod, mount_path: str, items: dict[str, str], keys: Path) -> Path:
        """A Secret volume: the files it names, root-owned, group fsGroup, mode 0440 (defaultMode 288)."""
        out = self.work / "volumes" / pod.name / mount_path.strip("/").replace("/", "_")
        out.mkdir(parents=True)
        files = {"jwks.json": keys / "jwks.json", "signing-key.pem": keys / "signing-key.pem"}
        for path, key in items.items():
            shutil.copy(files[key], out / path)
            os.chown(out / path, 0, pod.run_as[2])
            os.chmod(out / path, 0o440)
        return out

    def boot(self, pod: Pod, keys: Path, hosts: Path, env_override: dict[str, str]) -> Booted:
        container = self.engine.run("from", "--pull=never", "--quiet", pod.image, capture=True).strip()
        rootfs = self.engine.run("mount", container, capture=True).strip()
        config = json.loads(self.engine.run("inspect", "--type", "image", pod.image, capture=True))
        image_config = config["OCIv1"]["config"]
        env = dict(e.split("=", 1) for e in image_config.get("Env", []))
        env |= pod.env | env_override
        entrypoint = pod.command if pod.command is not None else image_config.get("Entrypoint") or []
        if pod.args is not None:
            cmd = pod.args
        else:
            cmd = (image_config.get("Cmd") or []) if pod.command is None else []
        binds = [(path, str(self.secret_dir(pod, path, items, keys))) for path, items in pod.secrets.items()]
        spec = {
            "rootfs": rootfs,
            "tmpfs": {path: _size_bytes(size) for path, size in pod.tmpfs.items()},
            "binds": binds,
            "hosts": str(hosts),
            "read_only_root": pod.read_only_root,
            "drop_all": pod.drop_all,
            "no_new_privs": pod.no_new_privs,
            "run_as": list(pod.run_as),
            "workdir": image_config.get("WorkingDir", "/"),
            "argv": [*entrypoint, *cmd],
            "env": env,
        }
        self.check_contents(pod, Path(rootfs))
        spec_path = self.work / f"{pod.name}.json"
        spec_path.write_text(json.dumps(spec))
        log_path = self.work / f"{pod.name}.log"
        process = subprocess.Popen(
            ["unshare", "--mount", "--pid", "--fork", "--kill-child", "--", sys.executable]
            + [str(Path(__file__).resolve()), "_exec", str(spec_path)],
            stdout=log_path.open("wb"),
            stderr=subprocess.STDOUT,
        )
        user = f"uid {pod.run_as[0]}, gid {pod.run_as[1]}, groups [{pod.run_as[2]}]"
        log(
            f"{pod.name}: started {' '.join(spec['argv'])} ({user}, read-only root, {', '.join(pod.tmpfs)} writable)"
        )
        return Booted(pod, process, container, log_path, time.monotonic())

    def check_contents(self, pod: Pod, rootfs: Path) -> None:
        """No CUDA: torch, where an image has it, is the CPU build, and no nvidia-* libraries."""
        site = next(rootfs.glob("opt/venv/lib/python3*/site-packages"), None)
        if site is None:
            return
        torch = sorted(p.name.removesuffix(".dist-info") for p in site.glob("torch-*.dist-info"))
        nvidia = sorted(p.name for p in site.glob("nvidia*"))
        if torch or nvidia:
            ok = not nvidia and all(t.endswith("+cpu") for t in torch)
            self.check(
                pod.name,
                "torch without CUDA",
                ok,
                f"{', '.join(torch) or 'no torch'}, nvidia: {nvidia or 'none'}",
            )

    def probe_ok(self, probe: dict[str, Any], pod: Pod) -> tuple[bool, str]:
        timeout = float(probe.get("timeoutSeconds", 1))
        if "grpc" in probe:
            import grpc
            from llmsuite_common.grpc_probe import check

            try:
                status = check(int(probe["grpc"]["port"]), timeout=timeout, plaintext=True)
            except grpc.RpcError as exc:
                return False, exc.code().name
            return status == "SERVING", status
        get = probe["httpGet"]
        port = get["port"] if isinstance(get["port"], int) else pod.ports[get["port"]]
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{get['path']}", timeout=timeout) as answer:
                return answer.status < 400, f"HTTP {answer.status}"
        except urllib.error.HTTPError as exc:
            return False, f"HTTP {exc.code}"
        except OSError as exc:
            return False, type(exc).__name__

    def probe_name(self, probe: dict[str, Any]) -> str:
        if "grpc" in probe:
            return f"gRPC health :{probe['grpc']['port']}"
        return f"GET {probe['httpGet']['path']}"

    def wait_started(self, booted: Booted) -> bool:
        """The startup probe's own budget (periodSeconds x failureThreshold)."""
        probe = booted.pod.probe
        budget = float(probe.get("periodSeconds", 10)) * float(probe.get("failureThreshold", 3))
        deadline = booted.started + budget
        detail = "no answer"
        while time.monotonic() < deadline:
            if booted.process.poll() is not None:
                detail = f"exited with {booted.process.returncode} before answering"
                break
            ok, detail = self.probe_ok(probe, booted.pod)
            if ok:
                booted.ready_after = time.monotonic() - booted.started
                return self.check(
                    booted.pod.name,
                    f"startup probe, {self.probe_name(probe)}",
                    True,
                    f"{detail} after {booted.ready_after:.1f} s (budget {budget:.0f} s)",
                )
            time.sleep(0.5)
        self.show_log(booted)
        return self.check(booted.pod.name, f"startup probe, {self.probe_name(probe)}", False, detail)

    def check_confinement(self, booted: Booted) -> bool:
        """What the kernel says of the running entrypoint, against what the pod asks for."""
        pod, pid = booted.pod, booted.init_pid()
        status = dict(
            line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line
        )
        mounts = {}
        for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines():
            fields = line.split()
            mounts[fields[4]] = fields[5].split(",")[0]
        uid, gid, fs_group = pod.run_as
        found = {
            "uid": status["Uid"].split(),
            "gid": status["Gid"].split(),
            "groups": status["Groups"].split(),
            "CapEff": status["CapEff"].strip(),
            "CapBnd": status["CapBnd"].strip(),
            "NoNewPrivs": status["NoNewPrivs"].strip(),
            "/": mounts.get("/"),
            **{path: mounts.get(path) for path in pod.tmpfs},
        }
        wanted = {
            "uid": [str(uid)] * 4,
            "gid": [str(gid)] * 4,
            "groups": [str(fs_group)] if fs_group else [],
            "CapEff": "0" * 16,
            "CapBnd": "0" * 16 if pod.drop_all else found["CapBnd"],
            "NoNewPrivs": "1" if pod.no_new_privs else found["NoNewPrivs"],
            "/": "ro" if pod.read_only_root else "rw",
            **{path: "rw" for path in pod.tmpfs},
        }
        wrong = [f"{k}: {found[k]} (want {wanted[k]})" for k in wanted if found[k] != wanted[k]]
        shown = f"uid {uid}, groups {found['groups']}, CapEff/CapBnd 0, NoNewPrivs, / ro, {', '.join(pod.tmpfs)} rw"
        return self.check(
            pod.name, "pod security (/proc of the entrypoint)", not wrong, "; ".join(wrong) or shown
        )

    def check_ready(self, booted: Booted, deadline_seconds: float = 60) -> bool:
        probe = booted.pod.readiness
        deadline = time.monotonic() + deadline_seconds
        ok, detail = self.probe_ok(probe, booted.pod)
        while not ok and time.monotonic() < deadline and booted.process.poll() is None:
            time.sleep(0.5)
            ok, detail = self.probe_ok(probe, booted.pod)
        return self.check(booted.pod.name, f"readiness probe, {self.probe_name(probe)}", ok, detail)

    def stop(self, booted: Booted) -> None:
        """SIGTERM as the kubelet sends it after preStop; exit 0 within the rest of the grace."""
        pod = booted.pod
        allowed = pod.grace - pod.pre_stop
        if booted.process.poll() is None:
            os.kill(booted.init_pid(), signal.SIGTERM)
            started = time.monotonic()
            try:
                code = booted.process.wait(timeout=allowed)
                took = time.monotonic() - started
                self.check(
                    pod.name,
                    "SIGTERM",
                    code == 0,
                    f"exit {code} after {took:.1f} s (grace {allowed} s = {pod.grace} - preStop {pod.pre_stop})",
                )
            except subprocess.TimeoutExpired:
                booted.process.kill()
                booted.process.wait()
                self.check(pod.name, "SIGTERM", False, f"still running after {allowed} s")
            if booted.process.returncode != 0:
                self.show_log(booted)
        else:
            self.check(pod.name, "SIGTERM", False, f"had already exited with {booted.process.returncode}")
        self.engine.run("rm", booted.container, capture=True, check=False)

    def show_log(self, booted: Booted) -> None:
        lines = booted.log_path.read_text(errors="replace").splitlines()
        print(f"--- last lines of {booted.pod.name}'s output ({booted.log_path}) ---")
        print("\n".join(lines[-25:]))
        print("---", flush=True)


def chat(port: int, api_key: str, model: str) -> tuple[bool, str]:
    body = json.dumps(
        {"model": model, "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 8}
    ).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/chat/completions",
        data=body,
        headers={"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as answer:
            reply = json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return False, f"HTTP {exc.code}: {exc.read()[:200]!r}"
    except OSError as exc:
        return False, repr(exc)
    text = reply["choices"][0]["message"]["content"]
    return bool(text), f"HTTP 200, {reply['usage']['completion_tokens']} tokens: {text.strip()[:40]!r}"


def boot_all(args: argparse.Namespace) -> int:
    """Runs as PID 1 of its own PID and network namespaces (loopback only), so nothing it starts
    outlives it: data stores, then each image with the chart's pod settings, then (all five up) a
    request through all of them, then SIGTERM to each."""
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    engine = Engine("buildah", json.loads(args.engine_prefix))
    work = Path(args.work)
    smoke = Smoke(engine, work, args.registry, args.tag)
    chosen = args.names.split(",")
    booted: dict[str, Booted] = {}
    try:
        secret = {"gateway-api-key": "sk-smoke-" + os.urandom(8).hex()}
        secret |= smoke.start_postgres() | smoke.start_redis()
        keys = smoke.make_keys()
        pods: dict[str, Pod] = {}
        for name in chosen:
            pod = pod_from_manifests(COMPONENTS[name], secret)
            built = image_ref(name, args.registry, args.tag)
            if pod.image != built and args.registry == REGISTRY and args.tag == app_version():
                smoke.check(name, "image", False, f"the chart runs {pod.image}, the build tagged {built}")
            pods[name] = replace(pod, name=name, image=built)
        # In a cluster each pod has a network namespace of its own; here they share one, so the
        # gRPC services' metrics ports (one number in the chart) are told apart. The Services' DNS
        # names resolve to loopback through /etc/hosts.
        hosts = work / "hosts"
        names = [f"llmsuite-{COMPONENTS[n]}.llmsuite.svc.cluster.local" for n in NAMES]
        hosts.write_text(f"127.0.0.1 localhost {' '.join(names)}\n::1 localhost\n")
        metrics = {"guardrails": "9464", "retrieval": "9465", "generation": "9466"}
        order = [n for n in (MODEL_SERVER, "guardrails", "retrieval", "generation", "gateway") if n in chosen]
        for name in order if not smoke.failures else []:
            override = {"METRICS_PORT": metrics[name]} if name in metrics else {}
            # The chart's migration Jobs are not run here: the smoke's role owns its databases, so
            # the services create their schema on start as they do outside the chart.
            if name in ("gateway", "retrieval"):
                override[f"{name.upper()}_DATABASE_MIGRATE_ON_START"] = "true"
            booted[name] = smoke.boot(pods[name], keys, hosts, override)
            if not smoke.wait_started(booted[name]):
                break
            smoke.check_confinement(booted[name])
        # Readiness needs what each one calls; the chat needs all of them.
        if len(booted) == len(NAMES) and not smoke.failures:
            for name in order:
                smoke.check_ready(booted[name])
            ok, detail = chat(pods["gateway"].ports["http"], secret["gateway-api-key"], "gemma-3-270m")
            smoke.check("gateway", "chat completion through every image", ok, detail)
    finally:
        for name in reversed(list(booted)):
            smoke.stop(booted[name])
        for server in smoke.servers:
            server.terminate()
            server.wait()
    print("\nboot checks (read-only root, uid 10001, capabilities dropped, no_new_privs, tmpfs /tmp):")
    for image, what, outcome in smoke.results:
        print(f"  {image:<13} {what:<44} {outcome}")
    print(flush=True)
    return 1 if smoke.failures else 0


def smoke_base(engine: Engine) -> str:
    """The Dockerfiles' pinned base when the store has it or can pull it, else the local one
    (made with debootstrap when missing)."""
    official = dockerfile_default(SERVICE_DOCKERFILE, "PYTHON_IMAGE")
    if engine.has_image(official):
        return official
    pull = [*engine.argv, "pull", "--quiet", "--retry", "0", official]
    if subprocess.run(pull, capture_output=True, check=False).returncode == 0:
        return official
    log(f"{official} cannot be pulled here: building from {LOCAL_BASE}")
    if not engine.has_image(LOCAL_BASE):
        make_base(engine)
    return LOCAL_BASE


def smoke(args: argparse.Namespace) -> int:
    if os.geteuid() != 0:
        raise SystemExit("images smoke: runs as root (mount and PID namespaces, chroot)")
    for tool in ("buildah", "unshare", "mount", "ip", "setpriv"):
        if not shutil.which(tool):
            raise SystemExit(f"images smoke: {tool} not found (apt-get install buildah util-linux iproute2)")
    names = list(args.names) or list(NAMES)
    if set(names) - set(NAMES):
        raise SystemExit(f"images smoke: unknown image {sorted(set(names) - set(NAMES))}")
    started = time.monotonic()
    store = Path(args.store)
    engine = find_engine("buildah", store)
    tag = args.tag or app_version()
    python_image = args.python_image
    if not python_image and not args.no_build:
        python_image = smoke_base(engine)
    seconds = (
        {}
        if args.no_build
        else build(
            names,
            BuildOptions(
                engine,
                registry=args.registry,
                tag=tag,
                python_image=python_image,
                wheels=[Path(w) for w in args.wheels],
                host_python=sys.executable,
            ),
        )
    )
    built = time.monotonic()
    print_sizes(engine, names, args.registry, tag, seconds)
    work = Path(tempfile.mkdtemp(dir=SCRATCH, prefix="smoke-"))
    os.chmod(work, 0o755)
    try:
        code = subprocess.run(
            ["unshare", "--net", "--pid", "--fork", "--kill-child", "--mount-proc", "--"]
            + [sys.executable, str(Path(__file__).resolve()), "_boot"]
            + ["--work", str(work), "--registry", args.registry, "--tag", tag]
            + ["--engine-prefix", json.dumps(engine.prefix), "--names", ",".join(names)],
            check=False,
        ).returncode
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    finished = time.monotonic()
    log(
        f"images-smoke {'passed' if code == 0 else 'FAILED'}: {finished - started:.0f} s "
        f"(base and builds {built - started:.0f} s, boots {finished - built:.0f} s)"
    )
    return code


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--registry", default=REGISTRY)
    common.add_argument("--tag", default="", help="default: the chart's appVersion")
    common.add_argument(
        "--python-image", default="", help="base image (default: the Dockerfiles' pinned one)"
    )
    common.add_argument("--wheels", action="append", default=[], help="a directory of wheels to offer")
    p_build = sub.add_parser("build", parents=[common], help="build images (all by default)")
    p_build.add_argument("--engine", choices=["auto", "docker", "podman", "buildah"], default="auto")
    p_build.add_argument("--store", default="", help="buildah/podman: vfs storage in this directory")
    p_build.add_argument("--engine-flag", action="append", default=[], help="passed to the build command")
    p_build.add_argument("names", nargs="*", default=[], help=f"of {', '.join(NAMES)}")
    p_base = sub.add_parser("base", help=f"build {LOCAL_BASE} with debootstrap")
    p_base.add_argument("--engine", choices=["auto", "docker", "podman", "buildah"], default="auto")
    p_base.add_argument("--store", default="")
    p_base.add_argument("--mirror", default=DEBIAN_MIRROR)
    p_smoke = sub.add_parser("smoke", parents=[common], help="build with buildah, boot, check")
    p_smoke.add_argument("--store", default=str(SCRATCH / "store"))
    p_smoke.add_argument("--keep", action="store_true", help="keep the scratch directory (logs)")
    p_smoke.add_argument("--no-build", action="store_true", help="boot the images already built")
    p_smoke.add_argument("names", nargs="*", default=[], help=f"of {', '.join(NAMES)} (default: all)")
    p_boot = sub.add_parser("_boot")
    p_boot.add_argument("--work", required=True)
    p_boot.add_argument("--registry", required=True)
    p_boot.add_argument("--tag", required=True)
    p_boot.add_argument("--engine-prefix", required=True)
    p_boot.add_argument("--names", required=True)
    p_exec = sub.add_parser("_exec")
    p_exec.add_argument("spec")
    args = parser.parse_args(argv)

    if args.command == "_exec":
        exec_container(json.loads(Path(args.spec).read_text()))
        return 127  # not reached: exec replaced this process
    if args.command == "_boot":
        return boot_all(args)
    if args.command == "smoke":
        return smoke(args)
    engine = find_engine(args.engine, Path(args.store) if args.store else None)
    if args.command == "base":
        make_base(engine, mirror=args.mirror)
        return 0
    names = list(args.names) or list(NAMES)
    if set(names) - set(NAMES):
        parser.error(f"unknown image {sorted(set(names) - set(NAMES))}; images are {', '.join(NAMES)}")
    pip = subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True, check=False)
    opts = BuildOptions(
        engine,
        registry=args.registry,
        tag=args.tag or app_version(),
        python_image=args.python_image,
        wheels=[Path(w) for w in args.wheels],
        host_python=sys.executable if pip.returncode == 0 else None,
        extra=args.engine_flag,
    )
    seconds = build(names, opts)
    print_sizes(engine, names, opts.registry, opts.tag, seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
