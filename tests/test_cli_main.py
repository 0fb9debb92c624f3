import subprocess


def run(venv_bin, *args):
    return subprocess.run([str(venv_bin / "berth"), *args], capture_output=True, text=True)


def test_help_lists_commands(venv_bin):
    r = run(venv_bin, "--help")
    assert r.returncode == 0
    assert "Usage: berth" in r.stdout


def test_unknown_command_is_one_line_and_125(venv_bin):
    r = run(venv_bin, "no-such-command")
    assert r.returncode == 125
    assert r.stderr.count("\n") == 1 and "not a berth command" in r.stderr
    assert "Traceback" not in r.stderr


def test_unknown_global_flag_is_one_line(venv_bin):
    r = run(venv_bin, "--bogus")
    assert r.returncode == 125
    assert r.stderr.count("\n") == 1


def test_version(venv_bin):
    r = run(venv_bin, "--version")
    assert r.returncode == 0 and r.stdout.startswith("berth version ")
