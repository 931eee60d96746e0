"""nnU-Net's deep-supervision weighting of the outputs `[main, aux...]` (finest first).

Output `i` (0 = full resolution) gets weight `2**-i`, the lowest-resolution output gets 0 (it is
too coarse to help), and the weights are normalised to sum to 1. Put them in a config's
`loss.coef` with one shared loss type: `loss: {types: [<loss>], coef: <these weights>}`.
"""

from __future__ import annotations


def deep_supervision_weights(num_outputs: int) -> list[float]:
    """Return nnU-Net's loss weights for `num_outputs` outputs, main output first.

    >>> deep_supervision_weights(3)
    [0.6666666666666666, 0.3333333333333333, 0.0]
    >>> deep_supervision_weights(1)
    [1.0]
    """
    if isinstance(num_outputs, bool) or not isinstance(num_outputs, int) or num_outputs < 1:
        raise ValueError(f"num_outputs must be a positive int, got {num_outputs!r}")
    if num_outputs == 1:
        return [1.0]
    weights = [0.5**i for i in range(num_outputs - 1)] + [0.0]
    total = sum(weights)
    return [w / total for w in weights]
