"""The exec health probe the chart runs once a service serves TLS (llmsuite_common.grpc_probe)."""

import datetime
import os
import subprocess
import sys
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from llmsuite_common import grpc_probe

SERVICE_NAME = "llmsuite-retrieval.llmsuite.svc.cluster.local"


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _cert(subject: str, issuer_key, issuer: x509.Name, key, *, ca: bool, dns: list[str]) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if dns:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(d) for d in dns]), critical=False
        )
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _pem_key(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory) -> dict[str, Path]:
    """A CA and one certificate for the service, in cert-manager's Secret layout (tls.crt, tls.key, ca.crt)."""
    out = tmp_path_factory.mktemp("tls")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("test CA", ca_key, _name("test CA"), ca_key, ca=True, dns=[])
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _cert("retrieval", ca_key, ca.subject, key, ca=False, dns=["llmsuite-retrieval", SERVICE_NAME])
    files = {"ca": out / "ca.crt", "cert": out / "tls.crt", "key": out / "tls.key"}
    files["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files["key"].write_bytes(_pem_key(key))
    return files


@pytest.fixture(scope="module")
def mtls_server(tls_files):
    """A gRPC server with only a health service that requires a client certificate, like GRPC_TLS_REQUIRE_CLIENT_CERT."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    credentials = grpc.ssl_server_credentials(
        [(tls_files["key"].read_bytes(), tls_files["cert"].read_bytes())],
        root_certificates=tls_files["ca"].read_bytes(),
        require_client_auth=True,
    )
    port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    yield port, servicer
    server.stop(None)


def _args(port: int, files: dict[str, Path], **extra) -> dict:
    return {
        "server_name": SERVICE_NAME,
        "ca_file": str(files["ca"]),
        "cert_file": str(files["cert"]),
        "key_file": str(files["key"]),
        **extra,
    }


def test_reports_the_serving_status_over_mutual_tls(mtls_server, tls_files):
    port, servicer = mtls_server
    servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    assert grpc_probe.check(port, **_args(port, tls_files)) == "NOT_SERVING"
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    assert grpc_probe.check(port, **_args(port, tls_files)) == "SERVING"


def test_fails_without_a_client_certificate_or_for_a_name_the_certificate_lacks(mtls_server, tls_files):
    port, servicer = mtls_server
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    with pytest.raises(grpc.RpcError):
        grpc_probe.check(port, **_args(port, tls_files, cert_file="", key_file=""))
    with pytest.raises(grpc.RpcError):
        grpc_probe.check(port, **_args(port, tls_files, server_name="someone-else.example.test"))
    with pytest.raises(grpc.RpcError):
        grpc_probe.check(port, plaintext=True)


def test_command_line_exit_code_follows_the_status(mtls_server, tls_files):
    """What the kubelet runs: `python -m llmsuite_common.grpc_probe` where the package is installed, as in
    the images; files from GRPC_TLS_*."""
    port, servicer = mtls_server
    env = {
        **os.environ,
        "GRPC_TLS_CA_FILE": str(tls_files["ca"]),
        "GRPC_TLS_CERT_FILE": str(tls_files["cert"]),
        "GRPC_TLS_KEY_FILE": str(tls_files["key"]),
    }
    argv = [
        sys.executable,
        "-m",
        "llmsuite_common.grpc_probe",
        "--port",
        str(port),
        "--server-name",
        SERVICE_NAME,
    ]

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30, check=False)

    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    done = run()
    assert (done.returncode, done.stdout.strip()) == (0, "SERVING"), done.stderr
    servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    done = run()
    assert (done.returncode, done.stdout.strip()) == (1, "NOT_SERVING"), done.stderr
