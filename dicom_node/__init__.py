"""IRMI's DICOM node: a C-STORE / C-ECHO SCP that hands each received instance to the gateway
(DICOMweb STOW-RS) and answers success only once the gateway has stored it."""

__version__ = "0.1.0"
