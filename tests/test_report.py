"""The HTML report: figures, findings, tables, provenance; headless Chromium loads every figure."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from html.parser import HTMLParser

import pandas as pd
import pytest

from analysis.dataset import from_frames, load_workspace
from analysis.registry import FigureResult
from analysis.report import build_context, render
from bench import synthetic as syn
from study.cli import main

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

NCCL_LOG = "\n".join(
    f"nid1:7:7 [0] NCCL INFO AllReduce: opCount {k:x} sendbuff 0x1 recvbuff 0x1 count {2**k // 2} "
    "datatype 9 op 0 root 0 comm 0xc0 [nranks=8] stream 0x2\n"
    f"nid1:7:7 [0] NCCL INFO {2**k} Bytes -> Algo {0 if k > 18 else 1} proto 0 time 10.0"
    for k in range(14, 22)
)


class _Images(HTMLParser):
    def __init__(self):
        super().__init__()
        self.srcs: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.srcs.append(dict(attrs)["src"])


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    ws = tmp_path_factory.mktemp("ws")
    syn.write_workspace(ws, syn.collective_frame(nodes=(2, 4), repeats=3, failed=1))
    attempt = ws / "runs" / "r1" / "attempt-1"
    attempt.mkdir(parents=True)
    (attempt / "stderr").write_text(NCCL_LOG + "\n", encoding="utf-8")
    assert main(["report", str(ws), "--jobs", "1"]) == 0
    return ws


def test_report_has_figures_findings_and_provenance(workspace):
    html = (workspace / "report.html").read_text(encoding="utf-8")
    parser = _Images()
    parser.feed(html)
    assert len(parser.srcs) == 4  # latency, speedup heat map, speedup vs size, NCCL's algorithm map
    for src in parser.srcs:
        assert not os.path.isabs(src) and (workspace / src).is_file()
    text = re.sub(r"<[^>]+>", " ", html)
    for n in (2, 4):
        kib = syn.crossover_bytes(n) / 1024
        assert (
            f"at {n} nodes without CUDA graphs (in-place, max over ranks), NVRAR overtakes NCCL "
            f"for messages larger than about {kib:.1f} KiB" in text
        )
    assert "NCCL at 8 GPUs picks Ring/LL from 16 KiB, then Tree/LL from 512 KiB." in text
    assert "1 run(s) failed" in text and "exit code 137" in text
    assert "report made from commit" in text and "slingshot-11" in text
    assert "strong_scaling" in text and "no successful inference runs" in text  # skipped, with its reason


def test_inference_findings_in_context(tmp_path):
    runs, timers = syn.inference_frames(gpus=(4, 8, 16), schemes=("TP",), allreduces=("nccl",), repeats=1)
    ds = from_frames(runs, timers)
    ctx = build_context(ds, [FigureResult("x", "x", skipped="because")], tmp_path)
    decode = [f for f in ctx.findings if "of decode time at 16 GPUs" in f]
    # At 16 GPUs the GEMMs still dominate decode; the planted all-reduce is the one that grows fastest.
    assert len(decode) == 1 and decode[0].startswith("[") and "matmul is" in decode[0]
    assert "allreduce grows fastest with scale" in decode[0]
    assert [t.title for t in ctx.tables][:3] == [
        "Strong scaling: ttft_ms",
        "Strong scaling: tbt_ms",
        "Strong scaling: e2e_ms",
    ]
    html = render(ctx)
    assert "<b>x</b>: because" in html


def test_text_is_escaped(tmp_path):
    df = syn.collective_frame(nodes=(2,), repeats=1, system="<script>alert(1)</script>")
    ctx = build_context(from_frames(df), [], tmp_path)
    html = render(ctx)
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html


def test_dataset_errors_exit_2(tmp_path, capsys):
    pd.DataFrame({"run_id": ["a"]}).to_csv(tmp_path / "dataset.csv", index=False)
    assert main(["report", str(tmp_path)]) == 2
    assert "dataset.csv: experiment: required column missing" in capsys.readouterr().err


def _chromium_dom(page, profile) -> str:
    """The DOM after load, with every <img> marked loaded or broken by an inline script."""
    check = page.with_name("report-check.html")
    script = (
        "<script>window.addEventListener('load', () => {"
        "const imgs = [...document.images];"
        "document.body.setAttribute('data-images', imgs.length);"
        "const broken = imgs.filter(i => !i.complete || i.naturalWidth === 0);"
        "document.body.setAttribute('data-broken', broken.length);"
        "});</script>"
    )
    check.write_text(
        page.read_text(encoding="utf-8").replace("</body>", script + "</body>"), encoding="utf-8"
    )
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--allow-file-access-from-files",
        "--virtual-time-budget=10000",
        "--dump-dom",
        check.as_uri(),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.skipif(
    CHROMIUM is None and os.environ.get("CI") != "true",
    reason="chromium is not installed (apt-get install chromium); required under CI=true",
)
@pytest.mark.parametrize("embed", [False, True], ids=["linked", "embedded"])
def test_every_figure_loads_in_chromium(workspace, tmp_path, embed):
    assert CHROMIUM, "chromium is required under CI=true"
    page = workspace / ("report.html" if not embed else "report-embedded.html")
    if embed:
        assert main(["report", str(workspace), "--embed", "--out", str(page), "-j", "1"]) == 0
    dom = _chromium_dom(page, tmp_path / "profile")
    images = re.search(r'data-images="(\d+)"', dom)
    broken = re.search(r'data-broken="(\d+)"', dom)
    assert images and broken, dom[:2000]
    assert int(images.group(1)) == 4
    assert int(broken.group(1)) == 0


def test_workspace_loads_back(workspace):
    ds = load_workspace(workspace)
    assert ds.failed["run_id"].nunique() == 1


def test_build_report_for_study_run(tmp_path):
    """`study run --report` calls build_report(workspace) after collecting."""
    from analysis.report import build_report

    syn.write_workspace(tmp_path, syn.collective_frame(nodes=(2,), algorithms=("nccl",), repeats=1))
    page = build_report(tmp_path)
    assert page == tmp_path / "report.html" and "allreduce_latency" in page.read_text(encoding="utf-8")
    assert (tmp_path / "figures" / "allreduce_latency.png").is_file()


def test_findings_compare_whatever_algorithms_a_sweep_holds():
    import pandas as pd

    from analysis.dataset import from_frames
    from analysis.report import analyse, plain_findings

    rows = []
    # ring is fastest at small sizes, tree in the middle, reference (NVRAR's schedule) at the top.
    truth = {1024: ("ring", 10.0), 65536: ("tree", 20.0), 1048576: ("reference", 40.0)}
    for size, (winner, best) in truth.items():
        for algorithm in ("ring", "tree", "reference", "gloo"):
            latency = best if algorithm == winner else best * 1.5
            for repeat in range(3):
                rows.append(
                    {
                        "experiment": "e",
                        "run_id": f"{algorithm}{repeat}",
                        "repeat": repeat,
                        "kind": "collective",
                        "status": "ok",
                        "nodes": 1,
                        "gpus_per_node": 4,
                        "world_size": 4,
                        "system": "local",
                        "algorithm": algorithm,
                        "size_bytes": size,
                        "latency_us": latency,
                    }
                )
    ds = from_frames(pd.DataFrame(rows))
    text = [f for f in plain_findings(ds, analyse(ds)) if f.startswith("Fastest")]
    assert text == [
        "Fastest of 4 all-reduces (system=local, nodes=1, world_size=4): ring at 1 KiB (1.50× ahead of the "
        "next); tree at 64 KiB (1.50× ahead of the next); reference at 1 MiB (1.50× ahead of the next)."
    ]


def test_findings_say_which_placement_and_statistic_each_number_is():
    from analysis.report import analyse, plain_findings

    frame = syn.collective_frame(nodes=(2,), repeats=1)
    # Out of place, NCCL is 2× slower and NVRAR 4× slower: NVRAR's crossover moves 4× up in size.
    slower = frame["algorithm"].map({"nccl": 2.0, "nvrar": 4.0})
    outside = frame.assign(
        in_place=False, latency_us=frame["latency_us"] * slower, run_id=frame["run_id"] + "o"
    )
    ds = from_frames(pd.concat([frame, outside], ignore_index=True))
    found = plain_findings(ds, analyse(ds))
    crossings = sorted(f for f in found if "overtakes" in f)
    assert len(crossings) == 2
    assert "(in-place, max over ranks)" in crossings[0] and "(out-of-place, max over ranks)" in crossings[1]
    fastest = sorted(f for f in found if f.startswith("Fastest"))
    assert [("in-place" in f, "out-of-place" in f) for f in fastest] == [(True, False), (False, True)]
