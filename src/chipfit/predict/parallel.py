"""Collective communication over a device's links (alpha-beta cost model).

Each collective of S bytes over N devices costs `steps x alpha + volume / B`, where B is the
bandwidth one device sends in one direction (vendors quote both directions summed, so
B = quoted / 2, at the efficiency collectives reach) and S is the full buffer:

    ring all-reduce        2 (N-1)/N S / B  +  2 (N-1) alpha      (Patarasuk and Yuan 2009; NCCL ring)
    ring all-gather        (N-1)/N S / B    +  (N-1) alpha        (S = the gathered buffer)
    ring reduce-scatter    (N-1)/N S / B    +  (N-1) alpha        (S = the buffer before scattering)
    all-to-all (pairwise)  (N-1)/N S / B    +  (N-1) alpha        (S = one device's send buffer)
    tree all-reduce        2 S / B          +  2 log2(N) alpha    (pipelined reduce + broadcast,
                                                                   double binary tree: Sanders et al. 2009)

Devices sit in nodes (8 GPUs on NVLink/NVSwitch; a TPU slice is one ICI domain). A group that
spans nodes runs hierarchically: reduce-scatter inside each node, the collective across nodes on
1/g of the data per device (every GPU has its own NIC: rail-optimised fabrics), all-gather inside
the node. Overlap of communication with compute is decided by the caller and stated there.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace

import numpy as np

from ..catalog.schema import Hardware
from ..errors import ChipfitError, closest
from ..workload.profile import PHASES
from .memory import stage_layers, stage_share
from .plan import ModelShape, Plan
from .roofline import OpArrays

# nccl-tests bus bandwidth reaches about 80% of the NVLink per-direction peak on 8-GPU
# NVSwitch systems (e.g. ~360-380 of 450 GB/s on DGX H100), and about the same share of
# InfiniBand line rate across nodes (NDR: ~40-45 of 50 GB/s per GPU in nccl-tests).
COLLECTIVE_EFFICIENCY = 0.80
# Per-step latency of a ring collective: a few microseconds per hop on NVLink or InfiniBand.
LINK_LATENCY_S = 5e-6
# Per-step latency across the network: NCCL's tuning model charges about 14 us per ring step
# over the network with the Simple protocol against 3.4 us over NVLink (NCCL src/graph/tuning.cc, hwLat).
NETWORK_LATENCY_S = 14e-6

# Overlapping communication is not free on GPUs: compute kernels that run beside collectives (which
# take SMs and memory bandwidth) slow down by 18.9% on average, 40.0% at most, measured on A100, H100,
# MI250 and MI210 training GPT and LLaMA models, against the same compute with nothing beside it
# (Characterizing Compute-Communication Overlap in GPU-Accelerated Distributed Deep Learning,
# arXiv:2507.03114, abstract). Other classes have no published figure and overlap for free.
OVERLAP_SLOWDOWN = {"gpu": 0.189}


def overlap_slowdown(hw_class: str) -> float:
    """How much slower compute runs beside overlapped collectives on a `hw_class` device (OVERLAP_SLOWDOWN)."""
    return OVERLAP_SLOWDOWN.get(hw_class, 0.0)

COLLECTIVES = ("all_reduce", "all_gather", "reduce_scatter", "all_to_all")
ALGORITHMS = ("ring", "tree")


@dataclass(frozen=True)
class Network:
    """The scale-out network one device reaches other nodes over, per device and per direction."""

    name: str
    bw_bytes_per_s: float  # line rate per device, one direction
    source: str


GBIT = 1e9 / 8  # bytes/s in one Gb/s

# Named scale-out networks. Per-device rates: the node's NIC bandwidth divided by its devices.
NETWORKS = {
    "ib-ndr-400": Network(
        "InfiniBand NDR, 400 Gb/s per GPU", 400 * GBIT,
        "NVIDIA DGX H100 datasheet: 8x single-port ConnectX-7 400 Gb/s InfiniBand for 8 GPUs (also DGX H200, DGX B200)"),
    "ib-hdr-200": Network(
        "InfiniBand HDR, 200 Gb/s per GPU", 200 * GBIT,
        "NVIDIA DGX A100 datasheet: 8x single-port ConnectX-6 200 Gb/s HDR InfiniBand for 8 GPUs"),
    "ib-edr-dgx1": Network(
        "InfiniBand EDR, 4x 100 Gb/s per 8 GPUs", 4 * 100 * GBIT / 8,
        "NVIDIA DGX-1 datasheet: 4x 100 Gb/s EDR InfiniBand for 8 V100 GPUs"),
    "efa-p5": Network(
        "AWS EFA, 3200 Gb/s per 8 GPUs", 3200 * GBIT / 8,
        "AWS EC2 P5 instance page: 3,200 Gbps of EFA networking for 8 H100 GPUs"),
    "efa-p4d": Network(
        "AWS EFA, 400 Gb/s per 8 GPUs", 400 * GBIT / 8,
        "AWS EC2 P4d instance page: 400 Gbps of EFA networking for 8 A100 GPUs"),
    "opa-4x100": Network(
        "Intel Omni-Path, 4x 100 Gb/s per 8 GPUs", 4 * 100 * GBIT / 8,
        "BigScience 2022, BLOOM (arXiv:2211.05100) Sec. 3.4.1 and model card: Jean Zay's A100 nodes, 8 GPUs "
        "with four Omni-Path 100 Gb/s links"),
    "slingshot-frontier": Network(
        "HPE Slingshot-11, 4x 200 Gb/s per 8 MI250X GCDs", 4 * 200 * GBIT / 8,
        "OLCF Frontier user guide: each node has 4 HPE Slingshot 200 Gb/s NICs for 4 MI250X (8 GCDs)"),
}

# Devices that share one scale-up domain (NVLink/NVSwitch, xGMI) by class; a TPU slice is one
# ICI domain (None: the whole slice). HGX/DGX and OAM baseboards carry 8 accelerators.
NODE_SIZE = {"gpu": 8, "tpu": None, "asic": 8}
# A catalog entry's network by the generation in its id: the fabric of the vendor's reference node.
# H800 nodes: 8 GPUs on NVLink, InfiniBand across nodes at 50 GB/s per GPU (DeepSeek-AI 2024, DeepSeek-V3
# Technical Report, arXiv:2412.19437, sections 3.1 and 3.2.1), the NDR 400 Gb/s of HGX H100.
_DEFAULT_NETWORK = (
    (r"h100|h200|h800|b200|b100|gb200", "ib-ndr-400"),
    (r"a100", "ib-hdr-200"),
    (r"v100", "ib-edr-dgx1"),
    (r"mi250", "slingshot-frontier"),
)


@dataclass(frozen=True)
class Topology:
    """Links one device uses: inside its node (scale-up) and across nodes (scale-out)."""

    node_size: int | None  # devices per scale-up domain; None: one domain for any count (TPU slice)
    intra_bw_bytes_per_s: float  # effective, one direction
    inter_bw_bytes_per_s: float | None  # effective, one direction; None without a known network
    intra_latency_s: float = LINK_LATENCY_S
    inter_latency_s: float = NETWORK_LATENCY_S
    description: str = ""


def link_bandwidth(hw: Hardware) -> float | None:
    """Bytes/s one device sends in one direction, at the efficiency collectives reach."""
    if hw.interconnect_bw_bytes_per_s is None:
        return None
    return hw.interconnect_bw_bytes_per_s.value / 2 * COLLECTIVE_EFFICIENCY


def default_network(hw: Hardware) -> Network | None:
    """The scale-out network of the vendor's reference node for `hw`, or None when unknown."""
    for pattern, key in _DEFAULT_NETWORK:
        if re.search(pattern, hw.id):
            return NETWORKS[key]
    return None


def network_named(name: str) -> Network:
    """The NETWORKS entry `name`; raises ChipfitError naming the known ones."""
    if name not in NETWORKS:
        raise ChipfitError(f"Network {name!r} is not known.{closest(name, NETWORKS)} Known: {', '.join(NETWORKS)}.")
    return NETWORKS[name]


def topology(hw: Hardware, network: Network | str | None = None) -> Topology | None:
    """The links a multi-device plan on `hw` uses, or None without a sourced interconnect figure."""
    intra = link_bandwidth(hw)
    if intra is None:
        return None
    if isinstance(network, str):
        network = network_named(network)
    node = NODE_SIZE.get(hw.hw_class, 1)
    net = network or default_network(hw)
    inter = net.bw_bytes_per_s * COLLECTIVE_EFFICIENCY if net else None
    where = "ICI across the slice" if node is None else f"{node} per node over {hw.interconnect or 'its links'}"
    desc = f"{where}; across nodes {net.name} ({net.source})" if net and node else where
    return Topology(node_size=node, intra_bw_bytes_per_s=intra, inter_bw_bytes_per_s=inter, description=desc)


def collective_s(kind: str, size_bytes: float, devices: int, bandwidth_bytes_per_s: float,
                 latency_s: float = LINK_LATENCY_S, algorithm: str = "ring") -> float:
    """Time of one flat collective of `size_bytes` over `devices` devices on one kind of link."""
    if kind not in COLLECTIVES:
        raise ChipfitError(f"Collective {kind!r} is not known; use one of {', '.join(COLLECTIVES)}.")
    if algorithm not in ALGORITHMS:
        raise ChipfitError(f"Algorithm {algorithm!r} is not known; use ring or tree.")
    if devices <= 1 or size_bytes <= 0:
        return 0.0
    n = devices
    if kind == "all_reduce":
        if algorithm == "tree":
            return 2 * size_bytes / bandwidth_bytes_per_s + 2 * math.log2(n) * latency_s
        return 2 * (n - 1) / n * size_bytes / bandwidth_bytes_per_s + 2 * (n - 1) * latency_s
    return (n - 1) / n * size_bytes / bandwidth_bytes_per_s + (n - 1) * latency_s


def ring_allreduce_s(size_bytes: float, devices: int, bandwidth_bytes_per_s: float,
                     latency_s: float = LINK_LATENCY_S) -> float:
    """Time of a ring all-reduce of `size_bytes` over `devices` devices."""
    return collective_s("all_reduce", size_bytes, devices, bandwidth_bytes_per_s, latency_s)


def _best_allreduce(size: float, n: int, bw: float, latency: float) -> float:
    """NCCL picks the faster of ring and tree; so does this."""
    return min(collective_s("all_reduce", size, n, bw, latency, a) for a in ALGORITHMS)


def group_collective_s(kind: str, size_bytes: float, devices: int, topo: Topology, stride: int = 1) -> float:
    """A collective over a group of `devices` whose members are `stride` ranks apart.

    Ranks fill nodes in order, so a group holds min(devices, node_size // stride) members per
    node; one member per node runs entirely on the network, a whole group inside a node on the
    scale-up links, anything between runs hierarchically.
    """
    if devices <= 1 or size_bytes <= 0:
        return 0.0
    local = devices if topo.node_size is None else max(1, min(devices, topo.node_size // stride))
    bw, lat = topo.intra_bw_bytes_per_s, topo.intra_latency_s
    if local == devices:
        if kind == "all_reduce":
            return _best_allreduce(size_bytes, devices, bw, lat)
        return collective_s(kind, size_bytes, devices, bw, lat)
    if topo.inter_bw_bytes_per_s is None:
        raise ChipfitError(
            "The plan spans nodes but no scale-out network is known for this hardware; "
            f"name one of {', '.join(NETWORKS)} or keep the group within {topo.node_size} devices."
        )
    nodes = devices // local
    net_bw, net_lat = topo.inter_bw_bytes_per_s, topo.inter_latency_s
    if kind == "all_to_all":
        # Every device sends S/N to each peer; (N - local)/N of it crosses the network.
        intra = (local - 1) / devices * size_bytes / bw + (local - 1) * lat
        inter = (devices - local) / devices * size_bytes / net_bw + (nodes - 1) * net_lat
        return max(intra, inter)
    shard = size_bytes / local
    if kind == "all_reduce":
        return (collective_s("reduce_scatter", size_bytes, local, bw, lat)
                + _best_allreduce(shard, nodes, net_bw, net_lat)
                + collective_s("all_gather", size_bytes, local, bw, lat))
    return collective_s(kind, size_bytes, local, bw, lat) + collective_s(kind, shard, nodes, net_bw, net_lat)


def p2p_s(size_bytes: float, topo: Topology, across_nodes: bool) -> float:
    """One point-to-point send (pipeline stage boundary) over the link it crosses."""
    if size_bytes <= 0:
        return 0.0
    if across_nodes and topo.inter_bw_bytes_per_s is not None:
        return size_bytes / topo.inter_bw_bytes_per_s + topo.inter_latency_s
    return size_bytes / topo.intra_bw_bytes_per_s + topo.intra_latency_s


# --- a step under a parallel plan ------------------------------------------------------------

def shard_arrays(arrays: OpArrays, tensor_parallel: int, sequence_parallel: bool,
                 context_parallel: int = 1) -> OpArrays:
    """One tensor- and context-parallel rank's share of a micro-batch's operators.

    Approximation: matrix operators (matmul, attention, conv) and the optimizer split evenly
    over t ranks (Megatron's column/row split of every linear and of the heads); with sequence
    parallelism the remaining (vector) operators split too, without it they are replicated.
    Context parallelism splits every forward and backward operator's tokens over c ranks (causal
    attention balanced by giving each rank chunks i and 2c-1-i, Dubey et al. 2024, Sec. 3.3.2); the
    weights each rank reads are counted as split too, which understates them when tokens per rank are few.
    Kernel count is unchanged: each rank launches every kernel on its slice.
    """
    t, c = tensor_parallel, context_parallel
    if t == 1 and c == 1:
        return arrays
    optimizer = arrays.phase == PHASES.index("optimizer")
    split = arrays.matrix | optimizer
    if sequence_parallel:
        split = np.ones_like(split)
    factor = np.where(split, 1.0 / t, 1.0) * np.where(optimizer, 1.0, 1.0 / c)
    reread = arrays.reread * factor if arrays.reread is not None else None
    return replace(arrays, flops=arrays.flops * factor, bytes=arrays.bytes * factor, reread=reread,
                   params=arrays.params / t)


@dataclass(frozen=True)
class PlanStep:
    """One optimizer step of one device under a plan, split into its parts (seconds)."""

    step_s: float
    compute_s: float  # the m micro-batches' forward/backward work plus the optimizer (no idle slots)
    bubble_s: float  # idle pipeline slots: (p - 1) of the m + p - 1
    tensor_comm_s: float  # tensor-parallel collectives, on the critical path
    expert_comm_s: float  # MoE all-to-all, on the critical path
    pipeline_comm_s: float  # stage-boundary sends, on the critical path
    data_comm_s: float  # data-parallel / ZeRO collectives, before overlap
    data_comm_exposed_s: float  # what overlap with backward leaves on the critical path
    context_comm_s: float = 0.0  # context-parallel key/value gathers, on the critical path

    @property
    def communication_s(self) -> float:
        return (self.tensor_comm_s + self.expert_comm_s + self.pipeline_comm_s + self.context_comm_s
                + self.data_comm_exposed_s)


def bubble_fraction(pipeline_parallel: int, micro_batches: int, virtual_stages: int = 1) -> float:
    """Idle share of a 1F1B pipeline: (p - 1) / (m + p - 1) (Narayanan et al. 2021, Sec. 2.2); the interleaved
    schedule with v chunks of layers per rank shrinks the idle slots to (p - 1) / v (Sec. 2.2.2)."""
    p, m, v = pipeline_parallel, micro_batches, virtual_stages
    return (p - 1) / v / (m + (p - 1) / v)


def context_exchange_bytes(shape: ModelShape, micro_batch: int, tensor_parallel: int, act_bytes: int) -> float:
    """Bytes of one layer's all-gathered keys and values under context parallelism: the whole sequence's K and V
    of this tensor-parallel rank's heads, 2 * b * s * kv_width / t elements (Dubey et al. 2024, Sec. 3.3.2: Llama 3
    all-gathers K and V, then attends its local queries; the backward reduce-scatters their gradients)."""
    return 2 * micro_batch * shape.seq_len * shape.kv_width / tensor_parallel * act_bytes


def overlapped_exposed_s(comm_s: float, compute_s: float, slowdown: float) -> float:
    """Time `comm_s` of communication adds to `compute_s` of compute it runs beside. While it runs, compute
    goes 1 + `slowdown` times slower (OVERLAP_SLOWDOWN), so it adds comm_s * slowdown / (1 + slowdown)
    while compute outlasts it, and whatever is left once compute (slowed) is done."""
    if comm_s <= compute_s * (1 + slowdown):
        return comm_s * slowdown / (1 + slowdown)
    return comm_s - compute_s


def needs_links(plan: Plan, training: bool) -> bool:
    """Whether the plan moves data between devices (data-parallel inference does not)."""
    split = plan.tensor_parallel > 1 or plan.pipeline_parallel > 1 or plan.expert_parallel > 1
    return split or plan.context_parallel > 1 or (training and plan.data_parallel > 1)


def plan_step(phase_s: dict[str, float], plan: Plan, *, training: bool, micro_batch: int,
              grad_params: float, grad_bytes: int, act_bytes: int, topo: Topology | None,
              shape: ModelShape | None, overlap: bool = True, overlap_slowdown: float = 0.0,
              gather_bytes: float | None = None) -> PlanStep:
    """Step time of one device from the roofline phase times of one micro-batch.

    `phase_s` is one micro-batch of the whole model on one tensor- and context-parallel rank (see
    shard_arrays). `grad_params`: parameters whose gradients this device's data-parallel group
    reduces (the device's tensor/pipeline shard). Assumptions: the busiest pipeline stage does ceil(L/p)/L
    of the work (memory.stage_share; embedding and head spread evenly); tensor-parallel, context-parallel,
    expert and pipeline traffic is not overlapped with compute; data-parallel gradient traffic (over the
    data x context-parallel ranks) overlaps with the last micro-batch's backward (ZeRO-3's weight gathers
    with each micro-batch's compute), which it slows by `overlap_slowdown` (overlapped_exposed_s); with
    overlap=False nothing overlaps (the high bound). The interleaved schedule sends v times as many
    stage-boundary activations and idles (p - 1) / v slots (bubble_fraction).
    `gather_bytes`: the weight shard ZeRO-3 gathers (default grad_params x grad_bytes, every weight trained;
    frozen LoRA weights are gathered too, while only the adapters' gradients are reduced).
    """
    t, p, m, c, v = (plan.tensor_parallel, plan.pipeline_parallel, plan.micro_batches, plan.context_parallel,
                     plan.virtual_stages)
    group = plan.shard_group
    needs_shape = t > 1 or p > 1 or plan.expert_parallel > 1 or c > 1
    if needs_shape and shape is None:
        raise ChipfitError("A tensor, context, pipeline or expert-parallel plan needs the model's layers, hidden size "
                           "and sequence length; give the model's shape or use data parallelism only.")
    if needs_links(plan, training) and topo is None:
        raise ChipfitError("A multi-device plan needs the hardware's interconnect bandwidth; "
                           "this entry has none in the catalog, so use one device.")
    share = stage_share(plan, shape)
    fwd = phase_s.get("forward", 0.0) * share
    bwd = phase_s.get("backward", 0.0) * share if training else 0.0
    opt = phase_s.get("optimizer", 0.0) * share if training else 0.0
    if training and plan.zero_stage >= 1:
        opt /= group
    if training and plan.activation_checkpointing:
        bwd += fwd
    passes = (2 + 2 * training + 2 * (training and plan.activation_checkpointing))  # collectives per layer

    tensor_mb = expert_mb = p2p_mb = context_mb = 0.0
    if shape is not None:
        layers_here = stage_layers(shape.layers, p)
        tokens = micro_batch * shape.seq_len / c
        layer_act = tokens * shape.hidden * act_bytes
        if t > 1:
            if plan.sequence_parallel:
                per = (group_collective_s("all_gather", layer_act, t, topo)
                       + group_collective_s("reduce_scatter", layer_act, t, topo))
            else:
                per = group_collective_s("all_reduce", layer_act, t, topo)
            tensor_mb = layers_here * passes * per
        if c > 1:  # all-gather K, V in forward (and again when recomputing), reduce-scatter their gradients
            kv = context_exchange_bytes(shape, micro_batch, t, act_bytes)
            gathers = 1 + (training and plan.activation_checkpointing)
            context_mb = layers_here * (gathers * group_collective_s("all_gather", kv, c, topo, stride=t)
                                        + training * group_collective_s("reduce_scatter", kv, c, topo, stride=t))
        e = plan.expert_parallel
        if e > 1 and shape.experts:
            moe_here = (shape.moe_layers if shape.moe_layers is not None else shape.layers) * share
            sent = layer_act * shape.top_k / (t if plan.sequence_parallel else 1)
            expert_mb = moe_here * passes * group_collective_s("all_to_all", sent, e, topo, stride=t * c)
        if p > 1:
            boundary = layer_act / (t if plan.sequence_parallel else 1)
            across = topo.node_size is not None and t * c * plan.data_parallel >= topo.node_size
            p2p_mb = v * (1 + training) * p2p_s(boundary, topo, across)
    slot = fwd + bwd + tensor_mb + expert_mb + p2p_mb + context_mb
    idle = (p - 1) / v
    bubble = idle * slot

    data_total = data_exposed = 0.0
    if training and group > 1:
        size = grad_params * grad_bytes
        if plan.zero_stage == 3:
            gathered = size if gather_bytes is None else gather_bytes
            per_mb = (2 * group_collective_s("all_gather", gathered, group, topo, stride=t)
                      + group_collective_s("reduce_scatter", size, group, topo, stride=t))
            data_total = m * per_mb
            data_exposed = m * overlapped_exposed_s(per_mb, fwd + bwd, overlap_slowdown) if overlap else data_total
        else:
            if plan.zero_stage == 0:
                data_total = group_collective_s("all_reduce", size, group, topo, stride=t)
            else:
                data_total = (group_collective_s("reduce_scatter", size, group, topo, stride=t)
                              + group_collective_s("all_gather", size, group, topo, stride=t))
            data_exposed = overlapped_exposed_s(data_total, bwd, overlap_slowdown) if overlap else data_total
    # The parts add up to the step: busy slots (work and their communication), idle slots, the
    # optimizer and the exposed data-parallel traffic.
    compute = m * (fwd + bwd) + opt
    step = (m + idle) * slot + opt + data_exposed
    return PlanStep(step_s=step, compute_s=compute, bubble_s=bubble, tensor_comm_s=m * tensor_mb,
                    expert_comm_s=m * expert_mb, pipeline_comm_s=m * p2p_mb,
                    data_comm_s=data_total, data_comm_exposed_s=data_exposed, context_comm_s=m * context_mb)
