"""The PDF report of a finished study (fpdf2): the patient's name as entered, the study date,
each image with and without its overlay, the result in the words the UI uses for this reader
(:mod:`gateway.wording`: patients read the category in words; doctors also the score, the
operating point with its measured sensitivity and specificity, the reliability and the model
hashes), the model versions, the doctors' replies the reader may read and the screening-aid
statement. Built from a :class:`gateway.study_record.StudyRecord`; pure and synchronous (run it
off the event loop).

Text is set in DejaVu Sans when the system has it (any name as entered), else in the PDF core
font Helvetica, whose Latin-1 range covers most Latin names (other characters print as "?").
"""

from __future__ import annotations

import io
from datetime import datetime
from pathlib import Path

from fpdf import FPDF
from fpdf.enums import XPos, YPos

from gateway import wording
from gateway.study_record import Picture, StudyRecord
from shared.contracts.screening import Category, OperatingPoint, Rate

FONT_CANDIDATES = (
    Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),
    Path("/usr/share/fonts/dejavu/DejaVuSans.ttf"),
)
DASH = "\u2013"
#: What the operating point's rates were counted on, per study kind.
RATE_WORDS = {
    "chest": ("abnormal", "normal", "films"),
    "mammography": ("malignant", "other", "views"),
}


def _font() -> tuple[Path, Path] | None:
    for regular in FONT_CANDIDATES:
        bold = regular.with_name("DejaVuSans-Bold.ttf")
        if regular.exists() and bold.exists():
            return regular, bold
    return None


def pct(v: float) -> str:
    return f"{v * 100:.1f}%"


def rate_text(name: str, rate: Rate, what: str, unit: str) -> str:
    lo, hi = rate.ci95
    return (
        f"{name}: {pct(rate.value)} (95% CI {pct(lo)}{DASH}{pct(hi)}, n = {rate.n} {what} {unit})"
    )


def date_text(at: datetime | None) -> str:
    return at.strftime("%d %B %Y, %H:%M UTC") if at else ""


class _Doc(FPDF):
    def __init__(self, footer_text: str) -> None:
        super().__init__(format="A4", unit="mm")
        self.footer_text = footer_text
        fonts = _font()
        self.unicode = fonts is not None
        if fonts is not None:
            self.add_font("Body", "", str(fonts[0]))
            self.add_font("Body", "B", str(fonts[1]))
            self.family_name = "Body"
        else:
            self.family_name = "Helvetica"
        self.set_auto_page_break(auto=True, margin=18)
        self.set_margins(16, 16, 16)

    def text_of(self, text: str) -> str:
        if self.unicode:
            return text
        return text.encode("latin-1", "replace").decode("latin-1")

    def footer(self) -> None:
        self.set_y(-12)
        self.set_font(self.family_name, "", 8)
        self.set_text_color(90, 90, 90)
        self.cell(0, 5, self.text_of(f"{self.footer_text}  \u00b7  page {self.page_no()}/{{nb}}"))

    def heading(self, text: str, size: float = 13) -> None:
        self.ln(2)
        self.set_font(self.family_name, "B", size)
        self.set_text_color(20, 20, 20)
        self.multi_cell(
            0, size * 0.5, self.text_of(text), align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT
        )
        self.ln(1)

    def para(self, text: str, size: float = 10, bold: bool = False) -> None:
        self.set_font(self.family_name, "B" if bold else "", size)
        self.set_text_color(20, 20, 20)
        self.multi_cell(
            0, size * 0.5, self.text_of(text), align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT
        )
        self.ln(0.8)

    def fact(self, key: str, value: str) -> None:
        self.set_font(self.family_name, "B", 10)
        self.cell(42, 5.5, self.text_of(key))
        self.set_font(self.family_name, "", 10)
        self.multi_cell(0, 5.5, self.text_of(value), align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)


def _operating_point(
    doc: _Doc, kind: str, point: OperatingPoint | None, threshold: float | None
) -> None:
    doc.heading("Operating point", 11)
    if point is None:
        if threshold is not None:
            doc.para(f"Score \u2265 {threshold:.1f} / 100 recommends review.")
        doc.para(
            "Stored before operating points: no sensitivity or specificity was recorded with "
            "this result."
        )
        return
    positives, negatives, unit = RATE_WORDS.get(kind, RATE_WORDS["chest"])
    source = (
        f"this site's point{f' (validation run {point.run_id})' if point.run_id else ''}"
        if point.source == "site"
        else "the model card's point"
    )
    doc.para(
        f"Score \u2265 {point.score_threshold:.1f} / 100 recommends review: {source}, "
        f"{point.model.name} version {point.model.version}."
    )
    doc.para(rate_text("Sensitivity", point.sensitivity, positives, unit))
    doc.para(rate_text("Specificity", point.specificity, negatives, unit))
    doc.para(f"Measured on: {point.measured_on or 'not stated'}", size=9)


def _pictures(doc: _Doc, pictures: list[Picture], reader: wording.Reader) -> None:
    if not pictures:
        return
    if doc.get_y() > doc.h - 120:  # the heading with its first pair of images
        doc.add_page()
    doc.heading("Images")
    gap = 6.0
    col = (doc.w - doc.l_margin - doc.r_margin - gap) / 2
    for pic in pictures:
        if doc.get_y() > doc.h - 110:
            doc.add_page()
        doc.para(pic.title, bold=True)
        top = doc.get_y()
        heights = []
        for i, (label, png) in enumerate(
            (("Image", pic.display), (wording.LOOKED[reader], pic.overlaid))
        ):
            x = doc.l_margin + i * (col + gap)
            doc.set_xy(x, top)
            doc.set_font(doc.family_name, "", 9)
            doc.cell(col, 5, doc.text_of(label if png is not None else f"{label}: none"))
            if png is None:
                heights.append(5.0)
                continue
            info = doc.image(io.BytesIO(png), x=x, y=top + 6, w=col, h=0, keep_aspect_ratio=True)
            heights.append(6 + float(info.rendered_height))
        doc.set_xy(doc.l_margin, top + max(heights) + 2)
        if pic.overlaid is not None:
            doc.para(wording.OVERLAY_NOTE[reader], size=8.5)


def build_pdf(record: StudyRecord) -> bytes:
    """The report as PDF bytes."""
    study, r, reader = record.study, record.reading, record.reader
    kind = wording.KIND_NAME.get(study.kind, study.kind)
    doc = _Doc(f"IRMI study report \u00b7 study {study.id} \u00b7 {wording.DISCLAIMER_LEAD}")
    doc.set_title(f"IRMI {kind} study report")
    doc.set_creator("IRMI gateway")
    doc.alias_nb_pages()
    doc.add_page()
    doc.heading(f"IRMI {kind} study report", 16)
    doc.fact("Patient", record.patient_name)
    doc.fact("Study date", date_text(study.created_at))
    doc.fact("Analysed", date_text(study.finished_at))
    doc.fact("Study ID", study.id)
    doc.fact("Written for", "the patient" if reader == "patient" else "a doctor")

    doc.heading("Result")
    doc.para(wording.headline(r.category, reader), size=13, bold=True)
    if meaning := wording.explanation(r.category, study.kind, reader):
        doc.para(meaning)
    if r.parts:
        for part in r.parts:
            words = wording.headline(part.category, reader)
            score = (
                f" (score {part.score:.1f} / 100)"
                if reader == "doctor" and part.score is not None
                else ""
            )
            doc.fact(part.label, f"{words}{score}")
    if reader == "doctor":
        if r.score is not None:
            threshold = (
                f" (operating threshold {r.threshold:.1f})" if r.threshold is not None else ""
            )
            doc.fact("Score", f"{r.score:.1f} / 100{threshold}")
        if r.category == Category.review_recommended and r.findings:
            # As on screen: what a flagged film's models support, for doctors.
            doc.heading("Findings", 11)
            for f in r.findings:
                subtypes = ", ".join(f"{k} {pct(v)}" for k, v in f.subtypes.items())
                note = f" {f.note}" if f.note else ""
                doc.para(
                    f"{f.name.capitalize()}: {pct(f.probability)}"
                    + (f" ({subtypes})" if subtypes else "")
                    + note
                )
        _operating_point(doc, study.kind, r.operating_point, r.threshold)
        if study.kind == "chest":
            doc.heading("Reliability for this image", 11)
            if r.reliability_reasons:
                doc.para(
                    "Outside the validated population: the score is not trusted for this image, "
                    "so review is recommended whatever it is. Reasons: "
                    + "; ".join(wording.REASONS.get(x, x) for x in r.reliability_reasons)
                    + "."
                )
            else:
                doc.para("No reason found to distrust the score for this image.")

    doc.heading("Models", 11)
    for m in r.models:
        sha = f" (sha256 {m.sha256})" if reader == "doctor" else ""
        doc.para(f"{m.name} version {m.version}{sha}", size=9.5)
    if not r.models:
        doc.para("No model is recorded for this result.", size=9.5)

    if record.replies:
        doc.heading("Doctor's reply" if len(record.replies) == 1 else "Doctors' replies", 11)
        for reply in record.replies:
            who = reply.doctor + (
                f" ({reply.specialty.replace('_', ' ')})" if reply.specialty else ""
            )
            doc.para(f"{who}, {date_text(reply.answered_at)}:", bold=True, size=9.5)
            doc.para(reply.answer)

    doc.heading("Screening aid, not a diagnosis", 11)
    doc.para(wording.SCREENING_AID, bold=True)
    doc.para(wording.disclaimer(r.disclaimer))

    _pictures(doc, record.pictures, reader)
    return bytes(doc.output())
