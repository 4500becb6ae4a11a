"""tcmalloc launcher: re-exec at most once, only when the library exists, never when disabled."""

from __future__ import annotations

from tunelab import launch


def test_reexec_env_rules(tmp_path):
    lib = str(tmp_path / "libtcmalloc_minimal.so.4")
    env = launch.reexec_env({"PATH": "/bin"}, lib)
    assert env["LD_PRELOAD"] == lib and env[launch.MARKER] == "1" and env["PATH"] == "/bin"
    assert launch.reexec_env(env, lib) is None  # never loops
    assert launch.reexec_env({"TUNELAB_TCMALLOC": "0"}, lib) is None
    assert launch.reexec_env({}, None) is None
    assert launch.reexec_env({"LD_PRELOAD": "/x/libtcmalloc.so"}, lib) is None
    assert launch.reexec_env({"LD_PRELOAD": "/x/other.so"}, lib)["LD_PRELOAD"] == f"{lib} /x/other.so"


def test_find_tcmalloc(tmp_path):
    assert launch.find_tcmalloc((str(tmp_path),)) is None
    (tmp_path / "libtcmalloc_minimal.so.4").write_bytes(b"")
    assert launch.find_tcmalloc((str(tmp_path),)) == str(tmp_path / "libtcmalloc_minimal.so.4")


def test_command_reexecs_once_and_runs(tmp_path):
    """The real entry point (argv=None) re-execs under tcmalloc when installed and still does its job, exactly once."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    env.pop(launch.MARKER, None)
    code = "import sys; from tunelab.cli import main; sys.exit(main())"
    proc = subprocess.run([sys.executable, "-c", code, "config"], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "speed.ce_chunk" in proc.stdout
    off = subprocess.run(
        [sys.executable, "-c", code, "config"],
        env={**env, "TUNELAB_TCMALLOC": "0"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert off.returncode == 0 and off.stdout == proc.stdout
