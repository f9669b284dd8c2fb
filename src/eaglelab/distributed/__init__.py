"""Distributed EAGLE on a real engine (torch.distributed, gloo on CPU).

Rank-local distributed EAGLE and distributed GD (`eagle_rank`, `gd_rank`, `solve_shards`),
a communicator that counts the payload at the collective call (`Comm`), column shards on
disk with the diversity index of the partition (`write_shards`, `read_shard`,
`partition_report`), local launching (`launch_local`, `solve_distributed`) and solving
from shards under torchrun or on local workers (`solve_from_shards`).  The command line (``eaglelab
distributed``, also ``python -m eaglelab.distributed`` for torchrun) lives in
`eaglelab.cli.distributed_cmd`.  See docs/distributed.md.
"""

from eaglelab.distributed.comm import Comm, CommunicationError, init_comm
from eaglelab.distributed.engine import eagle_rank, gd_rank, solve_shards
from eaglelab.distributed.launch import (
    DistributedError,
    LocalGroup,
    RankOutcome,
    launch_local,
    result_to_json,
    solve_distributed,
    solve_from_shards,
)
from eaglelab.distributed.shards import (
    PartitionReport,
    Shard,
    ShardError,
    ShardHeader,
    make_partition,
    partition_report,
    read_shard,
    write_shards,
)

__all__ = [
    "Comm",
    "CommunicationError",
    "DistributedError",
    "LocalGroup",
    "PartitionReport",
    "RankOutcome",
    "Shard",
    "ShardError",
    "ShardHeader",
    "eagle_rank",
    "gd_rank",
    "init_comm",
    "launch_local",
    "make_partition",
    "partition_report",
    "read_shard",
    "result_to_json",
    "solve_distributed",
    "solve_from_shards",
    "solve_shards",
    "write_shards",
]
