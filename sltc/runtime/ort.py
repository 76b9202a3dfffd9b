"""onnxruntime is an extra (``sltc[cpu]`` or ``sltc[gpu]``): import it with a clear hint."""

from __future__ import annotations

from sltc.format.errors import SltcError


def has_ort() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def import_ort():
    try:
        import onnxruntime
    except ImportError:
        raise SltcError("onnxruntime is not installed; pip install 'sltc[cpu]' "
                        "(or 'sltc[gpu]' for CUDA, never both)") from None
    return onnxruntime


def session(path_or_bytes, provider: str = "cpu", threads: int | None = None,
            allow_fallback: bool = False):
    """An InferenceSession on exactly the asked provider; returns (session, provider used)."""
    ort = import_ort()
    wanted = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}.get(provider)
    if wanted is None:
        raise SltcError(f"--provider {provider!r}: choose cpu or cuda")
    available = ort.get_available_providers()
    if wanted not in available and not allow_fallback:
        raise SltcError(f"onnxruntime has no {wanted} here (has {', '.join(available)}); "
                        "install sltc[gpu] on a CUDA machine or pass --allow-fallback")
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    opts.log_severity_level = 4  # errors reach the user as SltcError lines, not as logs
    providers = [wanted, "CPUExecutionProvider"] if wanted != "CPUExecutionProvider" else [wanted]
    try:
        sess = ort.InferenceSession(path_or_bytes, sess_options=opts, providers=providers)
    except Exception as e:  # noqa: BLE001 - onnxruntime's own errors: a model it refuses
        first = (str(e).strip().splitlines() or [""])[0][:300]
        raise SltcError(f"onnxruntime cannot load the model ({first})") from None
    used = sess.get_providers()[0]
    if used != wanted and not allow_fallback:
        raise SltcError(f"onnxruntime fell back to {used} instead of {wanted} (a CUDA library "
                        "is missing?); fix the CUDA install or pass --allow-fallback")
    return sess, used
