"""The DICOM listener (pynetdicom): C-ECHO, and C-STORE of the image storage SOP classes, each
instance handed to the gateway before it is acknowledged (:mod:`dicom_node.forward`). Callers
are limited by AE title (``allowed_ae_titles``: others are rejected at association) and by
address (``allowed_hosts``: others are aborted on connection)."""

from __future__ import annotations

import logging
from typing import Any

from prometheus_client import CollectorRegistry, Counter
from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from dicom_node.forward import Forwarder
from dicom_node.settings import Settings

log = logging.getLogger("irmi.dicom_node")


class Listener:
    """The SCP server, started in its own threads and stopped with the service."""

    def __init__(
        self, settings: Settings, forwarder: Forwarder, registry: CollectorRegistry | None = None
    ) -> None:
        self.settings, self.forwarder = settings, forwarder
        self.server: Any = None
        self.instances = Counter(
            "irmi_dicom_instances_total",
            "C-STORE requests answered, by outcome (stored: success; else the status in hex).",
            ["outcome"],
            registry=registry,
        )

    def _ae(self) -> AE:
        s = self.settings
        ae = AE(ae_title=s.ae_title)
        ae.maximum_associations = s.max_associations
        ae.dimse_timeout = ae.network_timeout = ae.acse_timeout = s.dimse_timeout_s
        ae.require_called_aet = True  # the caller must address this node by its AE title
        if s.allowed_ae_titles:
            ae.require_calling_aet = list(s.allowed_ae_titles)
        ae.supported_contexts = AllStoragePresentationContexts
        ae.add_supported_context(Verification)
        return ae

    def _on_open(self, event: Any) -> None:
        allowed = self.settings.allowed_hosts
        address = event.address[0] if event.address else ""
        if allowed and address not in allowed:
            log.warning("connection refused: host not allowed", extra={"peer": address})
            event.assoc.abort()

    def _on_echo(self, event: Any) -> int:
        return 0x0000

    def _on_store(self, event: Any) -> int:
        calling = str(event.assoc.requestor.ae_title).strip()
        data = event.encoded_dataset(include_meta=True)
        status = self.forwarder.store(bytes(data), calling)
        self.instances.labels("stored" if status == 0 else f"0x{status:04X}").inc()
        return status

    def start(self) -> None:
        s = self.settings
        handlers: list[Any] = [
            (evt.EVT_CONN_OPEN, self._on_open),
            (evt.EVT_C_ECHO, self._on_echo),
            (evt.EVT_C_STORE, self._on_store),
        ]
        self.server = self._ae().start_server(
            (s.dicom_host, s.dicom_port), block=False, evt_handlers=handlers
        )
        log.info("DICOM listener up", extra={"ae_title": s.ae_title, "port": s.dicom_port})

    @property
    def listening(self) -> bool:
        return self.server is not None

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server = None
