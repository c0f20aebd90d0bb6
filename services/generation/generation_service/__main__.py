from llmsuite_common.grpc_server import run
from llmsuite_common.telemetry import setup_telemetry

from .app import GenerationApp
from .settings import GenerationSettings


def main() -> None:
    settings = GenerationSettings()
    setup_telemetry(settings)
    run(settings, GenerationApp(settings))


if __name__ == "__main__":
    main()
