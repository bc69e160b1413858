"""A validation report as a PDF (fpdf2): what the JSON report says, for a file or a meeting.
Core fonts only (latin-1): text is reduced to it."""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fpdf import FPDF


def _t(text: object) -> str:
    return str(text).encode("latin-1", "replace").decode("latin-1")


def _est(e: dict[str, Any] | None) -> str:
    if not e or e.get("value") is None or e["value"] != e["value"]:
        return "-"
    return f"{e['value']:.3f} ({e['ci_low']:.3f}-{e['ci_high']:.3f})"


def _para(pdf: FPDF, text: str, size: int = 9) -> None:
    pdf.set_font("Helvetica", size=size)
    pdf.multi_cell(0, 5, _t(text), new_x="LMARGIN", new_y="NEXT")


def _heading(pdf: FPDF, text: str) -> None:
    pdf.ln(2)
    pdf.set_font("Helvetica", "B", 12)
    pdf.cell(0, 7, _t(text), new_x="LMARGIN", new_y="NEXT")


def _row(pdf: FPDF, cells: list[str], widths: list[int], bold: bool = False) -> None:
    pdf.set_font("Helvetica", "B" if bold else "", 8)
    for text, w in zip(cells, widths, strict=True):
        pdf.cell(w, 5, _t(text), border=1)
    pdf.ln()


def _points(pdf: FPDF, rows: list[tuple[str, dict[str, Any]]]) -> None:
    widths = [34, 16, 35, 35, 35, 35]
    _row(pdf, ["point", "threshold", "sensitivity", "specificity", "PPV", "NPV"], widths, True)
    for name, f in rows:
        _row(
            pdf,
            [
                name,
                f"{f['score_threshold']:.2f}",
                _est(f["sensitivity"]),
                _est(f["specificity"]),
                _est(f["ppv"]),
                _est(f["npv"]),
            ],
            widths,
        )


def _roc(pdf: FPDF, roc: dict[str, list[float]]) -> None:
    x0, y0, side = pdf.get_x() + 10, pdf.get_y() + 2, 60
    pdf.set_draw_color(160, 160, 160)
    pdf.rect(x0, y0, side, side)
    pdf.line(x0, y0 + side, x0 + side, y0)
    pdf.set_draw_color(20, 60, 160)
    pts = list(zip(roc["fpr"], roc["tpr"], strict=True))
    for (a, b), (c, d) in itertools.pairwise(pts):
        pdf.line(x0 + a * side, y0 + side - b * side, x0 + c * side, y0 + side - d * side)
    pdf.set_draw_color(0, 0, 0)
    pdf.set_xy(x0, y0 + side + 1)
    pdf.set_font("Helvetica", size=7)
    pdf.cell(side, 4, "false positive rate (x) / sensitivity (y)")
    pdf.ln(6)


def report_pdf(name: str, report: dict[str, Any]) -> bytes:
    # fpdf (and the fontTools under it) takes a third of a second to import: loaded by the
    # first report, in its worker thread, rather than at every gateway start-up.
    from fpdf import FPDF

    pdf = FPDF(format="A4")
    pdf.set_auto_page_break(True, 15)
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 15)
    pdf.cell(0, 9, _t(f"IRMI site validation: {name}"), new_x="LMARGIN", new_y="NEXT")
    model = report.get("model") or {}
    _para(
        pdf,
        f"Run {report.get('run_id')} - {report.get('modality')}, target "
        f"'{report.get('target')}' - model {model.get('name')} {model.get('version')} "
        f"(sha256 {str(model.get('sha256', ''))[:16]}) - generated {report.get('generated_at')}",
    )
    if report.get("warnings"):
        _heading(pdf, "Warnings")
        for w in report["warnings"]:
            _para(pdf, f"- {w}")
    overall = report.get("overall")
    if overall:
        _heading(pdf, "Films")
        _para(
            pdf,
            f"{overall['n']} scored: {overall['positives']} positive, {overall['negatives']} "
            f"negative. AUC {_est(overall.get('auc'))}. Flagged outside the validated "
            f"population: {_est(overall.get('outside_population'))}.",
        )
        _heading(pdf, "Operating points (95% CIs)")
        cur = report.get("current_point") or {}
        rows = [(f"current ({cur.get('source', 'card')})", overall["current"])]
        rows += [(c["name"] + " *", c) for c in report.get("candidates") or []]
        _points(pdf, rows)
        for c in report.get("candidates") or []:
            lo, hi = c["threshold_ci95"]
            _para(
                pdf,
                f"* {c['name']}: threshold interval {lo:.2f}-{hi:.2f} over resamples; "
                f"out-of-bag sensitivity {c.get('out_of_bag_sensitivity')}.",
                8,
            )
    if report.get("roc"):
        _heading(pdf, "ROC curve")
        _roc(pdf, report["roc"])
    cal = report.get("calibration")
    if cal:
        _heading(pdf, f"Calibration (ECE {cal['ece']:.3f})")
        widths = [40, 40, 40, 20]
        _row(pdf, ["bin", "mean predicted", "observed", "n"], widths, True)
        for b in cal["bins"]:
            cells = [f"{b['lo']:.1f}-{b['hi']:.1f}", f"{b['conf']:.3f}", f"{b['freq']:.3f}"]
            _row(pdf, [*cells, str(b["n"])], widths)
    subgroups = report.get("subgroups") or {}
    if subgroups:
        _heading(pdf, "Subgroups (at the current point)")
        widths = [30, 30, 14, 14, 38, 38, 26]
        head = ["column", "value", "n", "pos", "AUC", "sensitivity", "outside"]
        _row(pdf, head, widths, True)
        for col, values in subgroups.items():
            for value, g in values.items():
                cur = g.get("current") or {}
                _row(
                    pdf,
                    [
                        col,
                        value,
                        str(g["n"]),
                        str(g["positives"]),
                        _est(g.get("auc")),
                        _est(cur.get("sensitivity")),
                        f"{g['outside_population']['value']:.2f}",
                    ],
                    widths,
                )
    _heading(pdf, "Notes")
    for note in report.get("notes") or []:
        _para(pdf, note)
    return bytes(pdf.output())
