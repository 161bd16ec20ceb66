#!/usr/bin/env python3
"""Checks the deploy files without a container engine (none runs here or in CI).

    scripts/check-deploy.py              check deploy/compose.yaml, the Dockerfiles, nginx.compose.conf
    scripts/check-deploy.py --self-test  feed broken variants and require each check to catch its own

What is checked: depends_on/links targets exist; every TTPULSE_* key a service sets is one the
program reading it documents (.env.example for ttpulse, frontend/README.md for the dashboard);
the Kafka brokers replicate 3 ways with min ISR 2 and no unclean election; every ttpulse role
lists three brokers that are services, replication 3, a Redis/PostgreSQL URL naming a service,
the migrate service as a completed dependency, an ingest token where ingest is not on loopback,
a healthcheck on /admin/health; every volume is declared; every mounted file and every file a
Dockerfile copies exists (and is not dropped by .dockerignore); Dockerfiles parse into known
instructions and COPY --from names an earlier stage; published ports do not collide; the nginx
config of the compose file names services and keeps deploy/nginx.conf's locations (and passes
`nginx -t` when nginx is installed). It does not start anything: images, pulls and the running
cluster are not validated.

Needs Python 3 and PyYAML (Debian: python3-yaml).
"""

from __future__ import annotations

import copy
import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

try:
    import yaml
except ImportError:  # pragma: no cover - depends on the machine
    sys.exit("check-deploy: PyYAML is missing (apt-get install python3-yaml)")

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_PATH = "deploy/compose.yaml"
NGINX_COMPOSE_PATH = "deploy/nginx.compose.conf"
NGINX_PATH = "deploy/nginx.conf"
TTPULSE_DOCKERFILE = "deploy/Dockerfile"
DASHBOARD_DOCKERFILE = "frontend/Dockerfile"
ROLES = {"ingester", "processor", "cache", "api"}
KNOWN_INSTRUCTIONS = {
    "FROM", "RUN", "CMD", "LABEL", "MAINTAINER", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT",
    "VOLUME", "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL",
}


class Repo:
    """The repository's files, with overrides (text, or None for a missing file) for the self-test."""

    def __init__(self, root: Path, overrides: dict[str, str | None] | None = None):
        self.root = root
        self.overrides = overrides or {}

    def exists(self, rel: str) -> bool:
        rel = norm(rel)
        if rel in self.overrides:
            return self.overrides[rel] is not None
        if any(k.startswith(rel + "/") and v is not None for k, v in self.overrides.items()):
            return True
        return (self.root / rel).exists()

    def read(self, rel: str) -> str:
        rel = norm(rel)
        if rel in self.overrides:
            text = self.overrides[rel]
            if text is None:
                raise FileNotFoundError(rel)
            return text
        return (self.root / rel).read_text(encoding="utf-8")


def norm(rel: str) -> str:
    return os.path.normpath(rel).replace(os.sep, "/")


# ---- small helpers ---------------------------------------------------------------------------

def interpolate_default(value: str) -> str:
    """`${VAR:-default}` and `${VAR-default}` become the default; other `${...}` stay as is."""
    return re.sub(r"\$\{[A-Za-z_][A-Za-z0-9_]*:?-([^}]*)\}", r"\1", value)


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        out = {}
        for item in env:
            key, _, value = str(item).partition("=")
            out[key] = value
        return out
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def depends_on(service: dict) -> dict[str, str]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return {d: "service_started" for d in deps}
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def dockerfile_of(service: dict) -> str | None:
    build = service.get("build")
    if build is None:
        return None
    if isinstance(build, str):
        build = {"context": build}
    context = norm(os.path.join("deploy", build.get("context", ".")))
    return norm(os.path.join(context, build.get("dockerfile", "Dockerfile")))


def context_of(service: dict) -> str:
    build = service["build"]
    if isinstance(build, str):
        build = {"context": build}
    return norm(os.path.join("deploy", build.get("context", ".")))


def kind_of(service: dict) -> str:
    dockerfile = dockerfile_of(service)
    if dockerfile == TTPULSE_DOCKERFILE:
        return "ttpulse"
    if dockerfile == DASHBOARD_DOCKERFILE:
        return "dashboard"
    return "other"


def command_of(service: dict) -> list[str]:
    cmd = service.get("command")
    if cmd is None:
        return ["run"]  # deploy/Dockerfile's CMD
    return cmd.split() if isinstance(cmd, str) else [str(c) for c in cmd]


def host_port(address: str) -> tuple[str, int | None]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port) if port.isdigit() else None


def documented_env_keys(repo: Repo) -> set[str]:
    keys = set()
    for line in repo.read(".env.example").splitlines():
        match = re.match(r"^#?\s*(TTPULSE_[A-Za-z0-9_.]+)=", line)
        if match:
            keys.add(match.group(1))
    return keys


def dashboard_env_keys(repo: Repo) -> set[str]:
    return set(re.findall(r"^\| `(TTPULSE_[A-Z0-9_]+)` \|", repo.read("frontend/README.md"), re.M))


# ---- Dockerfile parsing ----------------------------------------------------------------------

def dockerfile_instructions(text: str) -> list[tuple[int, str, str]]:
    """(line number, INSTRUCTION, arguments), continuation lines joined, comments dropped."""
    out, buf, start = [], [], 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not buf and (not stripped or stripped.startswith("#")):
            continue
        if buf and (not stripped or stripped.startswith("#")):
            continue  # comment or blank line inside a continuation: Docker skips it
        if not buf:
            start = number
        if stripped.endswith("\\"):
            buf.append(stripped[:-1].strip())
            continue
        buf.append(stripped)
        line = " ".join(part for part in buf if part)
        buf = []
        word, _, rest = line.partition(" ")
        out.append((start, word, rest.strip()))
    if buf:
        out.append((start, "<EOF>", ""))
    return out


def parse_dockerfile(text: str, name: str) -> tuple[list[str], dict]:
    errors: list[str] = []
    stages: list[str | None] = []
    copies: list[tuple[int, str | None, list[str]]] = []
    env_keys: list[str] = []
    seen_from = False
    for number, word, args in dockerfile_instructions(text):
        where = f"{name}:{number}"
        instruction = word.upper()
        if word == "<EOF>":
            errors.append(f"{where}: a continuation (`\\` at the end of a line) runs past the end of the file")
            continue
        if instruction not in KNOWN_INSTRUCTIONS:
            errors.append(f"{where}: unknown instruction `{word}`")
            continue
        if not seen_from and instruction not in ("FROM", "ARG"):
            errors.append(f"{where}: `{instruction}` before the first FROM")
        if instruction == "FROM":
            seen_from = True
            parts = [p for p in args.split() if not p.startswith("--")]
            if not parts:
                errors.append(f"{where}: FROM without an image")
                continue
            if len(parts) == 3 and parts[1].lower() == "as":
                if parts[2] in stages:
                    errors.append(f"{where}: stage `{parts[2]}` defined twice")
                stages.append(parts[2])
            elif len(parts) == 1:
                stages.append(None)
            else:
                errors.append(f"{where}: FROM takes `image [AS name]`, got `{args}`")
                stages.append(None)
        elif instruction in ("COPY", "ADD"):
            tokens = args.split()
            flags = [t for t in tokens if t.startswith("--")]
            rest = args
            while rest.startswith("--"):
                rest = rest.split(None, 1)[1] if " " in rest else ""
            if rest.startswith("["):
                try:
                    paths = json.loads(rest)
                except json.JSONDecodeError:
                    errors.append(f"{where}: {instruction} JSON form does not parse")
                    continue
            else:
                paths = rest.split()
            if len(paths) < 2:
                errors.append(f"{where}: {instruction} needs a source and a destination")
                continue
            source_stage = None
            for flag in flags:
                if flag.startswith("--from="):
                    source_stage = flag.split("=", 1)[1]
                    earlier = stages[:-1]
                    is_index = source_stage.isdigit() and int(source_stage) < len(earlier)
                    if source_stage not in [s for s in earlier if s] and not is_index:
                        errors.append(f"{where}: {instruction} --from={source_stage}: no earlier build stage has that name")
            copies.append((number, source_stage, paths[:-1]))
        elif instruction == "ENV":
            if "=" in args.split()[0] if args else False:
                env_keys += [m.group(1) for m in re.finditer(r"(?:^|\s)([A-Za-z_][A-Za-z0-9_.]*)=", args)]
            elif args:
                env_keys.append(args.split()[0])
            else:
                errors.append(f"{where}: ENV without a key")
        elif instruction in ("CMD", "ENTRYPOINT", "SHELL") and args.startswith("["):
            try:
                json.loads(args)
            except json.JSONDecodeError:
                errors.append(f"{where}: {instruction} JSON form does not parse")
        elif instruction == "HEALTHCHECK":
            rest = re.sub(r"--[a-z-]+=\S+\s*", "", args)
            if not (rest.upper() == "NONE" or rest.upper().startswith("CMD ")):
                errors.append(f"{where}: HEALTHCHECK takes NONE or [options] CMD command")
    if not stages:
        errors.append(f"{name}: no FROM")
    return errors, {"stages": stages, "copies": copies, "env": env_keys}


def dockerignore_patterns(repo: Repo, context: str) -> list[str]:
    path = norm(os.path.join(context, ".dockerignore"))
    if not repo.exists(path):
        return []
    out = []
    for line in repo.read(path).splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            out.append(line.rstrip("/").removeprefix("./"))
    return out


def ignored(rel: str, patterns: list[str]) -> bool:
    parts = rel.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    verdict = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!")
        for prefix in prefixes:
            if fnmatch.fnmatchcase(prefix, pattern) or (
                pattern.startswith("**/") and fnmatch.fnmatchcase(prefix.split("/")[-1], pattern[3:])
            ):
                verdict = not negate
                break
    return verdict


# ---- the checks ------------------------------------------------------------------------------

def check_dependencies(compose: dict, repo: Repo) -> list[str]:
    errors = []
    services = compose.get("services") or {}
    conditions = {"service_started", "service_healthy", "service_completed_successfully"}
    for name, service in services.items():
        for target, condition in depends_on(service).items():
            if target not in services:
                errors.append(f"{name}: depends_on `{target}`, which is not a service")
            if condition not in conditions:
                errors.append(f"{name}: depends_on `{target}` with unknown condition `{condition}`")
            elif condition == "service_healthy" and target in services and "healthcheck" not in services[target]:
                errors.append(f"{name}: waits for `{target}` to be healthy, but it has no healthcheck")
        for link in service.get("links") or []:
            if link.split(":")[0] not in services:
                errors.append(f"{name}: links `{link}`, which is not a service")
    return errors


def check_env_keys(compose: dict, repo: Repo) -> list[str]:
    errors = []
    documented = documented_env_keys(repo)
    dashboard = dashboard_env_keys(repo)
    for name, service in (compose.get("services") or {}).items():
        kind = kind_of(service)
        allowed = documented if kind == "ttpulse" else dashboard if kind == "dashboard" else set()
        where = ".env.example" if kind == "ttpulse" else "frontend/README.md" if kind == "dashboard" else "no reader"
        for key in environment(service):
            if key.startswith("TTPULSE_") and key not in allowed:
                errors.append(f"{name}: sets `{key}`, which is not documented ({where})")
    return errors


def kafka_brokers(compose: dict) -> dict[str, dict]:
    return {
        name: service
        for name, service in (compose.get("services") or {}).items()
        if str(service.get("image", "")).startswith("apache/kafka")
    }


def check_kafka(compose: dict, repo: Repo) -> list[str]:
    errors = []
    brokers = kafka_brokers(compose)
    if len(brokers) < 3:
        errors.append(f"Kafka: {len(brokers)} broker service(s); replication factor 3 needs three")
    required = {
        "KAFKA_DEFAULT_REPLICATION_FACTOR": "3",
        "KAFKA_MIN_INSYNC_REPLICAS": "2",
        "KAFKA_UNCLEAN_LEADER_ELECTION_ENABLE": "false",
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "3",
    }
    node_ids, voters, cluster_ids = {}, set(), set()
    for name, service in brokers.items():
        env = environment(service)
        for key, want in required.items():
            if env.get(key, "").lower() != want:
                errors.append(f"{name}: {key} is `{env.get(key, '(unset)')}`, want {want}")
        if "controller" in env.get("KAFKA_PROCESS_ROLES", ""):
            voters.add(env.get("KAFKA_CONTROLLER_QUORUM_VOTERS", ""))
        node = env.get("KAFKA_NODE_ID")
        if node in node_ids:
            errors.append(f"{name}: KAFKA_NODE_ID {node} is also {node_ids[node]}'s")
        node_ids[node] = name
        cluster_ids.add(env.get("CLUSTER_ID"))
        advertised = env.get("KAFKA_ADVERTISED_LISTENERS", "")
        if f"//{name}:" not in advertised and f"//{service.get('hostname', name)}:" not in advertised:
            errors.append(f"{name}: KAFKA_ADVERTISED_LISTENERS `{advertised}` does not name the service")
    if len(cluster_ids) > 1:
        errors.append(f"Kafka: the brokers have different CLUSTER_IDs {sorted(map(str, cluster_ids))}")
    if len(voters) > 1:
        errors.append("Kafka: the controllers disagree on KAFKA_CONTROLLER_QUORUM_VOTERS")
    for voter_list in voters:
        for voter in filter(None, voter_list.split(",")):
            node, _, address = voter.partition("@")
            host, _ = host_port(address)
            if node_ids.get(node) != host:
                errors.append(f"Kafka: quorum voter `{voter}` is not node {node} of a broker service")
    return errors


def listener_port(broker: dict) -> int | None:
    for listener in environment(broker).get("KAFKA_LISTENERS", "").split(","):
        if listener.startswith("PLAINTEXT://"):
            return host_port(listener.split("//", 1)[1])[1]
    return None


def check_ttpulse_roles(compose: dict, repo: Repo) -> list[str]:
    errors = []
    services = compose.get("services") or {}
    brokers = kafka_brokers(compose)
    migrate = [n for n, s in services.items() if kind_of(s) == "ttpulse" and command_of(s)[:1] == ["migrate"]]
    if len(migrate) != 1:
        errors.append(f"want one `ttpulse migrate` service, found {len(migrate)}")
    seen_roles = set()
    for name, service in services.items():
        if kind_of(service) != "ttpulse" or command_of(service)[:1] != ["run"]:
            continue
        env = environment(service)
        roles = {r.strip() for r in env.get("TTPULSE_ROLES", ",".join(sorted(ROLES))).split(",") if r.strip()}
        if roles - ROLES:
            errors.append(f"{name}: unknown roles {sorted(roles - ROLES)}")
        seen_roles |= roles
        listed = [b.strip() for b in env.get("TTPULSE_KAFKA_BROKERS", "").split(",") if b.strip()]
        hosts = {host_port(b)[0] for b in listed}
        if len(listed) != 3 or len(hosts) != 3:
            errors.append(f"{name}: TTPULSE_KAFKA_BROKERS names {len(hosts)} distinct broker(s), want 3")
        for entry in listed:
            host, port = host_port(entry)
            if host not in brokers:
                errors.append(f"{name}: broker `{entry}` is not a Kafka service")
            elif port != listener_port(brokers[host]):
                errors.append(f"{name}: broker `{entry}`: {host} listens on {listener_port(brokers[host])}")
        if env.get("TTPULSE_KAFKA_REPLICATION") != "3":
            errors.append(f"{name}: TTPULSE_KAFKA_REPLICATION is `{env.get('TTPULSE_KAFKA_REPLICATION', '(unset: 1)')}`, want 3")
        for url_key, schemes, needed in (
            ("TTPULSE_REDIS_URL", ("redis", "rediss"), bool(roles & {"cache", "api"})),
            ("TTPULSE_DATABASE_URL", ("postgres", "postgresql"), True),
        ):
            url = env.get(url_key)
            if url is None:
                if needed:
                    errors.append(f"{name}: {url_key} is not set")
                continue
            match = re.match(r"^([a-z]+)://(?:[^@/]*@)?([^:/?]+)", url)
            if not match or match.group(1) not in schemes:
                errors.append(f"{name}: {url_key} `{url}` is not a {'/'.join(schemes)}:// URL")
            elif match.group(2) not in services:
                errors.append(f"{name}: {url_key} names `{match.group(2)}`, which is not a service")
        if migrate and depends_on(service).get(migrate[0]) != "service_completed_successfully":
            errors.append(f"{name}: does not wait for `{migrate[0]}` to complete successfully")
        http_host, _ = host_port(env.get("TTPULSE_HTTP_ADDR", "127.0.0.1:8080"))
        if "ingester" in roles and not http_host.startswith("127.") and "TTPULSE_INGEST_TOKEN" not in env:
            errors.append(f"{name}: ingest on {http_host} without TTPULSE_INGEST_TOKEN (ttpulse refuses to start)")
        admin_port = host_port(env.get("TTPULSE_ADMIN_ADDR", "127.0.0.1:9464"))[1]
        test = " ".join(map(str, (service.get("healthcheck") or {}).get("test") or []))
        if f":{admin_port}/admin/health" not in test:
            errors.append(f"{name}: no healthcheck on /admin/health of its admin listener (port {admin_port})")
    if ROLES - seen_roles:
        errors.append(f"no service runs the roles {sorted(ROLES - seen_roles)}")
    return errors


def check_volumes(compose: dict, repo: Repo) -> list[str]:
    errors = []
    declared = set((compose.get("volumes") or {}).keys())
    used = set()
    for name, service in (compose.get("services") or {}).items():
        for volume in service.get("volumes") or []:
            if isinstance(volume, dict):
                kind, source = volume.get("type", "volume"), str(volume.get("source", ""))
            else:
                source = str(volume).split(":")[0]
                kind = "bind" if source.startswith((".", "/", "~")) else "volume"
            if kind == "bind":
                if source.startswith(("/", "~")):
                    errors.append(f"{name}: mounts `{source}`, a host path outside the repository")
                elif not repo.exists(norm(os.path.join("deploy", source))):
                    errors.append(f"{name}: mounts `{source}`, which does not exist")
            elif kind == "volume" and source:
                used.add(source)
                if source not in declared:
                    errors.append(f"{name}: uses volume `{source}`, which is not declared")
    for unused in sorted(declared - used):
        errors.append(f"volume `{unused}` is declared but no service uses it")
    return errors


def check_builds(compose: dict, repo: Repo) -> list[str]:
    errors = []
    parsed: dict[str, dict] = {}
    for name, service in (compose.get("services") or {}).items():
        dockerfile = dockerfile_of(service)
        if dockerfile is None:
            continue
        context = context_of(service)
        if not repo.exists(context):
            errors.append(f"{name}: build context `{context}` does not exist")
            continue
        if not repo.exists(dockerfile):
            errors.append(f"{name}: `{dockerfile}` does not exist")
            continue
        if dockerfile in parsed:
            continue
        problems, info = parse_dockerfile(repo.read(dockerfile), dockerfile)
        parsed[dockerfile] = info
        errors += problems
        patterns = dockerignore_patterns(repo, context)
        for number, stage, sources in info["copies"]:
            if stage is not None:
                continue
            for source in sources:
                if re.match(r"^[a-z]+://", source):
                    continue
                rel = norm(os.path.join(context, source))
                in_context = norm(source)
                if not repo.exists(rel):
                    errors.append(f"{dockerfile}:{number}: copies `{source}`, which is not in `{context}`")
                elif in_context != "." and ignored(in_context, patterns):
                    errors.append(f"{dockerfile}:{number}: copies `{source}`, which {context}/.dockerignore leaves out")
    if TTPULSE_DOCKERFILE in parsed:
        # cargo refuses to build a workspace whose member is missing from the image.
        copied = {norm(source) for _, stage, sources in parsed[TTPULSE_DOCKERFILE]["copies"] if stage is None for source in sources}
        for member in tomllib.loads(repo.read("Cargo.toml")).get("workspace", {}).get("members", []):
            if norm(member) not in copied:
                errors.append(f"{TTPULSE_DOCKERFILE}: does not copy the workspace member `{member}` (Cargo.toml)")
        # The build settings (the allocator's compile-time default): without them the image's
        # binary would differ from the one measured.
        if repo.exists(".cargo/config.toml") and ".cargo" not in copied and ".cargo/config.toml" not in copied:
            errors.append(f"{TTPULSE_DOCKERFILE}: does not copy .cargo/config.toml (the build settings)")
        documented = documented_env_keys(repo)
        for key in parsed[TTPULSE_DOCKERFILE]["env"]:
            if key.startswith("TTPULSE_") and key not in documented:
                errors.append(f"{TTPULSE_DOCKERFILE}: ENV `{key}` is not documented in .env.example")
    return errors


def published_ports(service: dict) -> list[tuple[str, int, str]]:
    out = []
    for port in service.get("ports") or []:
        if isinstance(port, dict):
            if port.get("published") is not None:
                published = int(interpolate_default(str(port["published"])))
                out.append((port.get("host_ip", "0.0.0.0"), published, port.get("protocol", "tcp")))
            continue
        spec, _, protocol = interpolate_default(str(port)).partition("/")
        parts = spec.split(":")
        if len(parts) == 1:
            continue  # container port only: the engine picks a free host port
        host_ip = parts[0] if len(parts) == 3 else "0.0.0.0"
        published = parts[-2]
        if "-" in published:
            low, high = map(int, published.split("-"))
            out += [(host_ip, p, protocol or "tcp") for p in range(low, high + 1)]
        else:
            out.append((host_ip, int(published), protocol or "tcp"))
    return out


def check_ports(compose: dict, repo: Repo) -> list[str]:
    errors = []
    taken: dict[tuple[int, str], list[tuple[str, str]]] = {}
    for name, service in (compose.get("services") or {}).items():
        ports = published_ports(service)
        replicas = int(((service.get("deploy") or {}).get("replicas")) or 1)
        if ports and replicas > 1:
            errors.append(f"{name}: {replicas} replicas cannot all publish host port(s) {sorted(p for _, p, _ in ports)}")
        for host_ip, port, protocol in ports:
            for other_ip, other in taken.get((port, protocol), []):
                if host_ip == other_ip or "0.0.0.0" in (host_ip, other_ip):
                    errors.append(f"{name}: host port {port}/{protocol} is also published by {other}")
            taken.setdefault((port, protocol), []).append((host_ip, name))
    return errors


def nginx_locations(text: str) -> set[str]:
    return {" ".join(m.group(1).split()) for m in re.finditer(r"^\s*location\s+([^{]+?)\s*\{", text, re.M)}


def check_nginx(compose: dict, repo: Repo) -> list[str]:
    errors = []
    services = compose.get("services") or {}
    mounted = any(
        NGINX_COMPOSE_PATH.split("/")[-1] in str(v)
        for s in services.values()
        for v in (s.get("volumes") or [])
    )
    if not mounted:
        errors.append(f"no service mounts {NGINX_COMPOSE_PATH}")
    text = repo.read(NGINX_COMPOSE_PATH)
    for match in re.finditer(r"^\s*server\s+([^\s;{]+)[^;{]*;", text, re.M):
        host, port = host_port(match.group(1))
        if host not in services:
            errors.append(f"{NGINX_COMPOSE_PATH}: upstream `{match.group(1)}` is not a service")
            continue
        target = services[host]
        if kind_of(target) == "ttpulse":
            listens = host_port(environment(target).get("TTPULSE_HTTP_ADDR", "127.0.0.1:8080"))[1]
            if port != listens:
                errors.append(f"{NGINX_COMPOSE_PATH}: upstream `{match.group(1)}`: {host} listens on {listens}")
    for upstream in re.findall(r"proxy_pass\s+http://([A-Za-z0-9_]+)", text):
        if not re.search(rf"^upstream\s+{upstream}\s*\{{", text, re.M):
            errors.append(f"{NGINX_COMPOSE_PATH}: proxy_pass to undefined upstream `{upstream}`")
    ours, reference = nginx_locations(text), nginx_locations(repo.read(NGINX_PATH))
    for missing in sorted(reference - ours):
        errors.append(f"{NGINX_COMPOSE_PATH}: lacks `location {missing}` of {NGINX_PATH}")
    for extra in sorted(ours - reference):
        errors.append(f"{NGINX_COMPOSE_PATH}: `location {extra}` is not in {NGINX_PATH}")
    return errors


CHECKS = [
    check_dependencies, check_env_keys, check_kafka, check_ttpulse_roles, check_volumes,
    check_builds, check_ports, check_nginx,
]


def check_all(compose: dict, repo: Repo) -> list[str]:
    errors = []
    for check in CHECKS:
        errors += check(compose, repo)
    return errors


def nginx_binary() -> str | None:
    return shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)


def nginx_syntax(repo: Repo) -> list[str]:
    """`nginx -t` on the compose config, its upstream names pointed at loopback (they resolve
    only on the compose network), inside a main context like frontend/e2e/stack.mjs builds."""
    binary = nginx_binary()
    if binary is None:
        print("check-deploy: nginx is not installed; skipped `nginx -t` of", NGINX_COMPOSE_PATH)
        return []
    site = re.sub(r"^(\s*server\s+)[A-Za-z0-9_.-]+(:\d+;)", r"\g<1>127.0.0.1\2", repo.read(NGINX_COMPOSE_PATH), flags=re.M)
    site = re.sub(r"^(\s*listen\s+)80;", r"\g<1>127.0.0.1:1;", site, flags=re.M)
    with tempfile.TemporaryDirectory(prefix="check-deploy-nginx-") as prefix:
        os.makedirs(os.path.join(prefix, "logs"))
        conf = os.path.join(prefix, "nginx.conf")
        temp = "\n".join(f"    {k}_temp_path {prefix}/{k};" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        Path(conf).write_text(
            f"pid {prefix}/nginx.pid;\nerror_log {prefix}/logs/error.log;\nevents {{}}\nhttp {{\n{temp}\n{site}\n}}\n"
        )
        result = subprocess.run([binary, "-t", "-q", "-p", prefix, "-c", conf], capture_output=True, text=True)
        if result.returncode != 0:
            return [f"{NGINX_COMPOSE_PATH}: nginx -t fails: {result.stderr.strip()}"]
    return []


def load_compose(repo: Repo) -> dict:
    return yaml.safe_load(repo.read(COMPOSE_PATH))


# ---- self-test: every check catches a broken variant -----------------------------------------

def self_test() -> int:
    repo = Repo(ROOT)
    base = load_compose(repo)
    dockerfile = repo.read(TTPULSE_DOCKERFILE)
    nginx = repo.read(NGINX_COMPOSE_PATH)
    baseline = check_all(base, repo)
    if baseline:
        print("check-deploy self-test: the real files must pass first:\n  " + "\n  ".join(baseline))
        return 1

    def svc(c, name):
        return c["services"][name]

    def set_env(name, key, value):
        def mutate(c):
            env = environment(svc(c, name))
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
            svc(c, name)["environment"] = env
        return mutate

    def kafka_env(key, value):
        return set_env("kafka-2", key, value)

    compose_cases = [
        ("depends_on names no service", lambda c: svc(c, "cache")["depends_on"].update({"nope": {"condition": "service_started"}}), "not a service"),
        ("links names no service", lambda c: svc(c, "api-1").update({"links": ["ghost"]}), "links `ghost`"),
        ("healthy wait on a service without healthcheck", lambda c: svc(c, "postgres").pop("healthcheck"), "has no healthcheck"),
        ("undocumented TTPULSE_ key", set_env("api-1", "TTPULSE_NOT_A_SETTING", "1"), "TTPULSE_NOT_A_SETTING"),
        ("ttpulse key on the dashboard", set_env("dashboard", "TTPULSE_HTTP_ADDR", "0.0.0.0:3000"), "frontend/README.md"),
        ("min ISR 1", kafka_env("KAFKA_MIN_INSYNC_REPLICAS", "1"), "KAFKA_MIN_INSYNC_REPLICAS"),
        ("replication factor 2", kafka_env("KAFKA_DEFAULT_REPLICATION_FACTOR", "2"), "KAFKA_DEFAULT_REPLICATION_FACTOR"),
        ("unclean election on", kafka_env("KAFKA_UNCLEAN_LEADER_ELECTION_ENABLE", "true"), "UNCLEAN"),
        ("two node ids alike", kafka_env("KAFKA_NODE_ID", "1"), "KAFKA_NODE_ID"),
        ("a voter that is no broker", kafka_env("KAFKA_CONTROLLER_QUORUM_VOTERS", "1@kafka-1:9093,2@kafka-9:9093,3@kafka-3:9093"), "disagree"),
        ("two brokers only", lambda c: c["services"].pop("kafka-3"), "broker service(s)"),
        ("a role lists two brokers", set_env("processor", "TTPULSE_KAFKA_BROKERS", "kafka-1:9092,kafka-2:9092"), "want 3"),
        ("a role lists an unknown broker", set_env("cache", "TTPULSE_KAFKA_BROKERS", "kafka-1:9092,kafka-2:9092,kafka-9:9092"), "not a Kafka service"),
        ("a role lists a wrong broker port", set_env("ingester", "TTPULSE_KAFKA_BROKERS", "kafka-1:9092,kafka-2:9092,kafka-3:9093"), "listens on"),
        ("topic replication 1", set_env("api-2", "TTPULSE_KAFKA_REPLICATION", None), "TTPULSE_KAFKA_REPLICATION"),
        ("a Sentinel URL", set_env("cache", "TTPULSE_REDIS_URL", "redis+sentinel://sentinel-1:26379/ttpulse"), "TTPULSE_REDIS_URL"),
        ("Redis URL of no service", set_env("api-1", "TTPULSE_REDIS_URL", "redis://redis-9:6379/0"), "redis-9"),
        ("api without Redis", set_env("api-1", "TTPULSE_REDIS_URL", None), "TTPULSE_REDIS_URL is not set"),
        ("database of no service", set_env("processor", "TTPULSE_DATABASE_URL", "postgres://u@db9/ttpulse"), "db9"),
        ("an unknown role", set_env("processor", "TTPULSE_ROLES", "procesor"), "unknown roles"),
        ("no cache role", set_env("cache", "TTPULSE_ROLES", "api"), "['cache']"),
        ("ingest open without a token", set_env("ingester", "TTPULSE_INGEST_TOKEN", None), "TTPULSE_INGEST_TOKEN"),
        ("role not waiting for migrate", lambda c: svc(c, "processor")["depends_on"].pop("migrate"), "complete successfully"),
        ("role waiting for migrate to start only", lambda c: svc(c, "cache")["depends_on"].update({"migrate": {"condition": "service_started"}}), "complete successfully"),
        ("no migrate service", lambda c: svc(c, "migrate").update({"command": ["run"]}), "migrate"),
        ("healthcheck not on /admin/health", lambda c: svc(c, "api-2").update({"healthcheck": {"test": ["CMD", "true"]}}), "/admin/health"),
        ("undeclared volume", lambda c: c["volumes"].pop("postgres-data"), "not declared"),
        ("declared volume unused", lambda c: c["volumes"].update({"spare": None}), "no service uses"),
        ("mounted file missing", lambda c: svc(c, "redis-replica")["volumes"].append("./nope.conf:/etc/nope.conf:ro"), "does not exist"),
        ("host path mounted", lambda c: svc(c, "postgres")["volumes"].append("/srv/pg:/x"), "outside the repository"),
        ("missing Dockerfile", lambda c: svc(c, "dashboard")["build"].update({"dockerfile": "Nope.Dockerfile"}), "does not exist"),
        ("missing build context", lambda c: svc(c, "dashboard")["build"].update({"context": "../nowhere"}), "build context"),
        ("port collision", lambda c: svc(c, "dashboard").update({"ports": ["80:3000"]}), "also published"),
        ("port collision via a default", lambda c: svc(c, "dashboard").update({"ports": ["${EDGE:-8081}:3000"]}), "also published"),
        ("replicas on a fixed host port", lambda c: svc(c, "processor").update({"ports": ["9000:8080"]}), "replicas cannot"),
        ("nginx config not mounted", lambda c: svc(c, "nginx").update({"volumes": []}), "mounts deploy/nginx.compose.conf"),
        ("nginx upstream port of no listener", set_env("api-2", "TTPULSE_HTTP_ADDR", "0.0.0.0:8090"), "listens on 8090"),
    ]
    file_cases = [
        ("unknown Dockerfile instruction", {TTPULSE_DOCKERFILE: dockerfile + "\nCOPPY src /x\n"}, "unknown instruction"),
        ("COPY --from of no stage", {TTPULSE_DOCKERFILE: dockerfile.replace("--from=builder", "--from=biulder")}, "no earlier build stage"),
        ("COPY --from of a later stage", {TTPULSE_DOCKERFILE: dockerfile.replace("--from=builder", "--from=runtime")}, "no earlier build stage"),
        ("COPY of a missing file", {TTPULSE_DOCKERFILE: dockerfile.replace("COPY src src", "COPY srcs src")}, "not in"),
        ("a workspace member not copied", {TTPULSE_DOCKERFILE: dockerfile.replace("COPY domain domain\n", "")}, "workspace member `domain`"),
        ("build settings not copied", {TTPULSE_DOCKERFILE: dockerfile.replace("COPY .cargo .cargo\n", "")}, ".cargo/config.toml"),
        ("COPY of an ignored path", {".dockerignore": repo.read(".dockerignore") + "\nharness\n"}, ".dockerignore leaves out"),
        ("undocumented ENV", {TTPULSE_DOCKERFILE: dockerfile.replace("TTPULSE_DATA_DIR=", "TTPULSE_DATADIR=")}, "TTPULSE_DATADIR"),
        ("instruction before FROM", {TTPULSE_DOCKERFILE: "RUN true\n" + dockerfile}, "before the first FROM"),
        ("bad CMD JSON", {TTPULSE_DOCKERFILE: dockerfile.replace('CMD ["run"]', 'CMD ["run"')}, "JSON form"),
        ("dangling continuation", {TTPULSE_DOCKERFILE: dockerfile.rstrip() + " \\\n"}, "continuation"),
        ("a dropped Dockerfile", {DASHBOARD_DOCKERFILE: None}, "does not exist"),
        ("a mounted file removed", {"deploy/redis.conf": None}, "does not exist"),
        ("nginx upstream of no service", {NGINX_COMPOSE_PATH: nginx.replace("server api-2:8080;", "server api-3:8080;")}, "api-3"),
        ("nginx drops a location", {NGINX_COMPOSE_PATH: nginx.replace("location = /api/ingest", "location = /api/ingestx")}, "lacks `location = /api/ingest`"),
        ("nginx proxies to no upstream", {NGINX_COMPOSE_PATH: nginx.replace("proxy_pass http://ttpulse_next;", "proxy_pass http://ttpulse_web;", 1)}, "undefined upstream"),
        (".env.example loses a key the compose file sets", {".env.example": repo.read(".env.example").replace("TTPULSE_KAFKA_GROUP=", "TTPULSE_KAFKA_GRP=")}, "TTPULSE_KAFKA_GROUP"),
    ]
    # Continuation lines are joined: a RUN whose next line starts with a word that is no
    # instruction must parse clean (the real Dockerfile already has such lines).
    continuation = "FROM debian AS a\nRUN apt-get update \\\n    # a comment inside\n    && apt-get install -y curl\nFROM debian\nCOPY --from=a /x /y\n"
    parse_errors, _ = parse_dockerfile(continuation, "continuation")
    failures = [f"continuation Dockerfile: {e}" for e in parse_errors]
    for label, mutate, expect in compose_cases:
        broken = copy.deepcopy(base)
        mutate(broken)
        found = check_all(broken, repo)
        if not any(expect in e for e in found):
            failures.append(f"{label}: no error containing {expect!r} (got {found})")
    for label, overrides, expect in file_cases:
        found = check_all(base, Repo(ROOT, overrides))
        if not any(expect in e for e in found):
            failures.append(f"{label}: no error containing {expect!r} (got {found})")
    total = len(compose_cases) + len(file_cases)
    if nginx_binary() is not None:
        if nginx_syntax(repo):
            failures.append(f"nginx -t of the real {NGINX_COMPOSE_PATH} fails: {nginx_syntax(repo)}")
        typo = Repo(ROOT, {NGINX_COMPOSE_PATH: nginx.replace("return 403;", "retrun 403;", 1)})
        if not any("nginx -t fails" in e for e in nginx_syntax(typo)):
            failures.append("nginx -t did not catch an unknown directive")
        total += 1
    if failures:
        print("check-deploy self-test: FAILED\n  " + "\n  ".join(failures))
        return 1
    print(f"check-deploy self-test: each of {total} broken variants was caught; a Dockerfile with continuations parses")
    return 0


def main(argv: list[str]) -> int:
    if argv[1:] == ["--self-test"]:
        return self_test()
    if argv[1:]:
        print(__doc__)
        return 2
    repo = Repo(ROOT)
    errors = check_all(load_compose(repo), repo) + nginx_syntax(repo)
    if errors:
        print("check-deploy: FAILED\n  " + "\n  ".join(errors))
        return 1
    print(f"check-deploy: {COMPOSE_PATH}, {TTPULSE_DOCKERFILE}, {DASHBOARD_DOCKERFILE} and {NGINX_COMPOSE_PATH} hold together")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
