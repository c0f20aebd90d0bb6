"""Service tokens, gRPC TLS and team access: what the chart mounts, sets and admits agree."""

import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from k8s_objects import SERVICES, component, container_env, named, of_kind, pod_spec

# k8stools.crds needs only jsonschema, which the services' venv has too.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "k8s" / "tools"))
from k8stools import crds

GRPC_SERVICES = ("guardrails", "retrieval", "generation")
PUBLIC_KEYS_DIR = "/etc/llmsuite/token-public-keys"
SIGNING_KEY_DIR = "/etc/llmsuite/token-signing-key"
TLS_DIR = "/etc/llmsuite/tls"
TLS_FILES = {"GRPC_TLS_CERT_FILE": "tls.crt", "GRPC_TLS_KEY_FILE": "tls.key", "GRPC_TLS_CA_FILE": "ca.crt"}


def _value(env, name):
    return env[name]["value"] if name in env else None


def _secret_mounts(objects, comp):
    """mountPath -> (Secret name, {key: path}) for the Secret volumes of a service's container."""
    spec = pod_spec(named(objects, "Deployment", comp))
    volumes = {v["name"]: v["secret"] for v in spec.get("volumes", []) if "secret" in v}
    out = {}
    for mount in spec["containers"][0].get("volumeMounts", []):
        if mount["name"] in volumes:
            assert mount.get("readOnly") is True, f"{comp} mounts Secret volume {mount['name']} writable"
            secret = volumes[mount["name"]]
            out[mount["mountPath"]] = (
                secret["secretName"],
                {i["key"]: i["path"] for i in secret.get("items", [])},
            )
    return out


def _target_host(objects, comp):
    target = _value(container_env(objects, "gateway"), f"GATEWAY_{comp.upper()}_TARGET")
    return urlsplit(target.replace("dns:///", "dns://", 1)).hostname


def test_every_grpc_service_verifies_tokens_with_the_mounted_public_keys(rendered):
    for case, objects in rendered.items():
        for comp in GRPC_SERVICES:
            env = container_env(objects, comp)
            mounts = _secret_mounts(objects, comp)
            assert _value(env, "GRPC_AUTH_PUBLIC_KEYS_FILE") == f"{PUBLIC_KEYS_DIR}/jwks.json", case
            secret, items = mounts[PUBLIC_KEYS_DIR]
            assert items == {"jwks.json": "jwks.json"}, case
            assert secret.endswith("-token-public-keys"), f"{case}: {comp} mounts {secret}"
            assert _value(env, "GRPC_REFLECTION_OPEN") in {"true", "false"}, case
            assert SIGNING_KEY_DIR not in mounts, f"{case}: {comp} mounts the private signing key"


def test_only_the_gateway_holds_the_signing_key(rendered):
    for case, objects in rendered.items():
        env = container_env(objects, "gateway")
        assert _value(env, "GATEWAY_TOKEN_SIGNING_KEY_FILE") == f"{SIGNING_KEY_DIR}/signing-key.pem", case
        assert 30 <= float(_value(env, "GATEWAY_TOKEN_TTL_SECONDS")) <= 3600, case
        secret, items = _secret_mounts(objects, "gateway")[SIGNING_KEY_DIR]
        assert items == {"signing-key.pem": "signing-key.pem"} and secret.endswith("-token-signing-key"), case
        holders = {
            component(w)
            for w in of_kind(objects, "Deployment")
            for v in pod_spec(w).get("volumes", [])
            if v.get("secret", {}).get("secretName") == secret
        }
        assert holders == {"gateway"}, f"{case}: the signing key is mounted into {sorted(holders)}"


def test_default_token_secret_names_are_the_ones_service_keys_prints(rendered):
    """`service_keys --kubernetes <fullname>` prints <fullname>-token-signing-key and
    <fullname>-token-public-keys; the default render (fullname llmsuite) mounts exactly those."""
    objects = rendered["default"]
    assert _secret_mounts(objects, "gateway")[SIGNING_KEY_DIR][0] == "llmsuite-token-signing-key"
    for comp in GRPC_SERVICES:
        assert _secret_mounts(objects, comp)[PUBLIC_KEYS_DIR][0] == "llmsuite-token-public-keys"


def _tls_cases(rendered):
    found = {
        case: objects
        for case, objects in rendered.items()
        if "GRPC_TLS_CERT_FILE" in named(objects, "ConfigMap", "retrieval")["data"]
    }
    assert found, "no values case under ci/ turns grpcTls on"
    return found


def test_tls_is_all_or_nothing_and_each_component_mounts_its_own_secret(rendered):
    for case, objects in rendered.items():
        on = {comp for comp in SERVICES if "GRPC_TLS_CERT_FILE" in container_env(objects, comp)}
        assert on in (set(), set(SERVICES)), f"{case}: TLS on for {sorted(on)} only"
        for comp in on:
            env = container_env(objects, comp)
            for name, file in TLS_FILES.items():
                assert _value(env, name) == f"{TLS_DIR}/{file}", f"{case}: {comp} {name}"
            secret, items = _secret_mounts(objects, comp)[TLS_DIR]
            service = named(objects, "Service", comp)["metadata"]["name"]
            assert secret == f"{service}-tls", f"{case}: {comp} mounts {secret}"
            assert items == {f: f for f in TLS_FILES.values()}, case
            if comp != "gateway":
                assert _value(env, "GRPC_TLS_REQUIRE_CLIENT_CERT") in {"true", "false"}, case


def test_a_values_case_renders_mutual_tls_with_cert_manager(rendered):
    cases = _tls_cases(rendered)
    assert any(
        _value(container_env(objects, "retrieval"), "GRPC_TLS_REQUIRE_CLIENT_CERT") == "true"
        and of_kind(objects, "Certificate")
        for objects in cases.values()
    ), "no values case renders mTLS with cert-manager Certificates"


def test_certificates_validate_and_cover_what_clients_dial(rendered):
    for case, objects in rendered.items():
        certificates = of_kind(objects, "Certificate")
        if not certificates:
            continue
        assert {component(c) for c in certificates} == set(SERVICES), case
        for cert in certificates:
            comp = component(cert)
            error = crds.validate(cert)
            assert error is None, f"{case}: Certificate {cert['metadata']['name']}: {error}"
            spec = cert["spec"]
            secret, _ = _secret_mounts(objects, comp)[TLS_DIR]
            assert spec["secretName"] == secret, f"{case}: {comp} Certificate writes {spec['secretName']}"
            service = named(objects, "Service", comp)["metadata"]["name"]
            namespace = "llmsuite"
            assert spec["dnsNames"][:3] == [
                service,
                f"{service}.{namespace}",
                f"{service}.{namespace}.svc",
            ], case
            if comp != "gateway":
                assert _target_host(objects, comp) in spec["dnsNames"], (
                    f"{case}: {comp} cert lacks the dialled name"
                )
            assert {"server auth", "client auth"} <= set(spec["usages"]), case
            assert spec["issuerRef"]["name"], case


def test_certificate_schema_refuses_unknown_and_misspelt_fields(rendered):
    """The committed CRD schema is strict, as the API server's field validation is."""
    cert = next(c for objects in rendered.values() for c in of_kind(objects, "Certificate"))
    misspelt = {**cert, "spec": {**cert["spec"], "dnsName": cert["spec"]["dnsNames"]}}
    assert "dnsName" in (crds.validate(misspelt) or "")
    bad_usage = {**cert, "spec": {**cert["spec"], "usages": ["server-auth"]}}
    assert crds.validate(bad_usage)


def test_tls_probes_check_health_over_the_pods_own_tls(rendered):
    for case, objects in _tls_cases(rendered).items():
        for comp in GRPC_SERVICES:
            container = pod_spec(named(objects, "Deployment", comp))["containers"][0]
            port = str(container["ports"][0]["containerPort"])
            for probe in ("startupProbe", "readinessProbe"):
                argv = container[probe]["exec"]["command"]
                args = dict(zip(argv[3::2], argv[4::2], strict=True))
                assert args["--port"] == port, f"{case}: {comp} {probe}"
                assert args["--server-name"] == _target_host(objects, comp), f"{case}: {comp} {probe}"
                assert args["--ca-file"] == f"{TLS_DIR}/ca.crt", case
                assert (args["--cert-file"], args["--key-file"]) == (
                    f"{TLS_DIR}/tls.crt",
                    f"{TLS_DIR}/tls.key",
                )
                assert 0 < float(args["--timeout"]) < container[probe]["timeoutSeconds"], case
            assert "tcpSocket" in container["livenessProbe"], case


@pytest.mark.parametrize("comp", GRPC_SERVICES)
def test_services_under_tls_do_not_claim_cleartext_http2(rendered, comp):
    for case, objects in _tls_cases(rendered).items():
        port = named(objects, "Service", comp)["spec"]["ports"][0]
        assert port.get("appProtocol") != "kubernetes.io/h2c", f"{case}: {comp}"


def test_team_namespaces_reach_retrieval_grpc_port_only(rendered):
    seen = False
    for case, objects in rendered.items():
        policy = named(objects, "NetworkPolicy", "retrieval")
        grpc_port = named(objects, "Service", "retrieval")["spec"]["ports"][0]["port"]
        for rule in policy["spec"].get("ingress", []):
            teams = [p for p in rule.get("from", []) if "namespaceSelector" in p and "podSelector" not in p]
            if not teams:
                continue
            seen = True
            assert len(teams) == len(rule["from"]), f"{case}: team peers mixed with others"
            assert [p["port"] for p in rule["ports"]] == [grpc_port], f"{case}: teams reach {rule['ports']}"
            for peer in teams:
                assert set(peer["namespaceSelector"]) == {"matchLabels"}, case
                assert set(peer["namespaceSelector"]["matchLabels"]) == {"kubernetes.io/metadata.name"}, case
        if case == "default":
            assert not any(
                "podSelector" not in p for r in policy["spec"].get("ingress", []) for p in r.get("from", [])
            ), "the default render admits whole namespaces to retrieval"
    assert seen, "no values case under ci/ admits a team namespace"


def test_notes_give_the_commands_for_the_token_secrets(notes, rendered):
    for case, text in notes.items():
        signing = _secret_mounts(rendered[case], "gateway")[SIGNING_KEY_DIR][0]
        public = _secret_mounts(rendered[case], "retrieval")[PUBLIC_KEYS_DIR][0]
        assert "llmsuite_common.service_keys" in text, case
        assert f"create secret generic {signing} --from-file=keys/signing-key.pem" in text, case
        assert f"create secret generic {public} --from-file=keys/jwks.json" in text, case


def test_the_exec_probe_module_ships_in_every_backend_image(rendered, dockerfiles):
    """The probe runs `python -m <module>`; the images install libs/common (test_dockerfiles), so
    the module must live in llmsuite_common."""
    root = Path(__file__).resolve().parents[2]
    for case, objects in _tls_cases(rendered).items():
        for comp in GRPC_SERVICES:
            argv = pod_spec(named(objects, "Deployment", comp))["containers"][0]["readinessProbe"]["exec"][
                "command"
            ]
            module = argv[2]
            assert (root / "libs/common" / (module.replace(".", "/") + ".py")).is_file(), f"{case}: {module}"
            copied = {
                i["value"][0]
                for i in dockerfiles["services/Dockerfile"]
                if i["cmd"] == "COPY" and not i["flags"]
            }
            assert "libs/common" in copied, comp
