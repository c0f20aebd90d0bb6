from llmsuite_common.grpc_server import run
from llmsuite_common.telemetry import setup_telemetry

from .app import GuardrailsApp
from .settings import GuardrailsSettings


def main() -> None:
    settings = GuardrailsSettings()
    setup_telemetry(settings)
    run(settings, GuardrailsApp(settings))


if __name__ == "__main__":
    main()
