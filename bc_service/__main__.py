"""``python -m bc_service [--host H] [--port P]``"""

from bc_service.app import create_app
from bc_service.settings import Settings
from shared.service import run_service


def main() -> None:
    run_service("bc_service", Settings, create_app)


if __name__ == "__main__":
    main()
