"""Linear-attention transformers for masked-block completion in four regimes.

See `transformer.py` for the layer, the read-out convention (prediction = -Z_L[d:, n:])
and the fast path; `reference.py` for the float64 loop reference; `layout.py` for the
distributed regime's column-partition layout; `handset.py` for EAGLE-structured weights;
`prune.py` for greedy head pruning on a validation batch; `family.py` for the family's
(P, Q) layer, its map onto this transformer and the GD / preconditioned GD / GD++
constructions; `delta.py` for the delta rule (DeltaNet), recurrent and chunkwise;
`rfwp.py` for the recurrent fast weight programmers (Delta Net, Delta RNN, rec-update);
`sequence.py` for causal sequence models of each architecture on the sequence view of a
prompt (`tasks.sequence`).
"""

from eaglelab.models.config import REGIMES, ModelConfig
from eaglelab.models.delta import delta_rule_chunkwise, delta_rule_recurrent
from eaglelab.models.handset import eagle_weights
from eaglelab.models.layout import DistributedLayout, MachineBlocks
from eaglelab.models.prune import PruneResult, prune_heads
from eaglelab.models.reference import reference_layers, reference_prediction
from eaglelab.models.rfwp import DeltaNetLayer, DeltaRNNLayer, RecurrentDeltaNetLayer
from eaglelab.models.sequence import ARCHITECTURES, SequenceModel
from eaglelab.models.transformer import LinearTransformer, param_shapes, read_out

__all__ = [
    "ARCHITECTURES",
    "REGIMES",
    "DeltaNetLayer",
    "DeltaRNNLayer",
    "DistributedLayout",
    "LinearTransformer",
    "MachineBlocks",
    "ModelConfig",
    "PruneResult",
    "RecurrentDeltaNetLayer",
    "SequenceModel",
    "delta_rule_chunkwise",
    "delta_rule_recurrent",
    "eagle_weights",
    "param_shapes",
    "prune_heads",
    "read_out",
    "reference_layers",
    "reference_prediction",
]
