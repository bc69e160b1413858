"""``python -m gateway [--host H] [--port P]``"""

from gateway.app import create_app
from gateway.settings import Settings
from shared.service import run_service


def main() -> None:
    run_service("gateway", Settings, create_app)


if __name__ == "__main__":
    main()
