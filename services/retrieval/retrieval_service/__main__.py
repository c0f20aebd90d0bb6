from llmsuite_common.grpc_server import run
from llmsuite_common.telemetry import setup_telemetry

from .app import RetrievalApp
from .settings import RetrievalSettings


def main() -> None:
    settings = RetrievalSettings()
    setup_telemetry(settings)
    run(settings, RetrievalApp(settings))


if __name__ == "__main__":
    main()
