"""``python -m gateway [--host H] [--port P]``"""

from gateway.app import create_app
from gateway.settings import load_or_exit
from shared.service import run_service


def main() -> None:
    run_service("gateway", load_or_exit, create_app)


if __name__ == "__main__":
    main()
