"""``python -m tb_service [--host H] [--port P]``"""

from shared.service import run_service
from tb_service.app import create_app
from tb_service.settings import Settings


def main() -> None:
    run_service("tb_service", Settings, create_app, worker_app="tb_service.app:worker_app")


if __name__ == "__main__":
    main()
