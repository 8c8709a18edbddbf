"""Stand-ins for Slurm's commands on one machine, for submitit's Slurm executor: `sbatch` keeps
a copy of the script it is given and runs the job (each array task) in the background with the
job's variables, recording its state; `sacct` reports the states; `srun` starts one task a node
of the job (`#SBATCH --nodes`), each with its node's variables, every node on 127.0.0.1."""

from __future__ import annotations

import sys
from pathlib import Path

FAKE_SBATCH = """#!{python}
import os, pathlib, re, shutil, subprocess, sys
state = pathlib.Path(os.environ["FAKE_SLURM_STATE"])
state.mkdir(exist_ok=True)
counter = state / "next_id"
job = int(counter.read_text()) if counter.exists() else 1000
counter.write_text(str(job + 1))
script = sys.argv[-1]
text = open(script).read()
shutil.copyfile(script, state / f"{{job}}.sbatch")
array = re.search(r"#SBATCH --array=(\\d+)-(\\d+)", text)
nodes = re.search(r"#SBATCH --nodes=(\\d+)", text)
nodes = int(nodes[1]) if nodes else 1
tasks = range(int(array[1]), int(array[2]) + 1) if array else [None]
for task in tasks:
    key = str(job) if task is None else f"{{job}}_{{task}}"
    env = dict(os.environ, SLURM_JOB_ID=str(job), SLURM_JOB_NUM_NODES=str(nodes),
               SLURM_NNODES=str(nodes), SLURM_JOB_NODELIST=",".join(["127.0.0.1"] * nodes))
    if task is not None:
        env.update(SLURM_JOB_ID=str(job + 1 + task), SLURM_ARRAY_JOB_ID=str(job),
                   SLURM_ARRAY_TASK_ID=str(task))
    (state / key).write_text("RUNNING")
    record = f"bash {{script}} && s=COMPLETED || s=FAILED; echo $s > {{state}}/{{key}}"
    subprocess.Popen(["bash", "-c", record], env=env, start_new_session=True,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # sbatch returns now
print(f"Submitted batch job {{job}}")
"""
FAKE_SACCT = """#!{python}
import os, pathlib, sys
state = pathlib.Path(os.environ["FAKE_SLURM_STATE"])
jobs = {{sys.argv[i + 1] for i, a in enumerate(sys.argv) if a == "-j"}}
print("JobID|State|NodeList")
for p in sorted(state.iterdir()):
    if p.name.split("_")[0] in jobs:
        print(f"{{p.name}}|{{p.read_text().strip()}}|localhost")
"""
FAKE_SRUN = """#!{python}
import os, pathlib, subprocess, sys
args, out, err = sys.argv[1:], os.devnull, os.devnull
while args[0].startswith("-"):
    flag = args.pop(0)
    if flag == "--output":
        out = args.pop(0)
    elif flag == "--error":
        err = args.pop(0)
nodes = int(os.environ.get("SLURM_JOB_NUM_NODES", "1"))
def fill(pattern, task):
    names = {{"%A": "SLURM_ARRAY_JOB_ID", "%a": "SLURM_ARRAY_TASK_ID", "%j": "SLURM_JOB_ID"}}
    for key, name in names.items():
        pattern = pattern.replace(key, os.environ.get(name, ""))
    return pattern.replace("%t", str(task))
procs = []
for node in range(nodes):
    env = dict(os.environ, SLURM_NODEID=str(node), SLURM_PROCID=str(node), SLURM_LOCALID="0",
               SLURM_NTASKS=str(nodes))
    paths = [pathlib.Path(fill(p, node)) for p in (out, err)]
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
    streams = [open(path, "a") for path in paths]
    procs.append(subprocess.Popen(args, env=env, stdout=streams[0], stderr=streams[1]))
sys.exit(max(p.wait() for p in procs))
"""


def install_fake_slurm(directory: Path) -> dict[str, str]:
    """Write `sbatch`, `sacct` and `srun` into `directory`; the environment that puts them first
    on PATH (the scripts each job submits are kept in `FAKE_SLURM_STATE`, `<job id>.sbatch`)."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in [("sbatch", FAKE_SBATCH), ("sacct", FAKE_SACCT), ("srun", FAKE_SRUN)]:
        path = directory / name
        path.write_text(text.format(python=sys.executable))
        path.chmod(0o755)
    return {
        "PATH": f"{directory}:{Path(sys.executable).parent}:/usr/bin:/bin",
        "FAKE_SLURM_STATE": str(directory.parent / "slurm-state"),
    }
