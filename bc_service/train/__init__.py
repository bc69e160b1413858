"""Training of the mammography models: ``python -m bc_service.train all`` (TensorFlow needed).

``steps`` runs them in order; each model has its module (``patch``, ``gate``, ``view``, with
``heatmaps`` and ``baseline``), ``publish`` writes the model folders and ``workspace`` holds
the settings and paths. Only ``nets`` imports TensorFlow at import time (the steps import it
when they train); ``data`` and ``metrics`` are unit-tested in ``make test``. ``sources``
reads other datasets' layouts (CBIS-DDSM, INbreast) and ``byod`` trains and evaluates on one
(``python -m bc_service.train --source inbreast --data DIR``). ``cnn_detector`` (with
``cnn_evaluation``) is an experiment recorded in ``models/mammo-view/cnn_search.md``, not a
served model.
"""
