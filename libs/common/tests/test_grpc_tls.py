"""gRPC over TLS and mutual TLS, from PEM files as the chart mounts them, on loopback."""

import datetime
import ipaddress
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from llmsuite_common.grpc_client import BALANCER_HEALTH_SERVICE, channel
from llmsuite_common.grpc_tls import channel_credentials, server_credentials
from llmsuite_common.settings import ServiceSettings


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _write(path: Path, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> tuple[str, str]:
    key_path, cert_path = path.with_suffix(".key"), path.with_suffix(".crt")
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return str(cert_path), str(key_path)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A CA, a server certificate for localhost/127.0.0.1 and a client certificate, both CA-signed."""
    d = tmp_path_factory.mktemp("pki")
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("llmsuite test CA"))
        .issuer_name(_name("llmsuite test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    out = {"ca": _write(d / "ca", ca_key, ca)[0]}
    for role in ("server", "client"):
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(f"llmsuite test {role}"))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
        )
        out[f"{role}_cert"], out[f"{role}_key"] = _write(d / role, key, builder.sign(ca_key, hashes.SHA256()))
    return out


async def _serve(settings: ServiceSettings) -> tuple[grpc.aio.Server, int]:
    server = grpc.aio.server()
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    await servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    await servicer.set(BALANCER_HEALTH_SERVICE, health_pb2.HealthCheckResponse.SERVING)
    credentials = server_credentials(settings)
    assert credentials is not None
    port = server.add_secure_port("127.0.0.1:0", credentials)
    await server.start()
    return server, port


async def _check(target: str, credentials: grpc.ChannelCredentials | None) -> grpc.StatusCode:
    ch = channel(target, credentials=credentials)
    try:
        await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=3)
        return grpc.StatusCode.OK
    except grpc.aio.AioRpcError as err:
        return err.code()
    finally:
        await ch.close()


async def test_tls_server_answers_only_clients_that_trust_its_ca(pki):
    settings = ServiceSettings(grpc_tls_cert_file=pki["server_cert"], grpc_tls_key_file=pki["server_key"])
    server, port = await _serve(settings)
    try:
        target = f"localhost:{port}"
        assert await _check(target, channel_credentials(pki["ca"])) == grpc.StatusCode.OK
        assert await _check(target, None) == grpc.StatusCode.UNAVAILABLE  # plaintext is not spoken
        # A CA that did not sign the server's certificate.
        assert await _check(target, channel_credentials(pki["client_cert"])) == grpc.StatusCode.UNAVAILABLE
    finally:
        await server.stop(None)


async def test_mutual_tls_refuses_clients_without_a_certificate(pki):
    settings = ServiceSettings(
        grpc_tls_cert_file=pki["server_cert"],
        grpc_tls_key_file=pki["server_key"],
        grpc_tls_ca_file=pki["ca"],
        grpc_tls_require_client_cert=True,
    )
    server, port = await _serve(settings)
    try:
        target = f"localhost:{port}"
        assert await _check(target, channel_credentials(pki["ca"])) == grpc.StatusCode.UNAVAILABLE
        with_cert = channel_credentials(pki["ca"], pki["client_cert"], pki["client_key"])
        assert await _check(target, with_cert) == grpc.StatusCode.OK
    finally:
        await server.stop(None)


def test_mutual_tls_without_a_ca_is_a_configuration_error(pki):
    settings = ServiceSettings(
        grpc_tls_cert_file=pki["server_cert"],
        grpc_tls_key_file=pki["server_key"],
        grpc_tls_require_client_cert=True,
    )
    with pytest.raises(ValueError, match="GRPC_TLS_CA_FILE"):
        server_credentials(settings)
