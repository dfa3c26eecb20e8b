"""`gymctl cluster create|ls|delete`: a local multi-node lab of Docker-in-Docker nodes and a registry (a lab, not production)."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Annotated

import typer

from gymctl.cli.options import JsonOpt, print_json

if TYPE_CHECKING:
    from gymctl.docker.lab import Lab

cluster_app = typer.Typer(
    help="A local multi-node lab (what kind is for Kubernetes): Docker-in-Docker nodes, each its own engine and address, "
         "and an image registry. A lab to try multi-host deploys on, not production.",
    no_args_is_help=True,
)


def _summary(lab: Lab) -> None:
    from rich.console import Console
    from rich.table import Table

    from gymctl.cli.console import err as term

    err = term if term.is_terminal else Console(stderr=True, width=200)  # a log file gets whole addresses

    if not lab.nodes and not lab.registry:
        err.print("no lab is up (`gymctl cluster create` starts one)")
        return
    table = Table(title="gymctl lab" + (" (swarm)" if lab.swarm else ""), title_justify="left")
    for col in ("node", "lab address", "engine", "context", "state", "fake GPUs"):
        table.add_column(col)
    for n in lab.nodes:
        table.add_row(n.name, n.address, f"tcp://{n.address}:2375", n.context if n.context in lab.contexts else "(missing)", n.status, str(n.gpus or ""))
    err.print(table)
    err.print(f"registry: {lab.registry} from this machine (gymctl push --registry {lab.registry}), {lab.registry_lab_name} from the nodes")
    err.print(f"network: {lab.network}   contexts: {', '.join(lab.contexts) or '(none)'}; e.g. docker --context gymctl-lab ps")
    sys.stderr.flush()


@cluster_app.command("create")
def create(
    nodes: Annotated[int, typer.Option("--nodes", "-n", help="How many nodes (Docker engines).")] = 2,
    gpu_nodes: Annotated[int, typer.Option("--gpu-nodes", help="With --swarm: how many of the first nodes advertise fake GPUs.")] = 0,
    gpus_per_node: Annotated[int, typer.Option("--gpus-per-node", help="With --swarm: fake GPUs (swarm generic resource NVIDIA-GPU) per GPU node.")] = 0,
    swarm: Annotated[bool, typer.Option("--swarm", help="Form a swarm: node 1 is the manager, the others join.")] = False,
    privileged: Annotated[bool, typer.Option("--privileged", help=(
        "Run the nodes --privileged (the usual way on an ordinary Docker host). Default: the capability recipe "
        "(SYS_ADMIN, NET_ADMIN, NET_RAW, MKNOD, seccomp/apparmor unconfined) that works where --privileged is refused."))] = False,
    registry_port: Annotated[int, typer.Option("--registry-port", help="The registry's port on this machine's 127.0.0.1.")] = 5000,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait for each engine.")] = 90.0,
    dockerd_arg: Annotated[list[str] | None, typer.Option("--dockerd-arg", hidden=True, help="An extra dockerd flag for every node.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Start the lab: N nodes on a private Docker network, a registry, and the contexts gymctl-lab and gymctl-lab-node<i>."""
    from gymctl.docker.lab import create_lab

    t0 = time.monotonic()

    def progress(what: str, state: str) -> None:
        print(f"  {time.monotonic() - t0:5.1f} s  {what}: {state}", file=sys.stderr, flush=True)

    lab = create_lab(nodes, gpu_nodes=gpu_nodes, gpus_per_node=gpus_per_node, swarm=swarm, privileged=privileged,
                     registry_port=registry_port, dockerd_args=list(dockerd_arg or []), timeout_s=timeout, progress=progress)
    print(f"lab up in {lab.seconds:.1f} s", file=sys.stderr)
    _summary(lab)
    if as_json:
        print_json(lab)


@cluster_app.command("ls")
def ls(as_json: JsonOpt = False) -> None:
    """The lab's nodes, addresses, contexts and registry."""
    from gymctl.docker.lab import inspect_lab

    lab = inspect_lab()
    _summary(lab)
    if as_json:
        print_json(lab)


@cluster_app.command("delete")
def delete(as_json: JsonOpt = False) -> None:
    """Remove every trace of the lab: containers, networks, volumes (label io.gymctl.cluster) and the gymctl-lab contexts."""
    from gymctl.docker.lab import delete_lab

    counts = delete_lab()
    print("lab deleted: " + ", ".join(f"{n} {kind}" for kind, n in counts.items()), file=sys.stderr)
    if as_json:
        print_json(counts)


def register(app: typer.Typer) -> None:
    app.add_typer(cluster_app, name="cluster")
    cluster_app.command("status", help="Same as `gymctl cluster ls`.")(ls)
