#!/usr/bin/env python3
"""Checks the deployment files under container/: every YAML file parses, and
the Kubernetes and Azure Container Apps manifests agree with the server's
contract (readiness on /ready, liveness on /health, a termination grace period
longer than the drain, secrets from a Secret, only settings the server reads,
the media port range, the Containerfile's exposed ports).

Exit 77 (skipped) when PyYAML is not installed (Debian package python3-yaml)."""

import os
import pathlib
import re
import sys

SKIP = 77

try:
    import yaml
except ImportError:
    print("SKIP: PyYAML not installed (Debian package python3-yaml)")
    sys.exit(SKIP)

source_root = pathlib.Path(os.environ.get("VOICEBRIDGE_SOURCE_ROOT", pathlib.Path(__file__).resolve().parents[2]))
container_dir = source_root / "container"
kubernetes_dir = container_dir / "kubernetes"

failures = []


def check(condition, message):
    if not condition:
        failures.append(message)
    return condition


def load_all_yaml():
    documents = {}
    paths = sorted(p for p in container_dir.rglob("*") if p.suffix in (".yml", ".yaml"))
    check(paths, f"no YAML files under {container_dir}")
    for path in paths:
        try:
            documents[path.relative_to(container_dir).as_posix()] = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
        except yaml.YAMLError as error:
            failures.append(f"{path}: not valid YAML: {error}")
    return documents


def single(documents, name):
    docs = [d for d in documents.get(name, []) if d is not None]
    if not check(len(docs) == 1, f"{name}: expected one YAML document, found {len(docs)}"):
        return {}
    return docs[0]


def env_value(env, name):
    for entry in env or []:
        if entry.get("name") == name:
            return entry
    return None


def seconds(value, what):
    try:
        return int(value)
    except (TypeError, ValueError):
        failures.append(f"{what}: expected a number of seconds, got {value!r}")
        return None


def known_settings():
    """The environment variables the server reads: quoted names in src/config.cpp."""
    text = (source_root / "src" / "config.cpp").read_text(encoding="utf-8")
    return set(re.findall(r'"([A-Z][A-Z0-9_]+)"', text))


def check_settings(names, what):
    known = known_settings()
    for name in names:
        check(name in known, f"{what}: {name} is not a voicebridge setting (not read in src/config.cpp)")


def check_probe(probe, path, what):
    http_get = (probe or {}).get("httpGet") or {}
    check(http_get.get("path") == path, f"{what}: expected httpGet path {path}, got {http_get.get('path')!r}")
    return http_get


def check_kubernetes(documents):
    deployment = single(documents, "kubernetes/deployment.yaml")
    configmap = single(documents, "kubernetes/configmap.yaml")
    secret = single(documents, "kubernetes/secret.example.yaml")
    service = single(documents, "kubernetes/service.yaml")
    kustomization = single(documents, "kubernetes/kustomization.yaml")
    if not deployment:
        return
    check(deployment.get("kind") == "Deployment", "deployment.yaml: kind is not Deployment")
    pod = deployment["spec"]["template"]["spec"]
    containers = pod.get("containers") or []
    if not check(len(containers) == 1, "deployment.yaml: expected one container"):
        return
    container = containers[0]

    http_port = next((p for p in container.get("ports", []) if p.get("name") == "http"), None)
    check(http_port is not None, "deployment.yaml: no container port named http")
    for kind, path in (("readinessProbe", "/ready"), ("livenessProbe", "/health"), ("startupProbe", "/health")):
        http_get = check_probe(container.get(kind), path, f"deployment.yaml {kind}")
        check(http_get.get("port") in ("http", (http_port or {}).get("containerPort")),
              f"deployment.yaml {kind}: probes a port other than the HTTP port")

    drain = env_value(container.get("env"), "DRAIN_TIMEOUT_S")
    grace = seconds(pod.get("terminationGracePeriodSeconds"), "deployment.yaml terminationGracePeriodSeconds")
    pre_stop = (((container.get("lifecycle") or {}).get("preStop") or {}).get("exec") or {}).get("command") or []
    pre_stop_s = int(pre_stop[-1]) if pre_stop and pre_stop[0].endswith("sleep") else 0
    if check(drain is not None and "value" in drain, "deployment.yaml: DRAIN_TIMEOUT_S not set in the container env"):
        drain_s = seconds(drain["value"], "deployment.yaml DRAIN_TIMEOUT_S")
        if drain_s is not None and grace is not None:
            check(grace > pre_stop_s + drain_s,
                  f"deployment.yaml: terminationGracePeriodSeconds {grace} must exceed preStop {pre_stop_s} s "
                  f"+ DRAIN_TIMEOUT_S {drain_s} s")

    security = pod.get("securityContext") or {}
    check(security.get("runAsNonRoot") is True, "deployment.yaml: pod securityContext.runAsNonRoot is not true")
    check((container.get("securityContext") or {}).get("allowPrivilegeEscalation") is False,
          "deployment.yaml: allowPrivilegeEscalation is not false")
    check("requests" in (container.get("resources") or {}), "deployment.yaml: no resource requests")
    if pod.get("hostNetwork"):
        check(pod.get("dnsPolicy") == "ClusterFirstWithHostNet",
              "deployment.yaml: hostNetwork needs dnsPolicy ClusterFirstWithHostNet to resolve cluster services")

    # Every secret the pod reads exists in the example Secret, and no secret
    # setting is given as a literal value.
    secret_keys = set((secret.get("stringData") or {}).keys()) | set((secret.get("data") or {}).keys())
    secret_name = (secret.get("metadata") or {}).get("name")
    for entry in container.get("env") or []:
        ref = (entry.get("valueFrom") or {}).get("secretKeyRef")
        if ref:
            check(ref.get("name") == secret_name, f"deployment.yaml: {entry['name']} reads Secret {ref.get('name')!r}")
            check(ref.get("optional") or ref.get("key") in secret_keys,
                  f"deployment.yaml: {entry['name']} reads key {ref.get('key')!r} missing from secret.example.yaml")
    for name in ("WHATSAPP_VERIFY_TOKEN", "WHATSAPP_APP_SECRET", "WHATSAPP_ACCESS_TOKEN", "OPENAI_API_KEY",
                 "DATABASE_URL"):
        entry = env_value(container.get("env"), name)
        check(entry is not None and "secretKeyRef" in (entry.get("valueFrom") or {}),
              f"deployment.yaml: {name} must come from a Secret")
        check(name not in (configmap.get("data") or {}), f"configmap.yaml: {name} is a secret")

    data = configmap.get("data") or {}
    check_settings(data.keys(), "configmap.yaml")
    check_settings([entry["name"] for entry in container.get("env") or []], "deployment.yaml")
    check_settings([key for key in secret_keys], "secret.example.yaml")
    try:
        port_min, port_max = int(data["ICE_PORT_MIN"]), int(data["ICE_PORT_MAX"])
        max_calls = int(data["MAX_CONCURRENT_CALLS"])
        check(port_max - port_min + 1 >= max_calls,
              f"configmap.yaml: {port_max - port_min + 1} media ports for MAX_CONCURRENT_CALLS={max_calls}")
    except (KeyError, ValueError) as error:
        failures.append(f"configmap.yaml: ICE_PORT_MIN/ICE_PORT_MAX/MAX_CONCURRENT_CALLS missing or not numbers: {error}")

    target = (service.get("spec") or {}).get("ports", [{}])[0].get("targetPort")
    check(target in ("http", (http_port or {}).get("containerPort")), "service.yaml: targetPort is not the HTTP port")

    resources = kustomization.get("resources") or []
    check("secret.example.yaml" not in resources, "kustomization.yaml must not apply the example Secret")
    for resource in resources:
        check((kubernetes_dir / resource).is_file(), f"kustomization.yaml: {resource} does not exist")


def check_azure(documents):
    app = single(documents, "azure-containerapps.yaml")
    if not app:
        return
    template = app["properties"]["template"]
    configuration = app["properties"]["configuration"]
    scale = template.get("scale") or {}
    check(scale.get("minReplicas") == 1 and scale.get("maxReplicas") == 10,
          "azure-containerapps.yaml: expected 1 to 10 replicas")
    check(any("http" in rule for rule in scale.get("rules") or []), "azure-containerapps.yaml: no http scale rule")
    container = template["containers"][0]
    probes = {probe.get("type"): probe for probe in container.get("probes") or []}
    check_probe(probes.get("Readiness"), "/ready", "azure-containerapps.yaml Readiness probe")
    check_probe(probes.get("Liveness"), "/health", "azure-containerapps.yaml Liveness probe")
    for probe in probes.values():
        check((probe.get("httpGet") or {}).get("port") == configuration["ingress"]["targetPort"],
              "azure-containerapps.yaml: a probe targets a port other than the ingress target port")
    drain = env_value(container.get("env"), "DRAIN_TIMEOUT_S")
    grace = seconds(template.get("terminationGracePeriodSeconds"), "azure-containerapps.yaml terminationGracePeriodSeconds")
    if check(drain is not None, "azure-containerapps.yaml: DRAIN_TIMEOUT_S not set"):
        drain_s = seconds(drain.get("value"), "azure-containerapps.yaml DRAIN_TIMEOUT_S")
        if drain_s is not None and grace is not None:
            check(grace > drain_s, f"azure-containerapps.yaml: grace period {grace} s must exceed DRAIN_TIMEOUT_S {drain_s} s")
    check_settings([entry["name"] for entry in container.get("env") or []], "azure-containerapps.yaml")
    secret_names = {secret["name"] for secret in configuration.get("secrets") or []}
    for entry in container.get("env") or []:
        if "secretRef" in entry:
            check(entry["secretRef"] in secret_names,
                  f"azure-containerapps.yaml: {entry['name']} refers to undefined secret {entry['secretRef']!r}")
    for name in ("WHATSAPP_VERIFY_TOKEN", "WHATSAPP_APP_SECRET", "WHATSAPP_ACCESS_TOKEN", "DATABASE_URL"):
        entry = env_value(container.get("env"), name)
        check(entry is not None and "secretRef" in entry, f"azure-containerapps.yaml: {name} must come from a secret")


def check_containerfile():
    text = (container_dir / "Containerfile").read_text(encoding="utf-8")
    env = dict(re.findall(r"\b(ICE_PORT_MIN|ICE_PORT_MAX|PORT)=(\d+)", text))
    check_settings(env.keys(), "Containerfile")
    check(f"EXPOSE {env.get('PORT')}/tcp" in text, "Containerfile: the HTTP PORT is not exposed")
    check(f"EXPOSE {env.get('ICE_PORT_MIN')}-{env.get('ICE_PORT_MAX')}/udp" in text,
          "Containerfile: the exposed UDP range differs from ICE_PORT_MIN..ICE_PORT_MAX")
    check(re.search(r"^STOPSIGNAL SIGTERM$", text, re.M), "Containerfile: no STOPSIGNAL SIGTERM")
    user = re.findall(r"^USER (\S+)$", text, re.M)
    check(user and not user[-1].startswith(("0", "root")), "Containerfile: the image does not run as a non-root user")


def main():
    documents = load_all_yaml()
    check_kubernetes(documents)
    check_azure(documents)
    check_containerfile()
    print(f"{len(documents)} YAML files parsed under {container_dir}")
    for failure in failures:
        print("FAIL:", failure, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
