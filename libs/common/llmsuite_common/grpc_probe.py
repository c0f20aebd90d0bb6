"""Health probe of a gRPC service that serves TLS: `python -m llmsuite_common.grpc_probe`.

The kubelet's native gRPC probe speaks plaintext only, so once a service serves TLS (GRPC_TLS_*)
the chart runs this as an exec probe instead: one grpc.health.v1 Check on the pod's own port, over
the same TLS, presenting the pod's own certificate when one is given (mTLS), and verifying the
server certificate for the name clients dial (`--server-name`). It exits 0 when the service reports
SERVING and 1 otherwise (NOT_SERVING while loading or draining, refused, handshake failed, no
answer in time), which is what the native probe decides on.

The file paths default to the service's own settings variables (GRPC_TLS_CA_FILE,
GRPC_TLS_CERT_FILE, GRPC_TLS_KEY_FILE, PORT). Only grpc is imported, not the settings classes: a
probe starts a fresh interpreter every period, so it stays as small as it can.
"""

import argparse
import os
import sys
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def _credentials(ca_file: str, cert_file: str, key_file: str) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        root_certificates=Path(ca_file).read_bytes() if ca_file else None,
        private_key=Path(key_file).read_bytes() if cert_file else None,
        certificate_chain=Path(cert_file).read_bytes() if cert_file else None,
    )


def check(
    port: int,
    *,
    host: str = "127.0.0.1",
    server_name: str = "",
    ca_file: str = "",
    cert_file: str = "",
    key_file: str = "",
    service: str = "",
    timeout: float = 1.0,
    plaintext: bool = False,
) -> str:
    """The serving status's name (SERVING, NOT_SERVING, ...); raises grpc.RpcError when none came."""
    target = f"{host}:{port}"
    if plaintext:
        channel = grpc.insecure_channel(target)
    else:
        # The certificate names the Service, not 127.0.0.1: verify it for the name clients dial.
        options = [("grpc.ssl_target_name_override", server_name)] if server_name else []
        channel = grpc.secure_channel(target, _credentials(ca_file, cert_file, key_file), options=options)
    with channel:
        response = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=timeout
        )
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))


def main(argv: list[str] | None = None) -> int:
    env = os.environ
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, default=int(env.get("PORT", "0") or 0))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--server-name", default="", help="name the server certificate must carry")
    parser.add_argument("--ca-file", default=env.get("GRPC_TLS_CA_FILE", ""))
    parser.add_argument("--cert-file", default=env.get("GRPC_TLS_CERT_FILE", ""))
    parser.add_argument("--key-file", default=env.get("GRPC_TLS_KEY_FILE", ""))
    parser.add_argument("--service", default="", help="health service name; empty is the whole server")
    parser.add_argument("--timeout", type=float, default=1.0, help="seconds to wait for the answer")
    parser.add_argument("--plaintext", action="store_true", help="no TLS (for a service without GRPC_TLS_*)")
    args = parser.parse_args(argv)
    if not args.port:
        parser.error("--port (or PORT) is required")
    try:
        status = check(
            args.port,
            host=args.host,
            server_name=args.server_name,
            ca_file=args.ca_file,
            cert_file=args.cert_file,
            key_file=args.key_file,
            service=args.service,
            timeout=args.timeout,
            plaintext=args.plaintext,
        )
    except grpc.RpcError as exc:
        print(f"health check failed: {exc.code().name}: {exc.details()}")
        return 1
    except OSError as exc:  # an unreadable certificate or key file
        print(f"health check failed: {exc}")
        return 1
    print(status)
    return 0 if status == "SERVING" else 1


if __name__ == "__main__":
    sys.exit(main())
