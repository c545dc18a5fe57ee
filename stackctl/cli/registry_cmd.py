"""``stackctl pull | push | login | logout | search`` (and ``image pull | push``): registries
from the command line, with Docker's flags and output. Thin: the work is in
:mod:`stackctl.runtime.images.registry`; ``pull`` and ``push`` run the bodies in
:mod:`stackctl.cli.registry_fast` (also used without click). Importing this module costs only click."""

from __future__ import annotations

import sys

import click

from stackctl.errors import UsageError

_CTX = {"help_option_names": ["-h", "--help"]}


# --- pull -----------------------------------------------------------------------------------

@click.command("pull", context_settings=_CTX)
@click.option("-a", "--all-tags", is_flag=True, help="Download all tagged images in the repository.")
@click.option("--platform", default="", help="Set platform if server is multi-platform capable (os/arch[/variant]).")
@click.option("-q", "--quiet", is_flag=True, help="Suppress verbose output.")
@click.option("--disable-content-trust", is_flag=True, default=True, hidden=True)
@click.argument("name", metavar="NAME[:TAG|@DIGEST]")
def pull(all_tags: bool, platform: str, quiet: bool, disable_content_trust: bool, name: str) -> None:
    """Download an image from a registry."""
    from stackctl.cli.registry_fast import run_pull

    run_pull(name, all_tags=all_tags, platform=platform, quiet=quiet)


# --- push -----------------------------------------------------------------------------------

@click.command("push", context_settings=_CTX)
@click.option("-a", "--all-tags", is_flag=True, help="Push all tags of an image to the repository.")
@click.option("-q", "--quiet", is_flag=True, help="Suppress verbose output.")
@click.option("--disable-content-trust", is_flag=True, default=True, hidden=True)
@click.argument("name", metavar="NAME[:TAG]")
def push(all_tags: bool, quiet: bool, disable_content_trust: bool, name: str) -> None:
    """Upload an image to a registry."""
    from stackctl.cli.registry_fast import run_push

    run_push(name, all_tags=all_tags, quiet=quiet)


# --- login / logout -------------------------------------------------------------------------

@click.command("login", context_settings=_CTX)
@click.option("-u", "--username", default="", help="Username.")
@click.option("-p", "--password", default="", help="Password (prefer --password-stdin).")
@click.option("--password-stdin", is_flag=True, help="Take the password from stdin.")
@click.argument("server", required=False, default="")
def login(username: str, password: str, password_stdin: bool, server: str) -> None:
    """Log in to a registry (credentials go to ~/.config/stackctl/auth.json, mode 0600)."""
    from stackctl.runtime.images.registry.auth import CredentialStore, RegistryAuth
    from stackctl.runtime.images.registry.client import RegistryClient, check_login
    from stackctl.runtime.images.registry.reference import registry_key

    registry = registry_key(server)
    creds = CredentialStore()
    if password and password_stdin:
        raise UsageError("--password and --password-stdin are mutually exclusive")
    if password:
        click.echo("WARNING! Using --password via the CLI is insecure. Use --password-stdin.", err=True)
    if password_stdin:
        if not username:
            raise UsageError("must provide --username with --password-stdin")
        password = sys.stdin.read().rstrip("\r\n")
    if not username or not password:
        saved = creds.get(registry)
        if not username and not password and saved is not None and saved.has_basic:
            username, password = saved.username, saved.password
        elif not sys.stdin.isatty():
            raise UsageError(f"login {registry}: cannot prompt for credentials (stdin is not a terminal); "
                             "give --username and --password-stdin")
        else:
            username = username or click.prompt("Username", default=saved.username if saved else "")
            password = password or click.prompt("Password", hide_input=True)
    auth = RegistryAuth(username=username, password=password)
    with RegistryClient(registry, auth=auth) as client:
        client.subject = f"login {registry}"
        check_login(client)
    creds.save(registry, auth)
    click.echo("Login Succeeded")


@click.command("logout", context_settings=_CTX)
@click.argument("server", required=False, default="")
def logout(server: str) -> None:
    """Log out from a registry (forget stackctl's saved credentials for it)."""
    from stackctl.runtime.images.registry.auth import CredentialStore
    from stackctl.runtime.images.registry.reference import registry_key

    registry = registry_key(server)
    if CredentialStore().remove(registry):
        click.echo(f"Removing login credentials for {registry}")
    else:
        click.echo(f"Not logged in to {registry}")


# --- search ---------------------------------------------------------------------------------

@click.command("search", context_settings=_CTX)
@click.option("--limit", default=25, show_default=True, help="Max number of search results.")
@click.option("--format", "fmt", default="", help="table (default), json, or a Go template ({{.Name}}).")
@click.option("--no-trunc", is_flag=True, hidden=True)
@click.argument("term", metavar="REGISTRY/[TERM]")
def search(limit: int, fmt: str, no_trunc: bool, term: str) -> None:
    """Search a registry's repositories (its /v2/_catalog): `stackctl search localhost:5000/app`."""
    from stackctl.runtime.images.registry.client import RegistryClient, catalog
    from stackctl.runtime.images.registry.errors import RegistryError

    host, sep, word = term.partition("/")
    if not sep or not ("." in host or ":" in host or host == "localhost"):
        raise RegistryError(f"search {term}: Docker Hub's search API is not available to stackctl (it only "
                            "lists a registry's /v2/_catalog); search a registry: stackctl search HOST[:PORT]/TERM")
    if host in ("docker.io", "index.docker.io", "registry-1.docker.io"):
        raise RegistryError(f"search {term}: Docker Hub's search API is not available to stackctl and Docker "
                            "Hub has no catalog; search it on https://hub.docker.com")
    with RegistryClient(host) as client:
        client.subject = f"search {term}"
        names = [n for n in catalog(client) if word.lower() in n.lower()]
    rows = [{"Name": f"{host}/{n}", "Description": "", "StarCount": 0, "IsOfficial": False} for n in names[:limit]]
    from stackctl.cli import format as F

    if fmt == "json":
        if rows:
            click.echo(F.to_json_lines(rows))
    elif fmt and fmt != "table":
        for row in rows:
            click.echo(F.render_template(F.unescape_template(fmt), row))
    else:
        click.echo(F.table(("NAME",), [[row["Name"]] for row in rows]))
