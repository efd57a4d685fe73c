"""Server-side averaging of the global model over the rounds (an exponential moving average).

With ``fl.model_average_decay`` = d > 0 the server keeps ``avg <- d * avg + (1 - d) * model`` after
every round (starting from the round-0 model) and evaluates and saves the average, while clients
keep training the last model. Under DP each round's model carries fresh noise, and the average
keeps its mean while shrinking that noise (De et al., 2022, average the parameters of DP-SGD
the same way); the average is computed from released models only, so it is post-processing
and costs no privacy. Non-float arrays are taken from the last model.
"""

from __future__ import annotations

import numpy as np

from fl.payload_format import State
from fl.update_matrix import float_keys

AVERAGE_PREFIX = "__average__/"
"""The average's arrays in the round checkpoint: the same keys behind this prefix."""


def averaged(average: State, model: State, decay: float) -> State:
    """``decay * average + (1 - decay) * model`` over the float arrays, in the model's dtypes."""
    out: State = {k: np.array(v, copy=True) for k, v in model.items()}
    for key in float_keys(model):
        mixed = decay * np.asarray(average[key], np.float64) + (1.0 - decay) * np.asarray(
            model[key], np.float64
        )
        out[key] = mixed.astype(np.asarray(model[key]).dtype)
    return out
