"""TLS (and mutual TLS) for gRPC servers and channels, from mounted PEM files.

One certificate per service serves as its server certificate and, on its outbound calls, as its
client certificate; one CA file verifies the peers. With no certificate configured, servers and
channels are plaintext (the default for loopback and meshes that encrypt for you).
"""

from pathlib import Path

import grpc

from .settings import ServiceSettings


def _read(path: str) -> bytes:
    return Path(path).read_bytes()


def server_credentials(settings: ServiceSettings) -> grpc.ServerCredentials | None:
    if not settings.grpc_tls_cert_file:
        return None
    pair = [(_read(settings.grpc_tls_key_file), _read(settings.grpc_tls_cert_file))]
    if settings.grpc_tls_require_client_cert:
        if not settings.grpc_tls_ca_file:
            raise ValueError(
                "GRPC_TLS_REQUIRE_CLIENT_CERT needs GRPC_TLS_CA_FILE to verify client certificates"
            )
        return grpc.ssl_server_credentials(
            pair, root_certificates=_read(settings.grpc_tls_ca_file), require_client_auth=True
        )
    return grpc.ssl_server_credentials(pair)


def channel_credentials(
    ca_file: str = "", cert_file: str = "", key_file: str = ""
) -> grpc.ChannelCredentials | None:
    """Credentials for a TLS channel when a CA is given (the client certificate only with one)."""
    if not ca_file:
        return None
    return grpc.ssl_channel_credentials(
        root_certificates=_read(ca_file),
        private_key=_read(key_file) if cert_file else None,
        certificate_chain=_read(cert_file) if cert_file else None,
    )


def settings_channel_credentials(settings: ServiceSettings) -> grpc.ChannelCredentials | None:
    return channel_credentials(
        settings.grpc_tls_ca_file, settings.grpc_tls_cert_file, settings.grpc_tls_key_file
    )
