"""``python -m dicom_node [--host H] [--port P]``: the HTTP port serves health and metrics;
the DICOM listener is on ``IRMI_DICOM_DICOM_PORT``."""

from dicom_node.app import create_app
from dicom_node.settings import load_or_exit
from shared.service import run_service


def main() -> None:
    run_service("dicom_node", load_or_exit, create_app)


if __name__ == "__main__":
    main()
