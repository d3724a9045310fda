"""TensorFlow's native start-up lines never reach the user's stderr; real lines written during the import do."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from edgeseq.core.fsio.tfquiet import filter_noise

# Captured on an AVX-512 machine from `import tensorflow` (TF 2.21), where TF_CPP_MIN_LOG_LEVEL does not reach them.
REAL_NOISE = (
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
    "I0000 00:00:1795949125.031439    2034 port.cc:153] oneDNN custom operations are on. You may see slightly "
    "different numerical results due to floating-point round-off errors from different computation orders. To turn "
    "them off, set the environment variable `TF_ENABLE_ONEDNN_OPTS=0`.\n"
    "I0000 00:00:1795949147.895965    2129 cpu_feature_guard.cc:227] This TensorFlow binary is optimized to use "
    "available CPU instructions in performance-critical operations.\n"
    "To enable the following instructions: AVX2 AVX512F AVX512_VNNI AVX512_BF16 AVX_VNNI AMX_TILE AMX_INT8 AMX_BF16 "
    "FMA, in other operations, rebuild TensorFlow with the appropriate compiler flags.\n"
)


def test_filter_drops_startup_notices_and_keeps_problems():
    real = "E0000 00:00:1.0 123 x.cc:1] could not load libcuda\nImportError: boom\n"
    assert filter_noise(REAL_NOISE) == ""
    assert filter_noise(REAL_NOISE + real) == real


def _run(code: str, tmp_path, env: dict | None = None) -> subprocess.CompletedProcess:
    import os

    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, cwd=tmp_path,
                          env=dict(os.environ, PYTHONPATH=str(tmp_path), **(env or {})), timeout=300)


def test_native_lines_written_during_the_import_are_filtered_at_the_fd(tmp_path):
    # A stand-in module that writes to file descriptor 2 directly, as TensorFlow's C++ does.
    (tmp_path / "noisy_native.py").write_text(textwrap.dedent(f"""
        import os
        os.write(2, {REAL_NOISE.encode()!r})
        os.write(2, b"W0000 real warning that must survive\\n")
    """))
    code = """
        import sys
        from edgeseq.core.fsio import tfquiet
        tfquiet.install("noisy_native")
        import noisy_native
        print("after", file=sys.stderr)
    """
    proc = _run(code, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == ["W0000 real warning that must survive", "after"]
    # The user can still ask for everything.
    loud = _run(code, tmp_path, env={"TF_CPP_MIN_LOG_LEVEL": "0"})
    assert "oneDNN" in loud.stderr and "absl::InitializeLog" in loud.stderr


def test_importing_tensorflow_through_edgeseq_prints_nothing(tmp_path):
    # On CPUs where TensorFlow prints nothing anyway this passes trivially; on AVX-512 machines it is the real check.
    proc = _run("import edgeseq, keras, tensorflow", tmp_path)
    assert proc.returncode == 0
    assert proc.stderr == ""
