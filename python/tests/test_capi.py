"""The ctypes binding of libnsajit.so (needs no GPU)."""

import ctypes
import os
import re
import subprocess
import sys

import pytest

import nsajit
from nsajit import _capi


def has_libcuda():
    try:
        ctypes.CDLL(os.environ.get("NSAJIT_LIBCUDA", "libcuda.so.1"))
        return True
    except OSError:
        return False


def test_library_loads():
    lib = nsajit.library()
    assert os.path.exists(lib.path)
    assert lib.path.endswith("libnsajit.so")
    assert nsajit.library() is lib
    assert "libnsajit" in repr(lib)


def test_versions():
    assert re.fullmatch(r"\d+\.\d+\.\d+", nsajit.version())
    assert nsajit.version() == "0.1.0"
    assert nsajit.abi_version() == nsajit.ABI_VERSION == 1
    assert "nsajit" in nsajit.compiler_version()


def test_status_strings():
    for st in nsajit.Status:
        assert nsajit.status_string(st) == f"NSAJIT_{st.name}"
    assert nsajit.status_string(99) == "NSAJIT_STATUS_UNKNOWN"


def test_struct_layouts_match_nsajit_h():
    assert ctypes.sizeof(nsajit.NsajitConfig) == 68
    assert ctypes.sizeof(nsajit.NsajitTensor) == 32
    assert nsajit.NsajitConfig.scale.offset == 44
    assert nsajit.NsajitConfig.tile_warps.offset == 48
    assert nsajit.NsajitTensor.stride_head.offset == 24
    assert _capi.CacheCounters.kernel_hits.offset == 8
    assert ctypes.sizeof(_capi.CacheCounters) == 80
    assert _capi.KernelInfo.kernel_name.offset == 36
    assert ctypes.sizeof(_capi.KernelInfo) == 36 + 64 + 256
    assert ctypes.sizeof(_capi.TuneResult) == 568


def test_config_init_defaults():
    cfg = nsajit.config_init()
    assert cfg.as_dict() == dict(struct_size=68, dtype=nsajit.DType.BF16, head_dim_qk=128, head_dim_v=128,
                                 num_kv_heads=4, group=16, cmp_block=32, cmp_stride=16, slc_block=64,
                                 slc_count=16, window=512, scale=0.0, tile_warps=0, tile_tokens=0,
                                 tile_kv_chunk=0, slc_initial=1, slc_local=2)
    assert "head_dim_qk=128" in repr(cfg)
    cfg = nsajit.make_config(group=4, head_dim_qk=192, scale=0.5)
    assert (cfg.group, cfg.head_dim_qk, cfg.scale, cfg.window) == (4, 192, 0.5, 512)
    with pytest.raises(TypeError, match="no settable field"):
        nsajit.make_config(heads=3)


def test_last_error_is_empty_after_success():
    nsajit.config_init()
    assert nsajit.last_error() == ""


@pytest.mark.skipif(has_libcuda(), reason="this machine has an NVIDIA driver: a context can be created")
def test_context_without_gpu_raises_no_device():
    with pytest.raises(nsajit.NoDeviceError) as info:
        nsajit.Context(0)
    e = info.value
    assert isinstance(e, nsajit.NsajitError) and isinstance(e, RuntimeError)
    assert e.status == nsajit.Status.ERROR_NO_DEVICE
    assert e.status_name == "NSAJIT_ERROR_NO_DEVICE"
    assert e.function == "nsajit_context_create"
    assert "libcuda" in e.message and "libcuda" in str(e)
    assert "NSAJIT_ERROR_NO_DEVICE" in str(e)


def test_unsupported_config_raises_unsupported_naming_the_field():
    cfg = nsajit.make_config(head_dim_qk=96)
    with pytest.raises(nsajit.UnsupportedError, match=r"head_dim_qk \(Dk\) = 96 .*allowed: 64, 128, 192, 256"):
        nsajit.kernel_query(cfg, "window")
    with pytest.raises(nsajit.UnsupportedError, match="group"):
        nsajit.kernel_query(nsajit.make_config(group=3), nsajit.Branch.SELECTED)


def test_invalid_argument_is_a_value_error():
    with pytest.raises(nsajit.InvalidArgumentError) as info:
        nsajit.compile_ptx(nsajit.config_init(), "window", arch=75)
    assert isinstance(info.value, ValueError)
    assert info.value.status == nsajit.Status.ERROR_INVALID_ARGUMENT
    assert "arch = 75" in str(info.value)
    with pytest.raises(ValueError, match="branch"):
        nsajit.compile_ptx(nsajit.config_init(), "dense")


def test_error_mapping():
    m = _capi.error_for_status
    assert type(m(1, "x")) is nsajit.InvalidArgumentError
    assert type(m(2, "x")) is nsajit.UnsupportedError
    assert type(m(3, "x")) is nsajit.NoDeviceError
    assert type(m(4, "x")) is nsajit.DriverError
    assert type(m(5, "x")) is nsajit.CompileError
    assert isinstance(m(6, "x"), MemoryError)
    assert type(m(7, "x")) is nsajit.InternalError
    e = m(42, "odd", "nsajit_f")
    assert type(e) is nsajit.NsajitError and e.status is None and "42" in str(e)


def test_kernel_query_without_context():
    cfg = nsajit.make_config(head_dim_qk=64, head_dim_v=64, group=4, num_kv_heads=2)
    info = nsajit.kernel_query(cfg, "compressed", arch=80)
    assert info["arch"] == 80
    assert info["kernel_name"] == "nsa_compressed_fwd"
    assert info["num_regs"] == -1
    assert info["threads_per_cta"] >= 32
    assert "dk=64" in info["spec"]


def test_compile_ptx_without_gpu():
    cfg = nsajit.make_config(head_dim_qk=64, head_dim_v=64, group=1, num_kv_heads=1)
    ptx = nsajit.compile_ptx(cfg, "window", arch=80)
    assert ".target sm_80" in ptx
    assert ".entry nsa_window_fwd" in ptx


def test_cache_info_and_stats():
    assert "cache" in nsajit.cache_info()
    stats = nsajit.cache_stats()
    assert set(stats) == {"kernel_hits", "ptx_memory_hits", "disk_hits", "compiles", "modules_loaded",
                          "disk_writes", "disk_rejects", "machine_code_disk_hits", "ptxas_runs"}
    assert all(isinstance(v, int) and v >= 0 for v in stats.values())


def test_log_callback_round_trip():
    seen = []
    nsajit.set_log_callback(lambda level, msg: seen.append((level, msg)))
    nsajit.set_log_callback(None)


def test_backward_entry_points_are_optional():
    lib = nsajit.library()
    for branch in ("compressed", "selected", "window"):
        if lib.has_backward(branch):
            continue
        with pytest.raises(nsajit.BackwardUnavailableError, match=f"nsajit_{branch}_backward") as info:
            lib.call(f"{branch}_backward")
        assert isinstance(info.value, NotImplementedError)
        assert lib.path in str(info.value)
    assert isinstance(nsajit.has_backward(), bool)


def run_python(code, **env):
    full_env = dict(os.environ, **env)
    return subprocess.run([sys.executable, "-c", code], env=full_env, capture_output=True, text=True,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_missing_library_is_a_clear_error(tmp_path):
    missing = str(tmp_path / "nope" / "libnsajit.so")
    r = run_python("import nsajit\n"
                   "try:\n    nsajit.version()\n"
                   "except nsajit.LibraryNotFoundError as e:\n    print('ERR', e)\n",
                   NSAJIT_LIBRARY=missing)
    assert r.returncode == 0, r.stderr
    assert "ERR" in r.stdout and missing in r.stdout and "NSAJIT_LIBRARY" in r.stdout


def test_import_without_torch_loads_nothing_heavy():
    r = run_python("import sys, nsajit\nprint(nsajit.version())\nprint('torch' in sys.modules)\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [nsajit.version(), "False"]


def test_backward_kernel_ptx_or_clear_error():
    cfg = nsajit.make_config(head_dim_qk=64, head_dim_v=64, group=4, num_kv_heads=1)
    if nsajit.library().has("compile_ptx2"):
        ptx = nsajit.compile_ptx(cfg, "window", arch=80, kernel_pass="backward_dq")
        assert ".entry nsa_window_bwd_dq" in ptx
        info = nsajit.kernel_query(cfg, "window", arch=90, kernel_pass=nsajit.KernelPass.BACKWARD_DKDV)
        assert info["kernel_name"] == "nsa_window_bwd_dkdv"
    else:
        with pytest.raises(nsajit.BackwardUnavailableError, match="nsajit_compile_ptx2"):
            nsajit.compile_ptx(cfg, "window", arch=80, kernel_pass="backward_dq")
    assert nsajit.compile_ptx(cfg, "window", arch=80, kernel_pass="forward").count(".entry") == 1
    with pytest.raises(ValueError, match="kernel pass"):
        nsajit.compile_ptx(cfg, "window", kernel_pass="sideways")


def test_topn_kernel_pass_and_entry_point():
    assert int(nsajit.KernelPass.TOPN) == 4
    assert issubclass(nsajit.BackwardUnavailableError, nsajit.FunctionUnavailableError)
    assert issubclass(nsajit.FunctionUnavailableError, NotImplementedError)
    lib = nsajit.library()
    assert nsajit.has_select_topn() == lib.has("select_topn")
    cfg = nsajit.make_config(head_dim_qk=128, head_dim_v=128, group=16, num_kv_heads=1, cmp_block=32,
                             cmp_stride=16, slc_block=64, slc_count=16, slc_initial=1, slc_local=2)
    if not lib.has("select_topn"):
        with pytest.raises(nsajit.FunctionUnavailableError, match="nsajit_select_topn"):
            lib.call("select_topn")
        return
    info = nsajit.kernel_query(cfg, "compressed", arch=90, kernel_pass="topn")
    assert info["kernel_name"] == "nsa_compressed_topn"
    assert "init=1 local=2" in info["spec"]
    assert ".entry nsa_compressed_topn" in nsajit.compile_ptx(cfg, "compressed", arch=90, kernel_pass="topn")
    with pytest.raises(nsajit.UnsupportedError, match="belongs to the compressed branch"):
        nsajit.kernel_query(cfg, "window", kernel_pass=nsajit.KernelPass.TOPN)
    bad = nsajit.make_config(slc_count=4, slc_initial=3, slc_local=2)
    with pytest.raises(nsajit.UnsupportedError, match="forced blocks"):
        nsajit.kernel_query(bad, "compressed", kernel_pass="topn")
    # NULL context: an argument error, no GPU needed
    with pytest.raises(nsajit.InvalidArgumentError):
        lib.call("select_topn", None, ctypes.byref(cfg), 1, 64, None, None, None, None, None)


def test_compression_kernel_passes_and_entry_points():
    assert [int(p) for p in (nsajit.KernelPass.POOL, nsajit.KernelPass.POOL_BWD, nsajit.KernelPass.POOL_DW)] == [5, 6, 7]
    lib = nsajit.library()
    assert nsajit.has_compress() == (lib.has("compress_forward") and lib.has("compress_backward"))
    if not nsajit.has_compress():
        for name in ("compress_forward", "compress_backward"):
            if not lib.has(name):
                with pytest.raises(nsajit.FunctionUnavailableError, match=f"nsajit_{name}.*compression") as info:
                    lib.call(name)
                assert not isinstance(info.value, nsajit.BackwardUnavailableError)
        return
    cfg = nsajit.make_config(head_dim_qk=128, head_dim_v=128, group=1, num_kv_heads=2, cmp_block=32, cmp_stride=16)
    for kernel_pass, name in (("pool", "nsa_compressed_pool"), ("pool_bwd", "nsa_compressed_pool_bwd")):
        info = nsajit.kernel_query(cfg, "compressed", arch=90, kernel_pass=kernel_pass)
        assert info["kernel_name"] == name and "l=32 d=16 mean" in info["spec"]
        assert f".entry {name}" in nsajit.compile_ptx(cfg, "compressed", arch=80, kernel_pass=kernel_pass)
    # the pooling kernels pool one tensor: Dk = Dv
    with pytest.raises(nsajit.UnsupportedError, match="pool one tensor"):
        nsajit.kernel_query(nsajit.make_config(head_dim_qk=192, head_dim_v=128), "compressed", kernel_pass="pool")
    # NULL context: an argument error, no GPU needed
    with pytest.raises(nsajit.InvalidArgumentError, match="ctx is NULL"):
        lib.call("compress_forward", None, ctypes.byref(cfg), 1, 64, 128, None, 0, None, None)
    with pytest.raises(nsajit.InvalidArgumentError, match="ctx is NULL"):
        lib.call("compress_backward", None, ctypes.byref(cfg), 1, 64, 128, None, 0, None, None, 0, None)


def test_bundled_ptxas_is_tritons_only_when_none_is_installed(monkeypatch, tmp_path):
    pkg = tmp_path / "triton"
    (pkg / "backends" / "nvidia" / "bin").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    ptxas = pkg / "backends" / "nvidia" / "bin" / "ptxas"
    ptxas.write_text("#!/bin/sh\n")
    ptxas.chmod(0o755)
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in list(sys.modules):
        if name == "triton" or name.startswith("triton."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.delenv("CUDA_HOME", raising=False)
    real_access = os.access
    monkeypatch.setattr(_capi.os, "access",
                        lambda p, mode: False if str(p).startswith("/usr/local/cuda") else real_access(p, mode))
    monkeypatch.setattr(_capi.shutil, "which", lambda name: None)
    assert _capi.bundled_ptxas() == str(ptxas)
    # An installed ptxas is the library's own choice: nothing to point it to.
    monkeypatch.setattr(_capi.shutil, "which", lambda name: "/opt/cuda/bin/ptxas")
    assert _capi.bundled_ptxas() is None
