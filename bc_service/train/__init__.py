"""Training of the mammography models: ``python -m bc_service.train all`` (TensorFlow needed).

``data`` and ``metrics`` are TensorFlow-free (unit-tested in ``make test``); ``nets`` and
``steps`` import TensorFlow.
"""
