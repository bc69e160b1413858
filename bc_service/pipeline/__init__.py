"""The mammography pipeline: the model definition (:mod:`.mammo`), its stages
(:mod:`.stages`), the model inputs shared with training (:mod:`.features`), breast geometry
(:mod:`.geometry`), the pectoral muscle of MLO views (:mod:`.pectoral`), the score map
(:mod:`.score_map`) and the overlay PNGs (:mod:`.overlay`)."""

from bc_service.pipeline.mammo import STAGE_WEIGHTS, MammoPipeline, ViewInput
from bc_service.pipeline.overlay import heatmap_png
from bc_service.pipeline.stages import MammoState

__all__ = ["STAGE_WEIGHTS", "MammoPipeline", "MammoState", "ViewInput", "heatmap_png"]
