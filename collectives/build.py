"""Build the NVRAR CUDA library (collectives/csrc) with nvcc against NVSHMEM, on demand, into a cache.

The library is a plain shared object called through ctypes with raw pointers and a CUDA stream, so
nothing beyond torch is needed at run time and the build needs only nvcc and NVSHMEM's headers and
libraries: from $NVSHMEM_HOME, else from the pip package nvidia-nvshmem-cu13 (`import nvidia.nvshmem`).
Builds land in $STUDY_CACHE_DIR (default ~/.cache/study)/nvrar/<key>/, where the key hashes the
sources, the flags, nvcc's version and NVSHMEM's location, so a change to any of them rebuilds and
ranks sharing a file system build once (a file lock serialises them). Where compute nodes lack nvcc,
build ahead with `--out DIR` and point $NVRAR_LIBRARY at DIR/libnvrar.so (NVSHMEM is still needed).

    python -m collectives.build [--arch 90] [--out DIR]   # build now and print the library's path
"""

from __future__ import annotations

import argparse
import ctypes
import fcntl
import glob
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

CSRC = Path(__file__).resolve().parent / "csrc"
SOURCES = ("nvrar.cu",)
HEADERS = ("nvrar.h",)
LIBRARY = "libnvrar.so"
DEFAULT_ARCH = "90"


class NvrarBuildError(RuntimeError):
    """The NVRAR library cannot be built here; the message says what is missing and how to supply it."""


@dataclass(frozen=True)
class Toolchain:
    nvcc: Path
    nvshmem_home: Path
    nvshmem_device_lib: Path
    nvshmem_host_lib: Path
    cuda_stub_dir: Path | None


def find_nvcc() -> Path:
    """nvcc from $NVCC, $CUDA_HOME/bin, PATH or /usr/local/cuda/bin, in that order."""
    candidates = [os.environ.get("NVCC")]
    for var in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(var):
            candidates.append(os.path.join(os.environ[var], "bin", "nvcc"))
    candidates += [shutil.which("nvcc"), "/usr/local/cuda/bin/nvcc"]
    for cand in candidates:
        if cand and os.path.isfile(cand) and os.access(cand, os.X_OK):
            return Path(cand)
    raise NvrarBuildError("nvcc not found: install the CUDA toolkit, or set NVCC or CUDA_HOME to point at it")


def find_nvshmem_home() -> Path:
    """NVSHMEM's root (holding include/ and lib/): $NVSHMEM_HOME, else the nvidia-nvshmem-cu13 package."""
    home = os.environ.get("NVSHMEM_HOME")
    if home:
        path = Path(home)
        if not (path / "include" / "nvshmem.h").is_file():
            raise NvrarBuildError(f"NVSHMEM_HOME={home} has no include/nvshmem.h")
        return path
    try:
        import nvidia.nvshmem as pkg  # type: ignore[import-not-found]
    except ImportError as exc:
        raise NvrarBuildError(
            "NVSHMEM not found: `pip install nvidia-nvshmem-cu13` (or -cu12), or set NVSHMEM_HOME"
        ) from exc
    return Path(list(pkg.__path__)[0])


def _cuda_stub_dir(nvcc: Path) -> Path | None:
    """The toolkit's libcuda stub folder, to link where no driver is installed (build-only machines)."""
    root = nvcc.resolve().parent.parent
    for cand in (
        root / "lib64" / "stubs",
        root / "targets" / "x86_64-linux" / "lib" / "stubs",
        root / "targets" / "sbsa-linux" / "lib" / "stubs",
    ):
        if (cand / "libcuda.so").exists():
            return cand
    return None


def find_toolchain() -> Toolchain:
    nvcc = find_nvcc()
    home = find_nvshmem_home()
    lib = home / "lib"
    device_lib = lib / "libnvshmem_device.a"
    host_libs = sorted(glob.glob(str(lib / "libnvshmem_host.so*")))
    if not device_lib.is_file() or not host_libs:
        raise NvrarBuildError(f"NVSHMEM at {home} lacks lib/libnvshmem_device.a or lib/libnvshmem_host.so*")
    return Toolchain(nvcc, home, device_lib, Path(host_libs[-1]), _cuda_stub_dir(nvcc))


def cuda_arch() -> str:
    """Target compute capability: $STUDY_CUDA_ARCH, else the current GPU's, else sm_90 (Hopper)."""
    if os.environ.get("STUDY_CUDA_ARCH"):
        return os.environ["STUDY_CUDA_ARCH"].replace("sm_", "").replace(".", "")
    try:
        import torch

        if torch.cuda.is_available():
            major, minor = torch.cuda.get_device_capability()
            return f"{major}{minor}"
    except ImportError:
        pass
    return DEFAULT_ARCH


def cache_root() -> Path:
    return Path(os.environ.get("STUDY_CACHE_DIR") or Path.home() / ".cache" / "study")


def nvcc_command(tc: Toolchain, arch: str, output: Path) -> list[str]:
    """The one nvcc line that compiles, device-links (-rdc) and links the library.

    NVSHMEM's device library is passed as the .a file itself (-l: leaves device symbols undefined) and
    its host library through the linker (nvcc refuses a versioned .so on its command line). libcuda
    comes from the driver at run time; where none is installed the toolkit's stub satisfies the link.
    """
    cmd = [
        str(tc.nvcc),
        "-O3",
        "-std=c++17",
        f"-gencode=arch=compute_{arch},code=sm_{arch}",
        "-rdc=true",
        "-shared",
        "-Xcompiler",
        "-fPIC",
        "-Xcompiler",
        "-fvisibility=hidden",
        f"-I{tc.nvshmem_home / 'include'}",
        f"-I{CSRC}",
        *[str(CSRC / s) for s in SOURCES],
        "-o",
        str(output),
        str(tc.nvshmem_device_lib),
        "-Xlinker",
        str(tc.nvshmem_host_lib),
        "-Xlinker",
        f"-rpath={tc.nvshmem_host_lib.parent}",
    ]
    if tc.cuda_stub_dir is not None:
        cmd += [f"-L{tc.cuda_stub_dir}", "-lcuda"]
    return cmd


def _build_key(tc: Toolchain, arch: str) -> str:
    h = hashlib.sha256()
    for name in (*SOURCES, *HEADERS):
        h.update((CSRC / name).read_bytes())
    version = subprocess.run([str(tc.nvcc), "--version"], capture_output=True, text=True).stdout
    h.update(version.encode())
    h.update(" ".join(nvcc_command(tc, arch, Path("x"))).encode())
    return h.hexdigest()[:16]


def build(*, arch: str | None = None, out_dir: Path | None = None, verbose: bool = False) -> Path:
    """Build (or find already built) the library and return its path; raises NvrarBuildError."""
    tc = find_toolchain()
    arch = arch or cuda_arch()
    target_dir = out_dir or cache_root() / "nvrar" / f"sm{arch}-{_build_key(tc, arch)}"
    target = target_dir / LIBRARY
    if target.is_file():
        return target
    target_dir.mkdir(parents=True, exist_ok=True)
    with open(target_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.is_file():
            return target
        fd, tmp = tempfile.mkstemp(prefix=".libnvrar.", suffix=".so", dir=target_dir)
        os.close(fd)
        cmd = nvcc_command(tc, arch, Path(tmp))
        if verbose:
            print(" ".join(cmd), file=sys.stderr)
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            os.unlink(tmp)
            raise NvrarBuildError(
                f"nvcc failed (exit {proc.returncode}):\n{' '.join(cmd)}\n{proc.stdout}{proc.stderr}"
            )
        os.replace(tmp, target)
    return target


def prebuilt_library() -> Path | None:
    """$NVRAR_LIBRARY: a libnvrar.so built ahead (`python -m collectives.build --out DIR` on a login node)
    for compute nodes without nvcc; None when unset. Raises NvrarBuildError when it names no file."""
    value = os.environ.get("NVRAR_LIBRARY")
    if not value:
        return None
    path = Path(value)
    if not path.is_file():
        raise NvrarBuildError(f"NVRAR_LIBRARY={value} is not a file")
    return path


def why_not_buildable() -> str | None:
    """None when the library is prebuilt or can be built here, else the reason (no build is started)."""
    try:
        if prebuilt_library() is not None:
            find_nvshmem_home()
            return None
        find_toolchain()
    except NvrarBuildError as exc:
        return str(exc)
    return None


_LIB: ctypes.CDLL | None = None


def load_library() -> ctypes.CDLL:
    """Build if needed and load the library, with NVSHMEM's bootstrap plugins resolvable by name."""
    global _LIB
    if _LIB is not None:
        return _LIB
    path = prebuilt_library() or build()
    lib_dir = find_nvshmem_home() / "lib"
    # NVSHMEM dlopen()s its bootstrap and transport plugins by bare name; a library already loaded under
    # that name is found first, so loading them here makes the pip package work without LD_LIBRARY_PATH.
    # The host library too, so that a prebuilt libnvrar.so whose rpath points elsewhere still loads.
    for plugin in sorted(lib_dir.glob("libnvshmem_host.so*")) + sorted(
        lib_dir.glob("nvshmem_bootstrap_uid.so*")
    ):
        ctypes.CDLL(str(plugin), mode=ctypes.RTLD_GLOBAL)
    lib = ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
    c_int, c_size, c_void = ctypes.c_int, ctypes.c_size_t, ctypes.c_void_p
    signatures = {
        "nvrar_uniqueid_size": ([], c_int),
        "nvrar_get_uniqueid": ([ctypes.c_char_p], c_int),
        "nvrar_init": ([c_int, c_int, ctypes.c_char_p, c_int, c_int, c_size, ctypes.c_double], c_int),
        "nvrar_allreduce": ([c_void, c_void, c_size, c_int, c_int, c_int, c_int, c_int, c_void], c_int),
        "nvrar_error_word": ([], ctypes.c_uint32),
        "nvrar_last_error": ([], ctypes.c_char_p),
        "nvrar_finalize": ([], c_int),
    }
    for name, (args, res) in signatures.items():
        fn = getattr(lib, name)
        fn.argtypes = args
        fn.restype = res
    _LIB = lib
    return lib


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m collectives.build", description=__doc__.splitlines()[0])
    parser.add_argument("--arch", help="compute capability without the dot, e.g. 90 (default: this GPU's)")
    parser.add_argument("--out", type=Path, help="build into this folder instead of the cache")
    parser.add_argument("-v", "--verbose", action="store_true", help="print the nvcc command")
    args = parser.parse_args(argv)
    try:
        path = build(arch=args.arch, out_dir=args.out, verbose=args.verbose)
    except NvrarBuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
