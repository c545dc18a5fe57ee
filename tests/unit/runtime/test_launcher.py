"""The fast launcher (stackctl/launcher.py): the pure path computation, the generated script
run by the real interpreter, and the install step through its command line."""

from __future__ import annotations

import os
import site
import stat
import subprocess
import sys
from pathlib import Path

import pytest

import stackctl
from stackctl import launcher

PYTHON = os.path.realpath(sys.executable)
# the directory holding the `stackctl` package (the repository for an editable install)
PACKAGE_ROOT = str(Path(stackctl.__file__).resolve().parents[1])
# what a normal start adds for the dependencies (click, yaml, ...)
SITE = [p for p in site.getsitepackages() if os.path.isdir(p)]


# --- extra_paths (pure) -------------------------------------------------------------------

def test_extra_paths_package_root_first_then_site_order():
    got = launcher.extra_paths(["/lib/py311.zip", "/lib/py3.11", "/site-b", "/site-a"], ["/lib/py311.zip", "/lib/py3.11"],
                               "/repo")
    assert got == ["/repo", "/site-b", "/site-a"]


def test_extra_paths_skips_cwd_duplicates_and_bare_paths():
    with_site = ["", "/lib/py3.11", "/site", "/site", "/repo", "/user-site", ""]
    got = launcher.extra_paths(with_site, ["/lib/py3.11"], "/repo")
    # "" (the current directory) never; each path once; the package root is not repeated
    assert got == ["/repo", "/site", "/user-site"]


def test_extra_paths_without_site_additions_is_just_the_root():
    bare = ["/lib/py311.zip", "/lib/py3.11", "/lib/py3.11/lib-dynload"]
    assert launcher.extra_paths(bare, bare, "/repo") == ["/repo"]
    # the root is kept even when the bare interpreter has it (it comes first either way)
    assert launcher.extra_paths(bare, bare + ["/repo"], "/repo") == ["/repo"]


# --- render: the script, run as the kernel runs it (its #! line) ---------------------------

def _write_script(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o755)
    return path


def _run(path: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(path), *args], capture_output=True, text=True, timeout=60, cwd="/",
                          env=env if env is not None else dict(os.environ))


def test_render_runs_stackctl_version_with_the_real_interpreter(tmp_path):
    text = launcher.render(PYTHON, [PACKAGE_ROOT, *SITE])
    assert text.startswith(f"#!{PYTHON} -IS\n") and launcher.MARKER in text
    p = _run(_write_script(tmp_path / "stackctl", text), "--version")
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == f"stackctl version {stackctl.__version__}"


def test_render_imports_stackctl_from_the_given_path_only(tmp_path):
    # a stand-in package: proves which directory the script imports from
    fake = tmp_path / "fake"
    (fake / "stackctl").mkdir(parents=True)
    (fake / "stackctl" / "__init__.py").write_text("")
    (fake / "stackctl" / "launcher.py").write_text(
        "import sys\n"
        "def launch():\n"
        "    import stackctl\n"
        "    print('FAKE', stackctl.__file__, sys.argv[1:], sys.flags.no_site, sys.flags.isolated)\n"
        "    sys.exit(7)\n")
    script = _write_script(tmp_path / "stackctl", launcher.render(PYTHON, [str(fake)]))
    p = _run(script, "--version")
    assert p.returncode == 7, p.stderr
    assert p.stdout.split() == ["FAKE", str(fake / "stackctl" / "__init__.py"), "['--version']", "1", "1"]
    # -I: PYTHONPATH does not reach it (the real package would win otherwise: it comes first)
    p = _run(script, "--version", env=dict(os.environ, PYTHONPATH=PACKAGE_ROOT))
    assert p.returncode == 7 and p.stdout.startswith("FAKE "), p.stderr


def test_render_without_the_dependency_paths_fails_loudly(tmp_path):
    # no site-packages on the path: click is missing; the launcher does not fall back to site
    script = _write_script(tmp_path / "stackctl", launcher.render(PYTHON, [PACKAGE_ROOT]))
    p = _run(script, "--version")
    assert p.returncode != 0 and "ModuleNotFoundError" in p.stderr


# --- the install step: python3 -m stackctl.launcher ---------------------------------------

def _install(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, "-m", "stackctl.launcher", *args], capture_output=True, text=True, timeout=120,
                          cwd=cwd, env=dict(os.environ))


def _leftover_tmp(d: Path) -> list[str]:
    return sorted(n for n in os.listdir(d) if ".tmp" in n)


def test_install_writes_an_executable_launcher_at_dest(tmp_path):
    dest = tmp_path / "bin" / "stackctl"
    dest.parent.mkdir()
    p = _install("--dest", str(dest), cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == f"installed the fast launcher at {dest}"
    text = dest.read_text()
    assert text.startswith(f"#!{PYTHON} -IS\n") and launcher.MARKER in text
    assert stat.S_IMODE(dest.stat().st_mode) == 0o755
    assert _leftover_tmp(dest.parent) == []
    # the measured path: the package's root first, no current directory
    assert f"sys.path += [{PACKAGE_ROOT!r}" in text and "''" not in text
    v = _run(dest, "--version")
    assert v.returncode == 0 and v.stdout.strip() == f"stackctl version {stackctl.__version__}", v.stderr
    # the install is repeatable: our own launcher is replaced by a fresh one
    assert _install("--dest", str(dest), cwd=tmp_path).returncode == 0
    assert dest.read_text() == text and _leftover_tmp(dest.parent) == []


def test_install_print_writes_nothing(tmp_path):
    dest = tmp_path / "stackctl"
    p = _install("--print", "--dest", str(dest), cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith(f"#!{PYTHON} -IS\n") and launcher.MARKER in p.stdout
    assert os.listdir(tmp_path) == []


def test_install_replaces_pips_console_script(tmp_path):
    # what pip (distlib) writes for the `stackctl = stackctl.cli.main:main` entry point
    dest = _write_script(tmp_path / "stackctl", (
        f"#!{PYTHON}\n# -*- coding: utf-8 -*-\nimport re\nimport sys\nfrom stackctl.cli.main import main\n"
        "if __name__ == '__main__':\n"
        "    sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])\n"
        "    sys.exit(main())\n"))
    p = _install("--dest", str(dest), cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert launcher.MARKER in dest.read_text()


@pytest.mark.parametrize("kind", ["other-program", "directory", "symlink"])
def test_install_refuses_a_dest_that_is_not_ours(tmp_path, kind):
    dest = tmp_path / "stackctl"
    if kind == "other-program":
        _write_script(dest, "#!/bin/sh\necho some other tool\n")
    elif kind == "directory":
        dest.mkdir()
    else:
        (tmp_path / "target").write_text("#!/bin/sh\n")
        dest.symlink_to(tmp_path / "target")
    before = sorted(os.listdir(tmp_path))
    p = _install("--dest", str(dest), cwd=tmp_path)
    assert p.returncode == 1
    # one line: what, where, what to do; no traceback
    assert p.stderr.count("\n") == 1 and p.stderr.startswith("error: ") and str(dest) in p.stderr, p.stderr
    assert "Traceback" not in p.stderr
    assert sorted(os.listdir(tmp_path)) == before  # nothing changed, no temporary file left
    if kind == "other-program":
        assert dest.read_text() == "#!/bin/sh\necho some other tool\n"
    if kind == "symlink":
        assert dest.is_symlink() and (tmp_path / "target").read_text() == "#!/bin/sh\n"

