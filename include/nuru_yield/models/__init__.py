"""What training produces and scoring, monitoring and the gate load: the ensemble's class
(:mod:`.ensemble`, kept at the import path registered models refer to), the registry
(:mod:`.registry`), the loaded model (:mod:`.loaded`) with its metadata, intervals and
TreeSHAP explanations. Imports nothing of training, scoring, monitoring or the API."""
