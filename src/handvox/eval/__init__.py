"""Evaluation as the community does it, in layers: metrics on arrays (:mod:`.metrics`), reports
of scores (:mod:`.report`), prediction files scored against test labels (:mod:`.files`); and the
synthetic test protocol of handvox's model (:mod:`.protocol`)."""
