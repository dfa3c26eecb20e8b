"""How gymctl's own commands reach a stack it started: the token `up` hands the containers, and the record that lets
`gymctl status` / `gymctl collect` with no --head find the stack's head URL, scheme, CA and token (gymctl.docker.stack_state)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

TOKEN_ENV = "GYMCTL_AUTH_TOKEN"  # gymctl.server.auth's (not imported here: the CLI starts without the server stack)
CA_ENV = "GYMCTL_TLS_CA_FILE"


def stack_token(project: str, *, no_auth: bool) -> tuple[str, Path | None]:
    """The token of `up`'s stack: GYMCTL_AUTH_TOKEN when set (kept too), else the stack's own (generated once); '' with --no-auth."""
    from gymctl.docker.stack_state import stack_dir, stack_token, write_private
    from gymctl.server.settings import ServerSettings

    given = ServerSettings.from_env().auth_token  # a token with a newline or a space: a ConfigError here
    if no_auth:
        if given:
            from gymctl.errors import UsageError

            raise UsageError(f"--no-auth with {TOKEN_ENV} set: unset {TOKEN_ENV}, or drop --no-auth")
        print("warning: --no-auth: the stack's servers accept anyone who reaches their ports (the seed's trusted-network mode)",
              file=sys.stderr)
        return "", None
    if given:
        from gymctl.docker.stack_state import TOKEN_FILE

        return given, write_private(stack_dir(project) / TOKEN_FILE, given + "\n")
    return stack_token(project)


def remember(project: str, topology: str, head_url: str, token_file: Path | None, ca_file: Path | None) -> None:
    from gymctl.docker.stack_state import StackRecord, save_record

    save_record(StackRecord(project=project, topology=topology, head_url=head_url.rstrip("/"),
                            token_file=str(token_file) if token_file else None, ca_file=str(ca_file) if ca_file else None))


def use_stack(head: str | None, project: str | None = None) -> str | None:
    """The head to talk to: `head` (an explicit --head, config or GYMCTL_HEAD_URL), else the record of the stack `up` started
    here (`project`'s, or the only one). A stack's record also hands this process its token and CA, unless set already.

    None: no head named and no stack recorded (the caller's default applies)."""
    from gymctl.docker.stack_state import find_record

    record = find_record(head_url=head) if head else find_record(project=project)
    if record is None:
        return head
    token = record.token()
    if token and not os.environ.get(TOKEN_ENV):
        os.environ[TOKEN_ENV] = token
    if record.ca_file and not os.environ.get(CA_ENV):
        os.environ[CA_ENV] = record.ca_file
    return head or record.head_url
