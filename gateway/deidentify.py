"""What leaves the clinical record: metadata stripped from uploads, identity removed from the
copies sent to the inference services.

- JPEG: the APP/COM segments that carry EXIF (camera, GPS position, dates), XMP, IPTC and
  comments are dropped before the image is stored or forwarded; the compressed image data is
  copied byte for byte (no re-encoding). Colour information (JFIF, ICC profile, Adobe) stays.
- PNG: the text, EXIF and time chunks are dropped the same way; image chunks stay as they are.
- DICOM: the stored original keeps the patient's identity; :func:`deidentify_dicom` gives the
  copy for tb_service and bc_service, with the direct identifiers of DICOM PS3.15 Annex E
  (Basic Application Level Confidentiality Profile) removed: every person name, the patient's
  IDs, birth date, address and telephone, institution, accession number, private tags, and
  the same inside sequences. Study, Series and SOP Instance UIDs are kept, so a result still
  refers to the images it was computed on; PatientIdentityRemoved is set to YES.
"""

from __future__ import annotations

import io
import struct

from shared.errors import InvalidImage

# --------------------------------------------------------------------------- JPEG
_KEEP_APP = {0xE0, 0xEE}  # APP0 JFIF/JFXX, APP14 Adobe (colour transform)
_STANDALONE = {0x01, *range(0xD0, 0xD8)}  # TEM, RSTn: no length field


def strip_jpeg_metadata(data: bytes) -> bytes:
    """The JPEG without its metadata segments (EXIF, XMP, IPTC, comments). Stops at the first
    scan (SOS), after which the compressed data is copied as it is."""
    if not data.startswith(b"\xff\xd8"):
        return data
    out = bytearray(data[:2])
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return data  # not a well-formed segment list: leave it to the decoder to refuse
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in _STANDALONE:
            out += data[i : i + 2]
            i += 2
            continue
        if marker in {0xDA, 0xD9}:  # start of scan / end of image: the rest is image data
            out += data[i:]
            return bytes(out)
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        end = i + 2 + length
        if length < 2 or end > len(data):
            return data
        segment = data[i:end]
        drop = marker == 0xFE or (0xE0 <= marker <= 0xEF and marker not in _KEEP_APP)
        if marker == 0xE2 and segment[4:16] == b"ICC_PROFILE\0":
            drop = False  # colour profile: needed to show the image right, identifies no one
        if not drop:
            out += segment
        i = end
    return data


# --------------------------------------------------------------------------- PNG
_PNG_SIG = b"\x89PNG\r\n\x1a\n"
_PNG_DROP = {b"tEXt", b"zTXt", b"iTXt", b"eXIf", b"tIME"}


def strip_png_metadata(data: bytes) -> bytes:
    """The PNG without text, EXIF and time chunks; everything else byte for byte."""
    if not data.startswith(_PNG_SIG):
        return data
    out = bytearray(_PNG_SIG)
    i = len(_PNG_SIG)
    while i + 8 <= len(data):
        (length,) = struct.unpack(">I", data[i : i + 4])
        kind = data[i + 4 : i + 8]
        end = i + 12 + length
        if end > len(data):
            return data
        if kind not in _PNG_DROP:
            out += data[i:end]
        i = end
        if kind == b"IEND":
            out += data[i:]  # bytes after IEND (ignored by decoders) stay as they came
            return bytes(out)
    return data


# --------------------------------------------------------------------------- DICOM
# Direct identifiers (PS3.15 Table E.1-1, Basic Profile: D/Z/X/U actions that are not UIDs).
# Every PN (person name) element goes as well, wherever it is.
_DICOM_REMOVE = {
    0x00080050,  # AccessionNumber
    0x00080080,  # InstitutionName
    0x00080081,  # InstitutionAddress
    0x00080092,  # ReferringPhysicianAddress
    0x00080094,  # ReferringPhysicianTelephoneNumbers
    0x00081010,  # StationName
    0x00081040,  # InstitutionalDepartmentName
    0x00081048,  # PhysiciansOfRecord
    0x00081049,  # PhysiciansOfRecordIdentificationSequence
    0x00081052,  # PerformingPhysicianIdentificationSequence
    0x00081062,  # PhysiciansReadingStudyIdentificationSequence
    0x00081072,  # OperatorIdentificationSequence
    0x00100020,  # PatientID
    0x00100021,  # IssuerOfPatientID
    0x00100030,  # PatientBirthDate
    0x00100032,  # PatientBirthTime
    0x00100050,  # PatientInsurancePlanCodeSequence
    0x00101000,  # OtherPatientIDs
    0x00101001,  # OtherPatientNames
    0x00101002,  # OtherPatientIDsSequence
    0x00101005,  # PatientBirthName
    0x00101040,  # PatientAddress
    0x00101060,  # PatientMotherBirthName
    0x00101080,  # MilitaryRank
    0x00101090,  # MedicalRecordLocator
    0x00102154,  # PatientTelephoneNumbers
    0x00102155,  # PatientTelecomInformation
    0x00104000,  # PatientComments
    0x00181000,  # DeviceSerialNumber
    0x00200010,  # StudyID
    0x00321032,  # RequestingPhysician
    0x00321060,  # RequestedProcedureDescription
    0x00380010,  # AdmissionID
    0x00380300,  # CurrentPatientLocation
    0x00380400,  # PatientInstitutionResidence
    0x00400275,  # RequestAttributesSequence
    0x00401001,  # RequestedProcedureID
    0x00402016,  # PlacerOrderNumberImagingServiceRequest
    0x00402017,  # FillerOrderNumberImagingServiceRequest
    0x00400006,  # ScheduledPerformingPhysicianName
    0x00400253,  # PerformedProcedureStepID
    0x00401010,  # NamesOfIntendedRecipientsOfResults
    0x0040A123,  # PersonName
}
METHOD = "IRMI gateway: PS3.15 E.1 direct identifiers removed, UIDs kept"


def deidentify_dicom(data: bytes) -> bytes:
    """A copy of the DICOM file without the patient's (and staff's) direct identifiers."""
    import pydicom
    from pydicom.dataelem import DataElement
    from pydicom.dataset import Dataset

    try:
        ds = pydicom.dcmread(io.BytesIO(data))
    except Exception as exc:
        raise InvalidImage(
            "The DICOM file is corrupt.", details={"reason": "corrupt_dicom"}
        ) from exc

    def scrub(dataset: Dataset, elem: DataElement) -> None:
        if elem.tag.is_private or int(elem.tag) in _DICOM_REMOVE or elem.VR == "PN":
            del dataset[elem.tag]

    ds.walk(scrub)
    ds.PatientName = ""  # type 2 in most IODs: present, empty
    ds.PatientID = ""
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = METHOD
    out = io.BytesIO()
    try:
        ds.save_as(out, enforce_file_format=False)
    except Exception as exc:
        raise InvalidImage(
            "The DICOM file could not be rewritten.", details={"reason": "corrupt_dicom"}
        ) from exc
    return out.getvalue()


# --------------------------------------------------------------------------- entry points
def for_storage(data: bytes, media_type: str) -> bytes:
    """What the image store keeps of an upload: JPEG/PNG without metadata; DICOM as uploaded
    (the clinical record keeps the patient's identity)."""
    if media_type == "image/jpeg":
        return strip_jpeg_metadata(data)
    if media_type == "image/png":
        return strip_png_metadata(data)
    return data


def for_inference(data: bytes, media_type: str) -> bytes:
    """What an inference service receives: the stored image, de-identified."""
    if media_type == "application/dicom":
        return deidentify_dicom(data)
    return for_storage(data, media_type)
