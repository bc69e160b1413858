"""Site validation: an admin measures a model on the site's own labelled films (a validation
run), reads the report, and adopts a site operating point from it.

- :mod:`~gateway.validation.tables`: the runs, their images and the site points (ORM).
- :mod:`~gateway.validation.intake`: a labelled upload (zip + CSV, or DICOM files + CSV), bounded.
- :mod:`~gateway.validation.scoring`: one image through the same inference service as clinical
  traffic, under the runs' own concurrency cap, retrying 503s.
- :mod:`~gateway.validation.runner`: the background task that scores queued runs and purges
  expired run images.
- :mod:`~gateway.validation.report`: the report (shared.train.evaluation's metrics).
- :mod:`~gateway.validation.site`: site points: preview, adopt, roll back, and the point and
  population a new result is read with.
- :mod:`~gateway.validation.pdf`: the report as a PDF (fpdf2).
- :mod:`~gateway.validation.routes`: the admin API.
"""
