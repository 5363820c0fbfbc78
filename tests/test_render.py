"""Rendering: directives per scheduler, the one quoting filter, golden scripts, workspace writing."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from study.config import load_experiment
from study.errors import InputError
from study.plan import load_plan
from study.render import REPO_ROOT, build_plan, render_jobs, render_workspace
from study.systems import SYSTEMS_DIR, load_system

GOLDEN = Path(__file__).parent / "golden"
SYSTEM_NAMES = sorted(p.stem for p in SYSTEMS_DIR.glob("*.yaml"))
WS = Path("/golden/workspace")

COLLECTIVE = """\
version: 1
name: golden-collective
kind: collective
resources: {{nodes: {nodes}, walltime: 20m, runs_per_job: 2}}
sweep:
  algorithms: [nccl, nvrar]
fixed:
  sizes: {{from: 64KiB, to: 2MiB, factor: 2}}
  dtype: bf16
  iterations: 100
  warmup: 10
  graphs: true
env: {{NCCL_DEBUG: INFO}}
"""

INFERENCE = """\
version: 1
name: golden-inference
kind: inference
resources: {{nodes: {nodes}, walltime: 30m, runs_per_job: 2}}
sweep:
  allreduce: [nccl, nvrar]
fixed:
  model: llama3.1-70b
  batch_size: 16
  prompt_len: 1024
  decode_len: 128
  dtype: bf16
  compile: true
  cuda_graphs: false
  micro_batches: 2
  breakdown: true
  seed: 7
"""


def experiment_file(tmp_path: Path, template: str, nodes: int = 2, name: str = "exp.yaml") -> Path:
    path = tmp_path / name
    text = template.format(nodes=nodes)
    path.write_text(text)
    return path


def nodes_for(system) -> int:
    return min(2, system.max_nodes or 2)


def plan_for(tmp_path: Path, system_name: str, template: str = COLLECTIVE, account: str = "acct0"):
    system = load_system(system_name)
    experiment = load_experiment(experiment_file(tmp_path, template, nodes_for(system)))
    return build_plan(experiment, system, WS, account)


def directive_lines(script: str, prefix: str) -> set[str]:
    return {line for line in script.splitlines() if line.startswith(prefix)}


# ---------------------------------------------------------------------------------------------------
# Directives compared with expected sets, per scheduler.


def test_slurm_directives_perlmutter(tmp_path):
    plan, scripts = plan_for(tmp_path, "perlmutter")
    job = plan.jobs[0]
    assert directive_lines(scripts[job.script], "#SBATCH") == {
        f"#SBATCH --job-name={job.name}",
        "#SBATCH --nodes=2",
        "#SBATCH --ntasks-per-node=4",
        "#SBATCH --gpus-per-node=4",
        "#SBATCH --cpus-per-task=32",
        "#SBATCH --time=00:40:00",
        "#SBATCH --account=acct0",
        "#SBATCH --qos=regular",
        "#SBATCH --constraint=gpu",
        f"#SBATCH --comment=study:{','.join(job.runs)}",
        f"#SBATCH --output={WS}/jobs/{job.name}.%j.out",
    }


def test_slurm_directives_vista_have_no_gpu_request(tmp_path):
    plan, scripts = plan_for(tmp_path, "vista")
    job = plan.jobs[0]
    assert directive_lines(scripts[job.script], "#SBATCH") == {
        f"#SBATCH --job-name={job.name}",
        "#SBATCH --nodes=2",
        "#SBATCH --ntasks-per-node=1",
        "#SBATCH --time=00:40:00",
        "#SBATCH --account=acct0",
        "#SBATCH --partition=gh",
        f"#SBATCH --comment=study:{','.join(job.runs)}",
        f"#SBATCH --output={WS}/jobs/{job.name}.%j.out",
    }


def test_pbs_directives_polaris(tmp_path):
    plan, scripts = plan_for(tmp_path, "polaris")
    job = plan.jobs[0]
    assert directive_lines(scripts[job.script], "#PBS") == {
        f"#PBS -N {job.name}",
        "#PBS -l select=2:ncpus=32:ngpus=4:mpiprocs=4",
        "#PBS -l place=scatter",
        "#PBS -l walltime=00:40:00",
        "#PBS -A acct0",
        "#PBS -q prod",
        "#PBS -l filesystems=home:eagle",
        "#PBS -j oe",
        f"#PBS -o {WS}/jobs/{job.name}.out",
    }
    assert 'MASTER_ADDR=$(head -n1 "$PBS_NODEFILE")' in scripts[job.script]


def test_local_has_no_directives(tmp_path):
    plan, scripts = plan_for(tmp_path, "local")
    script = scripts[plan.jobs[0].script]
    assert not directive_lines(script, "#SBATCH") and not directive_lines(script, "#PBS")
    assert "MASTER_ADDR=127.0.0.1" in script


def test_slurm_master_address_and_port(tmp_path):
    plan, scripts = plan_for(tmp_path, "perlmutter")
    script = scripts[plan.jobs[0].script]
    assert 'MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n1)' in script
    assert "MASTER_PORT=$(( 20000 + 10#${study_job_number:-$$} % 20000 ))" in script
    assert "module load pytorch" in script and "export NCCL_NET='AWS Libfabric'" in script


def test_experiment_overrides_scheduler_options(tmp_path):
    text = COLLECTIVE.replace("runs_per_job: 2}}", "runs_per_job: 2, scheduler: {{qos: debug}}}}")
    plan, scripts = plan_for(tmp_path, "perlmutter", text)
    assert "#SBATCH --qos=debug" in scripts[plan.jobs[0].script]


# ---------------------------------------------------------------------------------------------------
# Payload command lines: the flags of docs/internals.md.


def test_collective_command_line(tmp_path):
    plan, _ = plan_for(tmp_path, "perlmutter")
    words = shlex.split(plan.runs[0].command)
    assert words[:5] == ["srun", "--nodes=2", "--ntasks=8", "--ntasks-per-node=4", "--cpus-per-task=32"]
    payload = words[words.index("collectives.bench") + 1 :]
    assert payload == [
        "-b",
        "65536",
        "-e",
        "2097152",
        "-f",
        "2",
        "--algo",
        "nccl",
        "--dtype",
        "bf16",
        "-n",
        "100",
        "-w",
        "10",
        "-a",
        "1",
        "--graphs",
        "--gpus-per-node",
        "4",
        "--device",
        "cuda",
        "--results",
        "$STUDY_RESULTS",
    ]


def test_inference_command_line(tmp_path):
    plan, _ = plan_for(tmp_path, "polaris", INFERENCE)
    words = shlex.split(plan.runs[1].command)
    assert words[:8] == ["mpiexec", "-n", "8", "--ppn", "4", "--depth", "8", "--cpu-bind"]
    payload = words[words.index("engine.run") + 1 :]
    assert payload == [
        "--model",
        "llama3.1-70b",
        "--tp",
        "8",
        "--pp",
        "1",
        "--batch-size",
        "16",
        "--prompt-len",
        "1024",
        "--decode-len",
        "128",
        "--allreduce",
        "nvrar",
        "--dtype",
        "bf16",
        "--device",
        "cuda",
        "--compile",
        "--no-cuda-graphs",
        "--micro-batches",
        "2",
        "--breakdown",
        "--seed",
        "7",
        "--gpus-per-node",
        "4",
        "--results",
        "$STUDY_RESULTS",
    ]


def test_decode_kernels_reach_the_command_line_and_bad_ones_are_refused(tmp_path):
    text = INFERENCE.replace("  seed: 7\n", "  seed: 7\n  decode_kernels: attention\n")
    plan, _ = plan_for(tmp_path, "polaris", text)
    words = shlex.split(plan.runs[0].command)
    assert words[words.index("--decode-kernels") + 1] == "attention"
    bad = experiment_file(
        tmp_path, INFERENCE.replace("  seed: 7\n", "  seed: 7\n  decode_kernels: flash\n"), name="b.yaml"
    )
    with pytest.raises(InputError, match="decode_kernels"):
        load_experiment(bad)


def test_runs_pack_only_with_equal_node_counts(tmp_path):
    text = COLLECTIVE.replace("nodes: {nodes}", "nodes: [1, 2]").replace("runs_per_job: 2", "runs_per_job: 3")
    system = load_system("perlmutter")
    plan, _ = build_plan(load_experiment(experiment_file(tmp_path, text)), system, WS, "a")
    assert [(j.nodes, len(j.runs)) for j in plan.jobs] == [(1, 2), (2, 2)]
    assert all(plan.run(r).nodes == j.nodes and plan.run(r).job == j.name for j in plan.jobs for r in j.runs)
    assert plan.node_hours == pytest.approx((1 * 2400 + 2 * 2400) / 3600)


# ---------------------------------------------------------------------------------------------------
# The benchmark's statistic over ranks and placements.


@pytest.mark.parametrize(
    ("fixed", "flags", "not_flags"),
    [
        ("", ["-a 1"], ["--in-place", "--out-of-place"]),  # the benchmark's default: mean, both placements
        ("  statistic: max\n", ["-a 3"], ["-a 1", "--in-place", "--out-of-place"]),
        ("  statistic: rank0\n  placement: in-place\n", ["-a 0", "--in-place"], ["--out-of-place"]),
        ("  statistic: min\n  placement: out-of-place\n", ["-a 2", "--out-of-place"], ["--in-place"]),
        ("  placement: both\n", ["-a 1"], ["--in-place", "--out-of-place"]),
        ("  out_of_place: true\n", ["--out-of-place"], ["--in-place"]),
        ("  out_of_place: false\n", ["--in-place"], ["--out-of-place"]),  # what false always meant
    ],
)
def test_statistic_and_placement_render_to_the_benchmark_flags(tmp_path, fixed, flags, not_flags):
    plan, _ = plan_for(
        tmp_path, "perlmutter", COLLECTIVE.replace("  dtype: bf16\n", f"  dtype: bf16\n{fixed}")
    )
    for run in plan.runs:
        words = f" {run.command} "
        assert all(f" {flag} " in words for flag in flags), run.command
        assert not any(f" {flag} " in words for flag in not_flags), run.command
        assert words.count(" -a ") == 1


def test_a_bad_statistic_or_two_placements_are_refused_at_their_line(tmp_path, capsys):
    from study.cli import main

    for fixed, message in (
        ("  statistic: median\n", "statistic: expected one of rank0, mean, min, max, got 'median'"),
        ("  placement: inplace\n", "placement: expected one of both, out-of-place, in-place"),
        (
            "  placement: in-place\n  out_of_place: true\n",
            "`out_of_place` is the older spelling of `placement`",
        ),
    ):
        path = experiment_file(tmp_path, COLLECTIVE.replace("  dtype: bf16\n", f"  dtype: bf16\n{fixed}"))
        assert main(["validate", str(path), "--system", "perlmutter"]) == 2
        err = capsys.readouterr().err
        assert f"{path}:" in err and message in err, err


# ---------------------------------------------------------------------------------------------------
# Quoting and refusals.

HOSTILE = "a b; rm -rf / $(touch MARK) `touch MARK` 'q' \"d\" \\ & | > x"


def test_hostile_values_are_quoted(tmp_path):
    text = (
        INFERENCE.replace("model: llama3.1-70b", f"model: {json.dumps(HOSTILE)}")
        + f"env:\n  EVIL: {json.dumps(HOSTILE)}\n"
    )
    plan, scripts = plan_for(tmp_path, "perlmutter", text)
    words = shlex.split(plan.runs[0].command)
    assert words[words.index("--model") + 1] == HOSTILE
    script = scripts[plan.jobs[0].script]
    assert f"export EVIL={shlex.quote(HOSTILE)}" in script
    assert shlex.quote(HOSTILE) in script


@pytest.mark.parametrize("bad", ["m1234\n#SBATCH --qos=top", "a b", "acc'ount", "x\r"])
def test_directive_breaking_account_is_refused(tmp_path, bad):
    with pytest.raises(InputError, match="refusing to write .* --account"):
        plan_for(tmp_path, "perlmutter", account=bad)


def test_directive_breaking_override_is_refused_and_nothing_written(tmp_path):
    text = COLLECTIVE.replace(
        "runs_per_job: 2}}", 'runs_per_job: 2, scheduler: {{qos: "x\\n#SBATCH --nodes=99"}}}}'
    )
    path = experiment_file(tmp_path, text)
    ws = tmp_path / "ws"
    # Refused when the experiment is read, at its file, line and key, before anything is rendered.
    with pytest.raises(InputError, match=r"exp\.yaml:\d+:\d+: resources\.scheduler\.qos: .* holds '\\n'"):
        render_workspace(path, system="perlmutter", workspace=ws, account="a")
    assert not ws.exists()


@pytest.mark.parametrize("value", ["$(touch /tmp/x)", "`id`", "regular debug", "--nodes=99", "a;b", "a>b"])
def test_directive_values_no_site_accepts_are_refused_at_validation(tmp_path, capsys, value):
    from study.cli import main

    text = COLLECTIVE.replace(
        "runs_per_job: 2}}", "runs_per_job: 2, scheduler: {{qos: " + json.dumps(value) + "}}}}"
    )
    path = experiment_file(tmp_path, text)
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:" in err and "resources.scheduler.qos" in err and "Traceback" not in err
    assert (
        main(
            [
                "render",
                str(path),
                "--system",
                "perlmutter",
                "--account",
                "a",
                "--workspace",
                str(tmp_path / "w"),
            ]
        )
        == 2
    )
    assert not (tmp_path / "w").exists()


def test_system_files_with_such_values_are_refused_too(tmp_path):
    import yaml

    from study.systems import load_system

    data = yaml.safe_load((REPO_ROOT / "jobs" / "systems" / "perlmutter.yaml").read_text())
    data["scheduler_options"]["constraint"] = "gpu$(id)"
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(InputError, match=r"site\.yaml:\d+.*scheduler_options\.constraint: .* holds '\$'"):
        load_system(path)


def test_missing_account_is_an_error_at_render_only(tmp_path, monkeypatch):
    monkeypatch.delenv("STUDY_ACCOUNT", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "noconfig"))
    path = experiment_file(tmp_path, COLLECTIVE)
    with pytest.raises(InputError, match="system perlmutter needs an account: pass --account"):
        render_workspace(path, system="perlmutter", workspace=tmp_path / "ws")
    assert not (tmp_path / "ws").exists()
    plan, _ = build_plan(load_experiment(path), load_system("perlmutter"), WS, None, scripts=False)
    assert len(plan.runs) == 2
    monkeypatch.setenv("STUDY_ACCOUNT", "m999")
    render_workspace(path, system="perlmutter", workspace=tmp_path / "ws")
    assert "#SBATCH --account=m999" in (tmp_path / "ws" / plan.jobs[0].script).read_text()


# ---------------------------------------------------------------------------------------------------
# Every system x kind: bash -n, and golden files (UPDATE_GOLDEN=1 rewrites them).


def _normalize(text: str) -> str:
    return text.replace(sys.executable, "@PYTHON@").replace(str(REPO_ROOT), "@REPO@")


@pytest.mark.parametrize("kind", ["collective", "inference"])
@pytest.mark.parametrize("system_name", SYSTEM_NAMES)
def test_golden_and_bash_syntax(tmp_path, system_name, kind):
    plan, scripts = plan_for(tmp_path, system_name, COLLECTIVE if kind == "collective" else INFERENCE)
    for rel, text in scripts.items():
        path = tmp_path / Path(rel).name
        path.write_text(text)
        check = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
        assert check.returncode == 0, check.stderr
    golden = GOLDEN / f"{system_name}-{kind}.sh"
    text = _normalize(scripts[plan.jobs[0].script])
    if os.environ.get("UPDATE_GOLDEN") == "1":
        golden.write_text(text)
    assert golden.exists(), f"{golden} missing: run with UPDATE_GOLDEN=1 once and review it"
    assert text == golden.read_text()


@pytest.mark.parametrize("launcher", ["srun", "mpiexec", "mpirun", "torchrun"])
@pytest.mark.parametrize("scheduler", ["slurm", "pbs"])
def test_golden_launchers(tmp_path, launcher, scheduler):
    base = (SYSTEMS_DIR / "generic-ib.yaml").read_text()
    system_file = tmp_path / "sys.yaml"
    system_file.write_text(
        base.replace("launcher: srun", f"launcher: {launcher}").replace(
            "scheduler: slurm", f"scheduler: {scheduler}"
        )
    )
    system = load_system(str(system_file))
    text = COLLECTIVE.replace("nodes: {nodes}", "nodes: [1, 2]")
    plan, _ = build_plan(load_experiment(experiment_file(tmp_path, text)), system, WS, None, scripts=False)
    lines = "".join(f"{r.nodes} {r.command}\n" for r in plan.runs)
    golden = GOLDEN / f"launcher-{scheduler}-{launcher}.txt"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        golden.write_text(_normalize(lines))
    assert _normalize(lines) == golden.read_text()


# ---------------------------------------------------------------------------------------------------
# Writing the workspace.


def test_workspace_contents_and_determinism(tmp_path):
    path = experiment_file(tmp_path, COLLECTIVE)
    ws = tmp_path / "ws"
    plan = render_workspace(path, system="perlmutter", workspace=ws, account="a")
    assert {p.name for p in ws.iterdir()} == {
        "experiment.yaml",
        "system.yaml",
        "plan.csv",
        "plan.json",
        "jobs",
        "runs",
    }
    data = json.loads((ws / "plan.json").read_text())
    assert data["schema"] == "study.plan/1" and data["workspace"] == str(ws.absolute())
    assert [r["run_id"] for r in data["runs"]] == [r.run_id for r in plan.runs]
    for run in plan.runs:
        spec = json.loads((ws / "runs" / run.run_id / "spec.json").read_text())
        assert spec["params"] == run.params and spec["command"] == run.command and spec["job"] == run.job
    script = ws / plan.jobs[0].script
    assert os.access(script, os.X_OK)
    assert load_experiment(ws / "experiment.yaml").name == "golden-collective"
    assert load_plan(ws) == plan
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in ws.rglob("*") if p.is_file()}
    render_workspace(path, system="perlmutter", workspace=ws, account="a")
    after = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in ws.rglob("*") if p.is_file()}
    assert after == before
    csv_lines = (ws / "plan.csv").read_text().splitlines()
    assert csv_lines[0].startswith("run_id,repeat,job,nodes,gpus_per_node,world_size,walltime_s,algorithms")
    assert len(csv_lines) == 1 + len(plan.runs)


def test_dry_run_writes_nothing(tmp_path):
    ws = tmp_path / "ws"
    plan = render_workspace(
        experiment_file(tmp_path, COLLECTIVE), system="perlmutter", workspace=ws, account="a", dry_run=True
    )
    assert len(plan.jobs) == 1 and not ws.exists()


def test_rerender_keeps_runs_and_remembers_previous(tmp_path):
    ws = tmp_path / "ws"
    first = render_workspace(
        experiment_file(tmp_path, COLLECTIVE), system="perlmutter", workspace=ws, account="a"
    )
    attempt = ws / "runs" / first.runs[0].run_id / "attempt-1"
    attempt.mkdir()
    (attempt / "results.json").write_text("{}")
    changed = COLLECTIVE.replace("iterations: 100", "iterations: 200")
    second = render_workspace(
        experiment_file(tmp_path, changed), system="perlmutter", workspace=ws, account="a"
    )
    assert not {r.run_id for r in first.runs} & {r.run_id for r in second.runs}
    assert (attempt / "results.json").read_text() == "{}"
    assert {r.run_id for r in second.previous_runs} == {r.run_id for r in first.runs}
    assert {r.run_id for r in load_plan(ws).previous_runs} == {r.run_id for r in first.runs}
    assert all((ws / j.script).exists() for j in first.jobs + second.jobs)


def test_render_jobs_adds_scripts_without_collisions(tmp_path):
    ws = tmp_path / "ws"
    plan = render_workspace(
        experiment_file(tmp_path, COLLECTIVE), system="perlmutter", workspace=ws, account="a"
    )
    ids = [plan.runs[1].run_id]
    first = render_jobs(ws, ids, "rerun", account="a")
    second = render_jobs(ws, ids, "rerun", account="a")
    assert first[0].name != second[0].name and first[0].runs == ids
    assert first[0].name.startswith("golden-collective-rerun-")
    names = [j.name for j in load_plan(ws).jobs]
    assert len(names) == len(set(names)) == 3
    text = (ws / second[0].script).read_text()
    assert f"#SBATCH --comment=study:{ids[0]}" in text
    with pytest.raises(InputError, match="not in"):
        render_jobs(ws, ["nope"], "rerun", account="a")


def test_workspace_of_another_experiment_is_refused(tmp_path):
    ws = tmp_path / "ws"
    render_workspace(experiment_file(tmp_path, COLLECTIVE, nodes=1), system="local", workspace=ws)
    with pytest.raises(InputError, match="holds experiment"):
        render_workspace(
            experiment_file(tmp_path, INFERENCE, nodes=1, name="i.yaml"), system="local", workspace=ws
        )


def test_unchanged_inputs_render_identical_bytes_in_two_workspaces(tmp_path):
    path = experiment_file(tmp_path, textwrap.dedent(INFERENCE))
    a = render_workspace(path, system="vista", workspace=tmp_path / "a", account="x")
    b = render_workspace(path, system="vista", workspace=tmp_path / "b", account="x")
    for job_a, job_b in zip(a.jobs, b.jobs, strict=True):
        text_a = (tmp_path / "a" / job_a.script).read_text().replace(str(tmp_path / "a"), "WS")
        text_b = (tmp_path / "b" / job_b.script).read_text().replace(str(tmp_path / "b"), "WS")
        assert text_a == text_b


def test_plan_with_keys_from_a_newer_writer_still_loads(tmp_path):
    ws = tmp_path / "ws"
    plan = render_workspace(experiment_file(tmp_path, COLLECTIVE, nodes=1), system="local", workspace=ws)
    data = json.loads((ws / "plan.json").read_text())
    data["runs"][0]["added_later"] = 1
    data["jobs"][0]["added_later"] = 2
    (ws / "plan.json").write_text(json.dumps(data))
    assert load_plan(ws) == plan


VLLM = """\
version: 1
name: golden-vllm
kind: inference
resources: {walltime: 30m}
sweep:
  zip:
    nodes: [2, 4, 2]
    tp: [8, 16, 4]
    pp: [1, 1, 2]
fixed:
  engine: vllm
  allreduce: native
  model: llama3.1-70b
  batch_size: 16
  prompt_len: 1024
  decode_len: 128
  dtype: bf16
  seed: 7
"""


@pytest.mark.parametrize("system_name", ["perlmutter", "polaris"])
def test_golden_vllm_scripts(tmp_path, system_name):
    """vLLM over nodes: TP 8 on 2 nodes, TP 16 on 4, TP 4 x PP 2 on 2. One launcher line per run (one
    process per node, the system's vLLM interpreter and environment), placed in the job scripts."""
    system = load_system(system_name)
    experiment = load_experiment(experiment_file(tmp_path, VLLM.replace("{", "{{").replace("}", "}}")))
    plan, scripts = build_plan(experiment, system, WS, "acct0")
    for rel, text in scripts.items():
        path = tmp_path / Path(rel).name
        path.write_text(text)
        check = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
        assert check.returncode == 0, check.stderr
    lines = "".join(f"{r.nodes} tp={r.params['tp']} pp={r.params['pp']} {r.command}\n" for r in plan.runs)
    assert all("-m engine.external.vllm" in r.command for r in plan.runs)
    assert all(f"-n {r.nodes} --ppn 1" in r.command or f"--ntasks={r.nodes} " in r.command for r in plan.runs)
    golden, text = GOLDEN / f"vllm-{system_name}.txt", _normalize(lines)
    if os.environ.get("UPDATE_GOLDEN") == "1":
        golden.write_text(text)
    assert golden.exists(), f"{golden} missing: run with UPDATE_GOLDEN=1 once and review it"
    assert text == golden.read_text()
    # The job script is the one every engine gets (its whole text is golden for the bundled engine):
    # each of its runs starts exactly the launcher line above.
    job = plan.jobs[0]
    script = scripts[job.script]
    for run in (r for r in plan.runs if r.run_id in job.runs):
        assert f'( cd "$STUDY_ATTEMPT_DIR" && exec {run.command} ) \\\n' in script


def test_vllm_refuses_what_only_the_bundled_engine_honours(tmp_path, capsys):
    from study.cli import main

    for change, where, message in (
        ("  seed: 7\n  micro_batches: 2\n", "micro_batches", "`micro_batches` is a parameter of the bundled"),
        ("  seed: 7\n  decode_kernels: fused\n", "decode_kernels", "`decode_kernels` is a parameter"),
        (None, "allreduce", "engine vllm uses its own all-reduce, not `nvrar`: write `native`"),
    ):
        text = (
            VLLM.replace("  seed: 7\n", change)
            if change
            else VLLM.replace("allreduce: native", "allreduce: nvrar")
        )
        path = tmp_path / f"{where}.yaml"
        path.write_text(text)
        assert main(["validate", str(path), "--system", "perlmutter"]) == 2
        err = capsys.readouterr().err
        assert f"{path}:" in err and f"fixed.{where}: {message}" in err, err
