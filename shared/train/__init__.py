"""Training utilities both services' trainers use: evaluation metrics with one output schema
(:mod:`shared.train.evaluation`), report figures (:mod:`shared.train.plots`) and the card
writer (:mod:`shared.train.card_writer`).

Training-only: evaluation and plots use scikit-learn and matplotlib (``dev``/``train``
extras), which the service images do not install, so no service imports them at run time
(tests/deploy/test_docker.py leaves ``train`` folders out of its image check). A service
that needs these numbers at run time (the gateway's site calibration) adds scikit-learn to
its extra first.
"""
