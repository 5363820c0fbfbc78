"""NCCL_DEBUG=INFO logs in NCCL's own line formats → tuning decisions → the size × GPU-count map."""

from __future__ import annotations

import pytest

from analysis.nccl_log import algorithm_map, parse_text, workspace_decisions
from study.results import new_result, write_result

# An excerpt in the shapes NCCL prints (src/enqueue.cc, src/init.cc): the collective line of subsystem COLL,
# the numeric tuning line of older 2.x, the named tuning line of 2.19+, and the tuner-era "Best tuning" line.
EXCERPT = """\
nid001234:12345:12345 [0] NCCL INFO NCCL version 2.21.5+cuda12.4
nid001234:12345:12399 [0] NCCL INFO comm 0x55d0c8a0 rank 0 nranks 8 cudaDev 0 nvmlDev 0 busId 3000 \
commId 0x7a1c2b3d4e5f6071 - Init COMPLETE
nid001234:12345:12345 [0] NCCL INFO AllReduce: opCount 4 sendbuff 0x7f3a10000000 recvbuff 0x7f3a10000000 \
count 65536 datatype 9 op 0 root 0 comm 0x55d0c8a0 [nranks=8] stream 0x55d0d000
nid001234:12345:12345 [0] NCCL INFO 131072 Bytes -> Algo 1 proto 0 time 23.456000
nid001234:12345:12345 [0] NCCL INFO AllReduce: opCount 5 sendbuff 0x7f3a10000000 recvbuff 0x7f3a10000000 \
count 1048576 datatype 7 op 0 root 0 comm 0x55d0c8a0 [nranks=8] stream 0x55d0d000
nid001234:12345:12345 [0] NCCL INFO AllReduce: 4194304 Bytes -> Algo TREE proto SIMPLE channel{Lo..Hi}={0..15}
nid001235:22222:22222 [0] NCCL INFO comm 0x61aa0000 rank 0 nranks 16 cudaDev 0 busId 3000 - Init COMPLETE
nid001235:22222:22222 [0] NCCL INFO AllReduce: 2097152 Bytes -> Algo NVLS_TREE proto LL128 \
channel{Lo..Hi}={0..3} comm 0x61aa0000
nid001235:22222:22222 [0] NCCL INFO AllReduce: opCount 9 sendbuff 0x7f00 recvbuff 0x7f00 count 16384 \
datatype 6 op 0 root 0 comm 0x61aa0000 [nranks=16] stream 0x61bb
nid001235:22222:22222 [0] NCCL INFO Best tuning, algorithm, RING, protocol, LL
nid001235:22222:22222 [0] NCCL WARN some unrelated warning
random line from the application
nid001234:12345:12345 [0] NCCL INFO AllGather: opCount 6 sendbuff 0x1 recvbuff 0x2 count 8 datatype 7 op 0 \
root 0 comm 0x55d0c8a0 [nranks=8] stream 0x55d0d000
nid001234:12345:12345 [0] NCCL INFO AllGather: 32 Bytes -> Algo RING proto LL channel{Lo..Hi}={0..0}
"""


def test_excerpt_is_parsed():
    d = parse_text(EXCERPT)
    got = list(
        d[["collective", "size_bytes", "nranks", "algorithm", "protocol"]].itertuples(index=False, name=None)
    )
    assert got == [
        ("AllReduce", 131072, 8, "Ring", "LL"),  # numeric ids; size given, ranks from the last AllReduce line
        ("AllReduce", 4194304, 8, "Tree", "Simple"),  # named; 1M floats = 4 MiB, ranks from that call
        ("AllReduce", 2097152, 16, "NVLSTree", "LL128"),  # named with comm: ranks from the comm's init line
        ("AllReduce", 32768, 16, "Ring", "LL"),  # "Best tuning": size = 16384 halves from the call line
        ("AllGather", 32, 8, "Ring", "LL"),
    ]
    assert d.loc[0, "predicted_us"] == pytest.approx(23.456)
    assert d.loc[1, "channels"] == 16


def test_algorithm_map_majority_and_agreement():
    lines = []
    for i, proto in enumerate([0, 0, 0, 2]):  # three times LL, once Simple at the same point
        lines.append(
            f"h:1:1 [0] NCCL INFO AllReduce: opCount {i} sendbuff 0x1 recvbuff 0x1 count 32768 "
            "datatype 9 op 0 "
            "root 0 comm 0xabc [nranks=32] stream 0x2"
        )
        lines.append(f"h:1:1 [0] NCCL INFO 65536 Bytes -> Algo 0 proto {proto} time 9.0")
    amap = algorithm_map(parse_text("\n".join(lines) + "\n" + EXCERPT))
    row = amap[(amap["size_bytes"] == 65536) & (amap["nranks"] == 32)].iloc[0]
    assert (row["choice"], row["calls"], row["agreement"]) == ("Tree/LL", 3, 0.75)
    assert 32 not in set(amap["size_bytes"])  # the AllGather decision stays out of the all-reduce map
    assert amap[["size_bytes", "nranks"]].duplicated().sum() == 0


def test_numeric_line_alone_takes_world_size_from_results(tmp_path):
    attempt = tmp_path / "runs" / "r1" / "attempt-1"
    attempt.mkdir(parents=True)
    result = new_result(
        kind="collective", params={}, topology={"nodes": 4, "gpus_per_node": 4, "world_size": 16}
    )
    write_result(result, attempt / "results.json")
    (attempt / "stderr").write_text(
        "x:9:9 [0] NCCL INFO 262144 Bytes -> Algo 0 proto 1 time 30.5\nnoise\n", encoding="utf-8"
    )
    d = workspace_decisions(tmp_path)
    assert d[["size_bytes", "nranks", "algorithm", "protocol", "run_id"]].values.tolist() == [
        [262144, 16, "Tree", "LL128", "r1"]
    ]


def test_no_logs_gives_empty_map(tmp_path):
    assert workspace_decisions(tmp_path).empty
    assert algorithm_map(workspace_decisions(tmp_path)).empty


# Lines as users have them: behind `srun --label` and `mpirun --tag-output` prefixes, a padded name,
# a named line with numeric ids and a time, and one tuning-looking line in no known shape.
LAUNCHER_LINES = """\
2: node-0:309:309 [0] NCCL INFO AllReduce: opCount 1 sendbuff 0x1 recvbuff 0x1 count 4096 datatype 7 \
op 0 root 0 comm 0xa1 [nranks=16] stream 0x2
2: node-0:309:309 [0] NCCL INFO AllReduce: 16384 Bytes -> Algo TREE proto LL channel{Lo..Hi}={0..1}
[1,0]<stdout>:node-1:411:411 [0] NCCL INFO AllGather: 37756928 Bytes -> Algo 1 proto 2 time 2860.208008
[1,0]<stdout>:node-1:411:411 [0] NCCL INFO Broadcast:    32768 Bytes -> Algo RING proto SIMPLE \
channel{Lo..Hi}={0..3}
node-2:500:500 [0] NCCL INFO AllReduce: 65536 Bytes => Algo RING proto LL
"""


def test_launcher_prefixes_padding_and_times_are_read_and_the_rest_is_counted():
    d = parse_text(LAUNCHER_LINES, nranks=8)
    got = list(
        d[["host", "collective", "size_bytes", "nranks", "algorithm", "protocol"]].itertuples(
            index=False, name=None
        )
    )
    assert got == [
        ("node-0", "AllReduce", 16384, 16, "Tree", "LL"),  # srun --label prefix; ranks from its call line
        ("node-1", "AllGather", 37756928, 8, "Ring", "Simple"),  # mpirun prefix, numeric ids with a time
        ("node-1", "Broadcast", 32768, 8, "Ring", "Simple"),  # padded name
    ]
    assert d.loc[1, "predicted_us"] == pytest.approx(2860.208008)
    assert d.attrs["unparsed"] == 1  # the "=>" line looks like a decision but is in no known shape


def test_plot_says_how_many_tuning_lines_it_could_not_read(tmp_path, capsys):
    from study.cli import main

    ws = tmp_path / "ws"
    attempt = ws / "runs" / "r1" / "attempt-1"
    attempt.mkdir(parents=True)
    (attempt / "stdout").write_text(LAUNCHER_LINES)
    import pandas as pd

    pd.DataFrame(
        [
            {
                "experiment": "e",
                "run_id": "r1",
                "repeat": 0,
                "kind": "collective",
                "status": "ok",
                "nodes": 2,
                "gpus_per_node": 4,
                "world_size": 8,
                "system": "x",
                "algorithm": "nccl",
                "size_bytes": 1024,
                "latency_us": 10.0,
            }
        ]
    ).to_csv(ws / "dataset.csv", index=False)
    assert main(["plot", str(ws), "--only", "nccl_algorithm_map", "--jobs", "1"]) == 0
    assert "1 NCCL tuning line(s) in the logs not understood" in capsys.readouterr().out
