#!/usr/bin/env python3
"""Check that deployment files hand scim-sidecar a configuration it accepts.

For each way of running it, find the config file the container/unit is told to read, the
secret files it will see, and the environment it gets; lay them out in a temporary
directory (secret files with synthetic values, at their mount paths under that directory)
and run the real binary's `scim-sidecar check-config` on it. That catches a config key the
sidecar does not know (`deny_unknown_fields`), a `bearer_token_file` / `api_key_file` that
points outside the mounted Secret or at a key the Secret does not have, a LoadCredential=
name that the Environment= paths do not match, and a compose secret name that is not
mounted where the config looks.

Usage:
  check_config_refs.py BINARY k8s FILE...        rendered Kubernetes manifests (one set)
  check_config_refs.py BINARY compose COMPOSE_FILE
  check_config_refs.py BINARY systemd UNIT_FILE CONFIG_FILE
"""

import base64
import os
import posixpath
import re
import subprocess
import sys
import tempfile

import yaml

API_KEY = "SYNTHETICapikeyForCI0123456789ab"          # 32 letters and digits
TOKEN = "synthetic-bearer-token-for-ci-0123456789"


def fail(msg):
    print(f"config-refs: FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def value_for(name):
    return API_KEY if "api" in name.lower() and "key" in name.lower() else TOKEN


def rewrite(node, mounts, root, used):
    """Return node with every string under a mount path moved below root."""
    if isinstance(node, dict):
        return {k: rewrite(v, mounts, root, used) for k, v in node.items()}
    if isinstance(node, list):
        return [rewrite(v, mounts, root, used) for v in node]
    if isinstance(node, str) and node.startswith("/"):
        for mount in mounts:
            if node.startswith(mount.rstrip("/") + "/"):
                used.add(node)
                return root + node
    return node


def secret_paths(config):
    """Every *_file value of the config (bearer_token_file may be a list)."""
    out = []
    for realm, body in (config.get("realms") or {}).items():
        for key, val in [("bearer_token_file", body.get("bearer_token_file")),
                         ("upstream.api_key_file", (body.get("upstream") or {}).get("api_key_file"))]:
            for v in val if isinstance(val, list) else [val]:
                if v is not None:
                    out.append((f"realms.{realm}.{key}", v))
    return out


def run_check(binary, label, config_text, files, env, mounts):
    """files: {absolute path: content}; mounts: the directories the files live in."""
    with tempfile.TemporaryDirectory() as root:
        config = yaml.safe_load(config_text) or {}
        used = set()
        for key, path in secret_paths(config):
            if not any(path.startswith(m.rstrip("/") + "/") for m in mounts):
                fail(f"{label}: {key} = {path} is not under any mounted secret directory {sorted(mounts)}")
            if path not in files:
                fail(f"{label}: {key} = {path}: no such file is provided (provided: {sorted(files)})")
        config = rewrite(config, mounts, root, used)
        for path, content in files.items():
            dest = root + path
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            with open(dest, "w") as f:
                f.write(content)
        cfg = os.path.join(root, "sidecar.yaml")
        with open(cfg, "w") as f:
            yaml.safe_dump(config, f)
        run_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        for k, v in env.items():
            for mount in mounts:
                if v.startswith(mount.rstrip("/") + "/"):
                    v = root + v
            run_env[k] = v
        proc = subprocess.run([binary, "check-config", "--config", cfg], env=run_env,
                              capture_output=True, text=True, cwd=root)
        if proc.returncode != 0:
            print(proc.stdout + proc.stderr, file=sys.stderr)
            fail(f"{label}: check-config exited {proc.returncode}")
        realms = ", ".join(sorted((config.get("realms") or {}).keys())) or "(from env)"
        print(f"config-refs: {label}: check-config OK (realms {realms}; "
              f"{len(files)} secret file(s) referenced as mounted)")


def k8s(binary, paths):
    docs = []
    for p in paths:
        with open(p) as f:
            docs += [d for d in yaml.safe_load_all(f) if d]
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], {})[d["metadata"]["name"]] = d
    found = 0
    for kind in ("Deployment", "StatefulSet"):
        for name, wl in by_kind.get(kind, {}).items():
            pod = wl["spec"]["template"]["spec"]
            volumes = {v["name"]: v for v in pod.get("volumes", [])}
            for c in pod["containers"]:
                args = c.get("args", [])
                if "--config" not in args:
                    continue
                found += 1
                label = f"{kind}/{name} container {c['name']}"
                cfg_path = args[args.index("--config") + 1]
                mounts = {m["mountPath"]: volumes[m["name"]] for m in c.get("volumeMounts", [])}
                cfg_dir, cfg_file = posixpath.split(cfg_path)
                if cfg_dir not in mounts or "configMap" not in mounts[cfg_dir]:
                    fail(f"{label}: --config {cfg_path}: no ConfigMap mounted at {cfg_dir}")
                cm_name = mounts[cfg_dir]["configMap"]["name"]
                cm = by_kind.get("ConfigMap", {}).get(cm_name)
                if cm is None:
                    fail(f"{label}: ConfigMap {cm_name} is not among the rendered objects")
                if cfg_file not in cm.get("data", {}):
                    fail(f"{label}: ConfigMap {cm_name} has no key {cfg_file}")
                files, secret_dirs = {}, set()
                for mpath, vol in mounts.items():
                    if "secret" not in vol:
                        continue
                    secret_dirs.add(mpath)
                    sname = vol["secret"]["secretName"]
                    secret = by_kind.get("Secret", {}).get(sname)
                    if secret is None:
                        # Created out of band (existingSecret, kubectl create secret): take
                        # the keys the config names, and say so.
                        config = yaml.safe_load(cm["data"][cfg_file])
                        keys = [posixpath.basename(p) for _, p in secret_paths(config)
                                if p.startswith(mpath.rstrip("/") + "/")]
                        print(f"config-refs: {label}: Secret {sname} is created outside these "
                              f"manifests; it must hold the keys {sorted(set(keys))}")
                    else:
                        keys = list((secret.get("data") or {}).keys()) + \
                            list((secret.get("stringData") or {}).keys())
                    for k in keys:
                        files[posixpath.join(mpath, k)] = value_for(k) + "\n"
                env = {e["name"]: e["value"] for e in c.get("env", []) if "value" in e}
                run_check(binary, label, cm["data"][cfg_file], files, env, secret_dirs)
    if not found:
        fail(f"no container with `--config` in {paths}")


def compose(binary, path):
    with open(path) as f:
        doc = yaml.safe_load(f)
    base = os.path.dirname(os.path.abspath(path))
    top_secrets = doc.get("secrets") or {}
    for kind in ("secrets", "configs"):
        for name in doc.get(kind) or {}:
            if name.startswith("zulip__"):
                fail(f"{path}: {kind[:-1]} {name} uses docker-zulip's `zulip__` prefix")
    svc = doc["services"]["scim-sidecar"]
    cmd = svc["command"]
    cfg_path = cmd[cmd.index("--config") + 1]
    config_text = None
    for c in svc.get("configs", []):
        src, target = (c, "/" + c) if isinstance(c, str) else (c["source"], c.get("target", "/" + c["source"]))
        if target == cfg_path:
            with open(os.path.join(base, doc["configs"][src]["file"])) as f:
                config_text = f.read()
    if config_text is None:
        fail(f"{path}: no config is mounted at --config {cfg_path}")
    files = {}
    for s in svc.get("secrets", []):
        src, target = (s, s) if isinstance(s, str) else (s["source"], s.get("target", s["source"]))
        if src not in top_secrets:
            fail(f"{path}: service secret {src} is not defined at the top level")
        target = target if target.startswith("/") else "/run/secrets/" + target
        files[target] = value_for(src) + "\n"
    env = {k: str(v) for k, v in (svc.get("environment") or {}).items()}
    run_check(binary, f"{path} service scim-sidecar", config_text, files, env, {"/run/secrets"})


def systemd(binary, unit, config_path):
    creds, env = {}, {}
    with open(unit) as f:
        for line in f:
            line = line.strip()
            if line.startswith("LoadCredential="):
                cid = line.split("=", 1)[1].split(":", 1)[0]
                creds[cid] = True
            elif line.startswith("Environment="):
                k, v = line.split("=", 1)[1].split("=", 1)
                env[k] = v
    d = "/run/credentials/scim-sidecar.service"
    env = {k: v.replace("%d", d) for k, v in env.items()}
    for k, v in env.items():
        if v.startswith(d + "/") and posixpath.basename(v) not in creds:
            fail(f"{unit}: {k}={v} names no LoadCredential= ({sorted(creds)})")
    files = {f"{d}/{c}": value_for(c) + "\n" for c in creds}
    with open(config_path) as f:
        config_text = f.read()
    # The unit's Environment= point the *_file keys into %d: the config's own paths are
    # overridden, so only the env paths must exist (check-config reads what is in force).
    config = yaml.safe_load(config_text)
    for realm in (config.get("realms") or {}).values():
        realm.pop("bearer_token_file", None)
        (realm.get("upstream") or {}).pop("api_key_file", None)
    run_check(binary, f"{unit} (with {config_path})", yaml.safe_dump(config), files, env, {d})


def main():
    if len(sys.argv) < 4:
        print(__doc__, file=sys.stderr)
        sys.exit(64)
    binary, mode, rest = os.path.abspath(sys.argv[1]), sys.argv[2], sys.argv[3:]
    {"k8s": lambda: k8s(binary, rest),
     "compose": lambda: compose(binary, rest[0]),
     "systemd": lambda: systemd(binary, rest[0], rest[1])}[mode]()


if __name__ == "__main__":
    main()
