"""BentoML serving of the champion models (``bentoml serve srstyle.serving.service:SRService``)."""
