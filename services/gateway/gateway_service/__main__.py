from .server import serve
from .settings import GatewaySettings
from .telemetry import setup_gateway_telemetry


def main() -> None:
    settings = GatewaySettings()
    setup_gateway_telemetry(settings)
    serve(settings)


if __name__ == "__main__":
    main()
