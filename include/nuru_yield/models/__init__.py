"""What training produces and scoring, monitoring and the gate load: the fitted estimators'
own classes, kept under one import path that registered models refer to."""
