"""The one tree of errors gymctl raises; `gymctl.cli` turns them into `Type: message` and an exit code.

    GymctlError                  anything gymctl reports to a user (exit code 1 unless said)
    +-- ConfigError              a config file, override or key is wrong (.source .key_path); exit 2
    +-- UsageError               a command-line flag or argument is wrong; exit 2
    +-- InputError               an input file (JSONL, ...) is wrong (.source .line)
    +-- HeadUnreachableError     the head did not answer (.url .waited_s)
    +-- ServerError              a server answered with an error or not at all (.server .status)
    |   +-- UnknownServerError   no instance of that name is registered (.known)
    |   +-- ReplicaLostError     the replica serving a call was lost mid-call (.url)
    +-- PortInUseError           a port gymctl must bind is taken (.host .port .owner)
    +-- StartupError             a server or child process failed to start (.instance .log_tail .process_exit_code)
    +-- NotReadyError            a deployment did not become ready in time (.service .status .log_tail)
    |   +-- WaitTimeoutError     a condition polled for did not hold in time (.what .waited_s .detail)
    +-- DockerError              the Docker CLI or engine failed (.argv .returncode .stderr)
    |   +-- DockerUnavailableError   no engine or no Compose v2, and how to get it
    +-- StackNotUpError          restart/logs/ps on a stack that is not up (gymctl.docker.stack)
    +-- RayError                 Ray, for gymctl.ray and --topology ray
        +-- RayNotInstalledError     the `ray` package is missing (also an ImportError): pip install 'gymctl[ray]'
        +-- RayUnreachableError      no Ray cluster answers at ray_head_node_address (.address .waited_s)
        +-- RayVersionMismatchError  the cluster runs another Ray or Python version (.ours .cluster)
        +-- RayPlacementError        no node of the cluster offers what an actor asks for (.resources)
"""

from __future__ import annotations


def did_you_mean(word: str, choices: list[str] | tuple[str, ...] | set[str]) -> str:
    """"; did you mean 'x'?" for the closest choice, or "" when nothing is close (every such hint says it so)."""
    from difflib import get_close_matches

    match = get_close_matches(word, list(choices), n=1)
    return f"; did you mean {match[0]!r}?" if match else ""


class GymctlError(Exception):
    """Base of every error gymctl reports to a user."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[object, ...]:
        # Pickled whole (message and attributes), whatever __init__ takes: errors cross process and Ray actor boundaries intact.
        return (_rebuild, (type(self), self.message, self.__dict__))


def _rebuild(cls: type[GymctlError], message: str, state: dict[str, object]) -> GymctlError:
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    return error


class ConfigError(GymctlError):
    """A config file, override or key is wrong: says where (file, key path) and what to do."""

    exit_code = 2

    def __init__(self, message: str, *, source: str | None = None, key_path: str | None = None) -> None:
        where = ": ".join(p for p in (source, key_path) if p)
        super().__init__(f"{where}: {message}" if where else message)
        self.source = source
        self.key_path = key_path


class UsageError(GymctlError):
    """A command-line flag or argument is wrong."""

    exit_code = 2


class InputError(GymctlError):
    """An input file is wrong: says which file and line."""

    def __init__(self, message: str, *, source: str | None = None, line: int | None = None) -> None:
        where = f"{source}:{line}" if source and line else (source or "")
        super().__init__(f"{where}: {message}" if where else message)
        self.source = source
        self.line = line


class HeadUnreachableError(GymctlError):
    """The head server did not answer."""

    def __init__(self, url: str, waited_s: float, detail: str = "") -> None:
        msg = f"head at {url} unreachable after {waited_s:.0f} s"
        if detail:
            msg += f" ({detail})"
        msg += "; is it running? (gymctl run, or pass --head URL)"
        super().__init__(msg)
        self.url = url
        self.waited_s = waited_s


class ServerError(GymctlError):
    """A server answered with an error status, or could not be reached."""

    def __init__(self, message: str, *, server: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.server = server
        self.status = status


class UnknownServerError(ServerError):
    """No instance of that name is registered with the head."""

    def __init__(self, name: str, known: list[str]) -> None:
        msg = f"no server instance named {name!r} is registered{did_you_mean(name, known)}"
        msg += f" (known: {', '.join(sorted(known)) or 'none'})"
        super().__init__(msg, server=name, status=404)
        self.known = known


class ReplicaLostError(ServerError):
    """A call was in flight to a replica whose lease expired (or whose connection broke) and could not fail over."""

    def __init__(self, name: str, url: str, detail: str) -> None:
        super().__init__(f"{name} at {url} was lost mid-call ({detail}); a rerun of the collection retries it", server=name, status=503)
        self.url = url


class PortInUseError(GymctlError):
    """A port gymctl must bind is already taken."""

    def __init__(self, host: str, port: int, owner: str) -> None:
        super().__init__(
            f"{owner}: port {port} on {host} is already in use; stop what holds it "
            f"(ss -ltnp 'sport = :{port}') or choose another port"
        )
        self.host = host
        self.port = port
        self.owner = owner


class StartupError(GymctlError):
    """A server or child process failed to start."""

    def __init__(
        self, message: str, *, instance: str | None = None, exit_code: int | None = None, log_tail: str = ""
    ) -> None:
        text = message
        if log_tail:
            text += "\n--- last log lines ---\n" + log_tail.rstrip()
        super().__init__(text)
        self.instance = instance
        self.process_exit_code = exit_code
        self.log_tail = log_tail


class NotReadyError(GymctlError):
    """A deployment did not become ready in time."""

    def __init__(self, message: str, *, service: str | None = None, status: str | None = None, log_tail: str = "") -> None:
        text = message
        if log_tail:
            text += "\n--- last log lines ---\n" + log_tail.rstrip()
        super().__init__(text)
        self.service = service
        self.status = status
        self.log_tail = log_tail


class DockerError(GymctlError):
    """The Docker CLI or engine failed."""

    def __init__(self, message: str, *, argv: list[str] | None = None, returncode: int | None = None, stderr: str = "") -> None:
        super().__init__(message)
        self.argv = argv or []
        self.returncode = returncode
        self.stderr = stderr


class DockerUnavailableError(DockerError):
    """No Docker engine, or no Compose v2: says which and how to get it."""


class WaitTimeoutError(NotReadyError):
    """A condition gymctl polled for (gymctl.polling.poll_until) did not hold in time: says what and for how long."""

    def __init__(self, what: str, waited_s: float, detail: str = "") -> None:
        super().__init__(f"{what}: not after {waited_s:.1f} s" + (f" ({detail})" if detail else ""), service=what)
        self.what = what
        self.waited_s = waited_s
        self.detail = detail


class RayError(GymctlError):
    """Ray is missing, unreachable, of another version, or cannot place an actor."""


class RayNotInstalledError(RayError, ImportError):
    """The `ray` package is not installed (catchable as ImportError too)."""

    def __init__(self, what: str = "gymctl.ray") -> None:
        super().__init__(f"{what} needs Ray, which is not installed here; install it with: pip install 'gymctl[ray]'")


class RayUnreachableError(RayError):
    """No Ray cluster answered at the given address in time."""

    def __init__(self, address: str, waited_s: float, detail: str = "") -> None:
        super().__init__(
            f"no Ray cluster answers at ray_head_node_address={address} after {waited_s:.0f} s" + (f" ({detail})" if detail else "")
            + "; is the cluster up (ray status --address " + address + ")? Give its GCS address (host:port, default port 6379),"
            " or leave ray_head_node_address unset to start a local cluster"
        )
        self.address = address
        self.waited_s = waited_s


class RayVersionMismatchError(RayError):
    """This process and the cluster run different Ray or Python versions."""

    def __init__(self, address: str, ours: str, cluster: str) -> None:
        super().__init__(
            f"the Ray cluster at {address} runs {cluster}, this process {ours}; Ray requires the same Ray and Python "
            "versions on every node and driver: install the cluster's versions here (pip install ray==VERSION) or run gymctl "
            "from the trainer's environment"
        )
        self.ours = ours
        self.cluster = cluster


class RayPlacementError(RayError):
    """No node of the cluster offers the resources an actor asks for (it would stay pending forever)."""

    def __init__(self, who: str, resources: dict[str, float], offered: str) -> None:
        asked = ", ".join(f"{k}={v:g}" for k, v in sorted(resources.items()))
        super().__init__(
            f"{who} asks for {asked}, which no node of the Ray cluster offers (nodes offer: {offered}); add a node that has it "
            "(ray start --resources '{\"NAME\": N}') or change the instance's gpus / ray_resources"
        )
        self.resources = resources
